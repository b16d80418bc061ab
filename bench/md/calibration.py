"""BENCHMARKS.md's sections on the uncertainties and the flags: the sigma calibration and its
cost, stars unlike the training stars (NOVELTY), spikes."""

from __future__ import annotations

from md._render import fmt, load, missing, recipe_words, source, table, target

__all__ = ["COVERAGE_BAND", "FLAT", "cells_in_band", "calibration_section",
           "calibration_cost_section", "novelty_section", "spikes_section"]


#: The calibration's cost is "flat" as the survey grows tenfold when it grows by at most this.
FLAT = 1.2


#: Every cell of a calibrated coverage table (category or S/N tercile x parameter) within this.
COVERAGE_BAND = (0.60, 0.76)


def _coverage_rows(judged: dict) -> list[list]:
    rows = []
    for name, j in judged.items():
        cov = j["coverage"]
        cells = [" ".join(f"{v:.2f}" for v in cov[g][:3]) + f" ({cov[g][3]})" for g in cov]
        rows.append([name] + cells + [str(j["all_cells_in_0.60-0.76"]),
                                      j["worst_abs_dev_from_0.683"]])
    return rows


def cells_in_band(coverage: dict) -> str:
    """Whether every cell (group x parameter) of a coverage table is within 0.60-0.76, worded as
    a target line: the fraction of cells inside, and met / NOT met."""
    cells = [v for row in coverage.values() for v in row[:3]]
    inside = sum(COVERAGE_BAND[0] <= v <= COVERAGE_BAND[1] for v in cells)
    band = f"{COVERAGE_BAND[0]:.2f}-{COVERAGE_BAND[1]:.2f}"
    return (f"{inside} of {len(cells)} cells in {band} (target: every cell in {band}: "
            f"{'met' if inside == len(cells) else 'NOT met'})")


def calibration_section() -> str:
    out = "## Uncertainty calibration (`bench/calibration.py`)\n\n"
    rec = load("calibration")
    if rec is None:
        return out + missing("calibration",
                             "bench/calibration.py --indep 3000 --subsets --infer --calibrate")
    f = rec["figures"]
    out += ("Which calibration holds for every kind of star? The raw Monte Carlo (mc = 100) "
            f"of the `bench/accuracy.py` run (trained with {recipe_words(rec)}) once over "
            "train, dev and test; each candidate "
            "fitted on dev (the package's shape on train, level on dev), then judged on the test "
            "split and, with `--indep`, on every star of a second survey the network never saw. "
            "1-sigma coverage, Teff log g [Fe/H] (ideally 0.683; `package` is judged below each "
            "table against every cell in 0.60-0.76), stars in brackets.")
    if "package" in f:
        p = f["package"]
        out += (f" `package` is the fit `calibrate` runs: on its subset (at most "
                f"{p['stars_per_stratum']} training stars per Kiel region x S/N tercile, dev "
                f"stars in proportion; {p['monte_carlo_stars']:,} stars here), mc = "
                f"{p['mc']}; `package_every_star_r100` the same fit on every train and "
                f"dev star at mc = 100, as before the subset.")
    out += "\n\n"
    for where, judged in f.items():
        if not isinstance(judged, dict) or where in ("infer_defaults", "package",
                                                     "subset_sweep") or not judged or \
                not all(isinstance(v, dict) and "coverage" in v for v in judged.values()):
            continue
        groups = list(next(iter(judged.values()))["coverage"])
        out += f"**{where}**\n\n"
        out += table(["candidate"] + groups + ["all cells in 0.60-0.76", "worst |cov - 0.683|"],
                     _coverage_rows(judged)) + "\n"
        if "package" in judged:
            out += f"`package`: {cells_in_band(judged['package']['coverage'])}.\n\n"
    if "subset_sweep" in f:
        out += _subset_sweep(f["subset_sweep"])
    if "infer_defaults" in f:
        d = f["infer_defaults"]
        how = ""
        if "calibrate_seconds" in d:
            sub = d["calibrate_subset"]
            how = (f" (calibration.json fitted again by `calibrate` with its defaults: "
                   f"{d['calibrate_seconds']} s, {sub['train_stars']:,} of "
                   f"{sub['train_stars_read']:,} training and {sub['dev_stars']:,} dev stars)")
        out += (f"`infer` with its defaults (sigma: {d['sigma']}{how}) on the test split: "
                f"{cells_in_band(d['coverage'])}, worst |cov - 0.683| "
                f"{d['worst_abs_dev_from_0.683']}.\n\n")
    return out + source(rec, "calibration") + "\n"


def _subset_sweep(sweep: dict) -> str:
    """How the calibration's subset size and mc were chosen (``--subsets``)."""
    where = [k for k in next(iter(sweep.values())) if k != "monte_carlo_stars"]
    out = ("**How the subset and mc were chosen** (`--subsets`): the package's fit with other "
           "subset sizes (training stars per stratum; dev at most 5x that) and draws per star, "
           "each drawn with ten seeds (the subset, and which of each star's 100 draws it keeps), "
           f"judged on {', '.join(where)}: the worst |cov - 0.683| over its cells, mean and "
           "largest over the seeds, and the seeds whose every cell is in 0.60-0.76.\n\n")
    rows = []
    for name, row in sweep.items():
        for w in where:
            r = row[w]
            rows.append([name, f"{row['monte_carlo_stars']:,}", r["worst_mean"], r["worst_max"],
                         f"{r['seeds_all_cells_in_band']} of {r['seeds']}"])
    return out + table(["setting", "stars in the Monte Carlo", "worst, mean", "worst, largest",
                        "seeds in 0.60-0.76"], rows) + "\n"


def calibration_cost_section() -> str:
    out = "## The calibration's cost as the survey grows (`bench/calibration_cost.py`)\n\n"
    rec = load("calibration_cost")
    if rec is None:
        return out + missing("calibration_cost", "bench/calibration_cost.py --all-stars")
    f = rec["figures"]
    out += (f"`calibrate` with its defaults (at most {f['stars_per_stratum']} training stars "
            f"per stratum, mc = {f['mc']}) on the 6,000-star survey of "
            "`bench/time_to_accuracy.py` and on the same survey repeated ten times (its train and "
            "dev shards listed ten times in one manifest), alternating, best of the repeats; "
            "from the call to the written calibration.json, TensorFlow already imported.\n\n")
    rows = []
    for name in ("6k", "60k"):
        v = f[name]
        rows.append([name, f"{v['train_stars_in_split']:,}", f"{v['dev_stars_in_split']:,}",
                     f"{v['train_stars_read']:,} / {v['dev_stars_read']:,}",
                     f"{v['monte_carlo_stars']:,}", fmt(v["best_seconds"]),
                     ", ".join(fmt(x) for x in v["seconds"])])
    out += table(["survey", "training stars", "dev stars", "stars read (train / dev)",
                  "stars in the Monte Carlo", "seconds (best)", "seconds (each)"], rows)
    out += (f"\n60,000 / 6,000 stars: **{f['ratio_60k_over_6k']}x** the time "
            f"({target(f['ratio_60k_over_6k'], '<=', FLAT, unit='x, flat')}).\n")
    if "all_stars_r100_6k" in f:
        a = f["all_stars_r100_6k"]
        out += (f"Before the subset (every train and dev star, mc = 100) the 6,000-star survey "
                f"took {fmt(a['seconds'])} s over {a['monte_carlo_stars']:,} stars: the subset "
                f"takes **{f['subset_over_all_stars_6k']}x** that.\n")
    return out + "\n" + source(rec, "calibration_cost") + "\n"


def novelty_section() -> str:
    out = "## Stars unlike the training stars (`bench/novelty.py`)\n\n"
    rec = load("novelty")
    if rec is None:
        return out + missing("novelty", "bench/novelty.py")
    f = rec["figures"]
    t, o = f["teff_split"], f["other_generator"]
    out += (f"How many stars unlike the training stars get `NOVEL` (`NOVELTY` > 1), and how many "
            f"ordinary test stars do. A small synthetic survey ({f['survey_stars']:,} stars, "
            f"{f['train_fraction']:.0%} of each reference set as its training stars; the "
            f"distance reads the spectra, not the network, so no network is trained). **Teff "
            f"split**: reference of the stars below {t['cool_below_k']:.0f} K, ordinary = the "
            f"cool stars left out, to catch = the stars above {t['hot_above_k']:.0f} K "
            f"({t['novel_teff_range'][0]:.0f}-{t['novel_teff_range'][1]:.0f} K). **Other "
            f"generator**: reference of the whole survey's training part, ordinary = its "
            f"held-out stars, to catch = stars of `bench/_other_survey.py` (lines, continuum "
            f"and noise made another way, labels in the same ranges).\n\n")
    rows = []
    for name, r in (("Teff split", t), ("other generator", o)):
        rows.append([name, r["reference_stars"], r["novel_stars"],
                     f"{r['caught']:.1%} ({target(r['caught'], '>=', f['catch_target'], '90%')})",
                     f"{r['caught_far']:.1%}", r["ordinary_stars"],
                     f"{r['ordinary_flagged']:.1%} ("
                     f"{target(r['ordinary_flagged'], '<=', f['false_alarm_target'], '2%')})"])
    out += table(["experiment", "reference stars", "stars to catch", "caught (NOVEL)",
                  "of them FAR_FROM_TRAINING (BAD)", "ordinary stars", "ordinary flagged"], rows)
    if "between_caught" in t:
        out += (f"\nStars between the two cuts, neither cool nor hot: {t['between_caught']:.0%} "
                f"flagged.\n")
    return out + "\n" + source(rec, "novelty") + "\n"


def spikes_section() -> str:
    out = "## Spikes (`bench/spikes.py`)\n\n"
    rec = load("spikes")
    if rec is None:
        return out + missing("spikes", "bench/spikes.py")
    f = rec["figures"]
    r, lab = f["real"], f["labels"]
    out += (f"Real files: {r['detections']} spikes in {r['files_with_detections']} of the "
            f"{r['files']} apStar files of the test data (DR13, DR14, DR17). One pixel of each "
            f"real DR13 file raised to k times the star's median flux, "
            f"{r['injected_per_factor']} times per k, found: " + ", ".join(
                f"k = {k}: {v:.0%}" for k, v in r["injected_found"].items()) + ".\n\n")
    out += (f"A spike's effect on the labels of a small trained network ({f['survey_stars']} "
            f"synthetic stars, {f['epochs']} epochs, sigmas {lab['calibrated']}), over its "
            f"{lab['test_stars']} test stars, one spike each: the largest shift over the "
            f"calibrated sigma, with the spike masked (as infer does) and left in.\n\n")
    rows = []
    for k in ("5", "60"):
        res = lab[k]
        worst = max(res[c]["max_shift_over_sigma_masked"] for c in ("TEFF", "LOGG", "FE_H"))
        rows.append([f"{k}x median", f"{res['flagged']:.0%}"] + [
            f"{fmt(res[c]['max_shift_over_sigma_masked'])} / "
            f"{fmt(res[c]['max_shift_over_sigma_left_in'])}" for c in ("TEFF", "LOGG", "FE_H")]
            + [target(worst, "<=", 1.0, "1")])
    out += table(["spike", "flagged SPIKES", "Teff masked / left in", "log g", "[Fe/H]",
                  "largest masked shift"], rows)
    return out + "\n" + source(rec, "spikes") + "\n"
