"""BENCHMARKS.md's sections on the information the network uses (Table 3 against the
Cramér-Rao bound), the M dwarfs' and YSOs' Teff offset, and the last layer fitted again."""

from __future__ import annotations

import math

from md._render import _epochs, fmt, load, missing, recipe_words, source, table, tagged, target
from md.finetune_variants import is_finetune_only

__all__ = ["information_section", "cool_bias_section", "refit_section", "refit_verdict", "LABELS",
           "FULL_SURVEY"]


LABELS = ("Teff", "log g", "[Fe/H]")


def _ratio_cells(stats: dict) -> list[str]:
    """scatter / bound and bias / bound per target, as 'scatter (ratio)' cells."""
    return [f"{fmt(stats['scatter'][k], 3)} / {fmt(stats['bound_rms'][k], 2)} = "
            f"**{stats['scatter_over_bound'][k]:.2f}**; bias {stats['bias_over_bound'][k]:+.2f}"
            for k in range(3)]


def information_section() -> str:
    out = ("## How much of the information in the spectra the network uses "
           "(`bench/information.py`)\n\n")
    rec = load("information")
    if rec is None:
        return out + missing("information", "bench/information.py --fit") + information_variants()
    f = rec["figures"]
    b = f["bound"]
    out += (f"The Cramér-Rao bound of each star of the synthetic survey `{f['survey']}` from the "
            "generator's own forward model: numerical derivatives of the noiseless spectrum in "
            + ", ".join(b["params"]) + " (the last two, extinction and flux scale, "
            "marginalised), the per-pixel errors the survey wrote, the good pixels only "
            f"({b['stars_step_checked']} stars checked with halved steps: largest change of the "
            f"bound {b['step_check_max_rel_change']:.1e}). Table 3 of the run `{f['run']}` "
            f"(trained with {recipe_words(rec)}; plain predictions) beside the bound's RMS over "
            "the same stars: scatter / bound "
            "(1 is the best an unbiased method can do) and bias / bound. "
            + _fit_line(f.get("fit")) + "\n\n")
    test = f["groups"]["test"]
    rows = [[g, test[g]["stars"][0]] + _ratio_cells(test[g]) for g in test]
    out += "**Test split**, scatter / bound RMS = ratio; bias / bound RMS:\n\n"
    out += table(["group", "stars", *LABELS], rows)
    terc = f["terciles"]["test"]["Full"]
    rows = [[name, s["stars"][0]] + _ratio_cells(s) for name, s in terc.items()]
    out += "\n**Test split, Full group, by S/N tercile**:\n\n"
    out += table(["S/N", "stars", *LABELS], rows)
    j = f["teff_bias_over_scatter"]
    worst = max(v for k, v in j.items() if k != "all <= 0.3")
    cells = []
    for key, v in j.items():
        if key == "all <= 0.3":
            continue
        group, split = key.split()
        stars = f["groups"][split][group]["stars"][0]
        cells.append(f"{key} {v} (± {1 / math.sqrt(stars):.2f}, {stars} stars)")
    out += ("\n|Teff bias| / Teff scatter of the M dwarfs and YSOs in every split (largest "
            f"{worst}; {target(worst, '<=', 0.3)}): " + ", ".join(cells) + ". The ± is the "
            "standard error of a mean over that many stars in units of their scatter (1/√N): "
            "with a few tens of stars per group, a ratio of 0.3 is within two standard errors "
            "of none at all, so one survey of this size cannot show a bias that small; the "
            f"{FULL_SURVEY:,}-star survey's groups are three times larger.\n\n")
    out += source(rec, "information") + "\n"
    if f["stars"] < FULL_SURVEY:
        out += (f"\nThe {FULL_SURVEY:,}-star benchmark survey is not measured in this round: "
                f"`nice -n 10 python bench/information.py --n {FULL_SURVEY} --fit` (a default "
                "`fit`, then the bound of every star) writes it; `bench/cool_bias.py --n "
                f"{FULL_SURVEY} --seeds 0 1 2` the three fits' spread.\n")
    return out + information_variants()


#: The size of the package's benchmark survey (seed 23), on which the issue's targets are set.
FULL_SURVEY = 6000


def _fit_line(fit: dict | None) -> str:
    if not fit:
        return "The run was trained before (`--run`)."
    return ("The run was fitted by the script with the defaults"
            + (f" and `{' '.join(fit['overrides'])}`" if fit["overrides"] else "")
            + f": {fmt(fit['seconds'])} s, {_epochs(fit)}.")


def information_variants() -> str:
    """``bench/information.py --tag NAME`` runs (other recipes, or other fits of the defaults):
    test-split scatter / bound per group, one row each."""
    names = tagged("information")
    if not names:
        return ""
    rows = []
    for name in names:
        rec = load(name)
        f = rec["figures"]
        test = f["groups"]["test"]
        rows.append([f"`python {rec['command']}`"]
                    + [" / ".join(f"{v:.2f}" for v in test[g]["scatter_over_bound"])
                       for g in ("Full", "MStar", "YSO")]
                    + [" / ".join(f"{test[g]['bias'][0]:+.0f}" for g in ("MStar", "YSO")),
                       _last_layer(rec), fmt(f["fit"]["seconds"]) if f.get("fit") else "before",
                       fmt(rec.get("load_average_1min_at_end")), f"`bench/results/{name}.json`"])
    return ("\nOther runs (test split, scatter / bound RMS for Teff / log g / [Fe/H]; the M "
            "dwarfs' and YSOs' Teff bias in K; the last layer as trained or fitted again "
            "(`refit_last_layer`); `fit` wall time, or `before` for a run trained before, whose "
            "time `bench/cool_bias.py` records):\n\n"
            + table(["command", "Full", "MStar", "YSO", "Teff bias MStar / YSO", "last layer",
                     "fit (s)", "load", "source"], rows))


def _last_layer(rec: dict) -> str:
    return "fitted again" if (rec.get("recipe") or {}).get("refit_last_layer") else "as trained"


def cool_bias_section() -> str:
    out = "## Why a fit can leave the M dwarfs and YSOs offset (`bench/cool_bias.py`)\n\n"
    names = [n for n in (["cool_bias"] if load("cool_bias") else []) + tagged("cool_bias")
             if not n.endswith("posthoc")]
    if not names:
        return out + missing("cool_bias", "bench/cool_bias.py --n 6000")
    out += ("Several `fit`s of one survey, each with its recipe seed, one after the other, each "
            "taken apart: the Teff bias (prediction - label, K) of each group and split as "
            "Table 3 has it; the same bias on the training split when the network is run as it "
            "was trained (`dropout`: the mean of 10 passes with dropout on; `noise`: the mean "
            "over 10 draws of the training's noise augmentation; `train mode`: both); and, over "
            "the fine-tuning epochs, how far the training split's Teff bias wanders (standard "
            "deviation over the epochs) against what early stopping can see: the median change "
            "of the dev loss from one epoch to the next, beside the change that a 35 K offset "
            "of every dev M dwarf and YSO would make.\n\n")
    for name in names:
        if not (_refitted(load(name)) or is_finetune_only(load(name))):
            out += _cool_bias_runs(name)
    return out


def _refitted(rec: dict) -> bool:
    return any(fit.get("last_layer") for fit in rec["figures"]["fits"])


def refit_section() -> str:
    """``bench/cool_bias.py`` runs whose fits ended with the last layer fitted again, the refit
    post hoc on networks trained without it, and whether it earns a place in the default recipe
    (a section of its own: its runs trained with another recipe than the default)."""
    out = ("## The last layer fitted again (`bench/cool_bias.py`)\n\n"
           "The same measurements as the section above, on fits that end with the last layer "
           "fitted again in inference mode, each category weighted alike "
           "(`apnet_tf.training.last_layer`), and the refit applied afterwards to the networks "
           "of that section.\n\n")
    names = [n for n in tagged("cool_bias") if not n.endswith("posthoc")]
    runs = [n for n in names if _refitted(load(n))]
    posthoc = [n for n in tagged("cool_bias") if n.endswith("posthoc")]
    if not runs and not posthoc:
        return out + missing("cool_bias-refit", "bench/cool_bias.py --n 2000 --seeds 0 1 2 --set "
                             "refit_last_layer=true --tag refit")
    for name in runs:
        out += _cool_bias_runs(name)
    for name in posthoc:
        out += _cool_bias_posthoc(name)
    return out


def _cool_bias_runs(name: str) -> str:
    rec = load(name)
    f = rec["figures"]
    rows, seen, cond = [], [], []
    for fit in f["fits"]:
        g, t = fit["groups"], fit["trace_summary"]
        refit = fit.get("last_layer")
        rows.append([fit["recipe_seed"], fmt(fit["seconds"]),
                     f"{refit['seconds']:.3g}" if refit and "seconds" in refit else "off",
                     f"{fit['load_before']} / {fit['load_after']}", _epochs_only(fit)]
                    + [" / ".join(f"{g[s][grp]['bias'][0]:+.0f}" for s in ("train", "dev",
                                                                           "test"))
                       for grp in ("Payne", "MStar", "YSO")])
        change = t["median_epoch_to_epoch_dev_loss_change"]
        offset = t["dev_loss_change_of_35K_rare_offset"]
        seen.append([fit["recipe_seed"]] + [fmt(t[f"teff_bias_sd_{c}"])
                                            for c in ("payne", "mstar", "yso")]
                    + [f"{change:.2g}", f"{offset:.2g}", f"**{change / offset:.1f}x**"])
        c = fit["conditions"]
        cond.append([fit["recipe_seed"]]
                    + [" / ".join(f"{c[m]['train'][grp]['bias'][0]:+.0f}"
                                  for m in ("plain", "dropout", "noise", "train_mode"))
                       for grp in ("Payne", "MStar", "YSO")])
    refit = any(fit.get("last_layer") for fit in f["fits"])
    out = (f"**`{name}`: {f['n_stars']:,}-star survey (seed {f['survey_seed']}), "
           f"{recipe_words(rec)}"
           + (f" with `{' '.join(f['overrides'])}`" if f["overrides"] else "")
           + (", the last layer fitted again" if refit else ", the last layer as trained")
           + "**: Teff bias train / dev / test (K)\n\n")
    out += table(["seed", "fit (s)", "of which last layer (s)", "load before / after",
                  "epochs", "Payne", "MStar", "YSO"], rows)
    out += ("\nTraining split, Teff bias (K) plain / dropout / noise / train mode:\n\n"
            + table(["seed", "Payne", "MStar", "YSO"], cond))
    out += ("\nOver the fine-tuning epochs: standard deviation of the training split's Teff "
            "bias (K), and the dev loss:\n\n"
            + table(["seed", "Payne", "MStar", "YSO", "median epoch-to-epoch change",
                     "change from a 35 K offset", "ratio"], seen))
    return out + "\n" + source(rec, name) + "\n\n"


def _epochs_only(fit: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in fit["epochs"].items())


def _cool_bias_posthoc(name: str) -> str:
    rec = load(name)
    f = rec["figures"]
    runs = name[len("cool_bias-"):-len("posthoc")].rstrip("-") or "untagged"
    out = ("**The last layer fitted again** (`apnet_tf.training.last_layer`, the end of `fit "
           f"--refit-last-layer`) on the very networks of `cool_bias-{runs}` above, made without "
           "it: Table 3's scatter per group before -> after, and the Teff bias (K); below, the "
           "penalty dev chose per label (none: the trained layer kept).\n\n")
    rows = []
    for fit in f["posthoc"]:
        for split in ("train", "dev", "test"):
            for grp in ("Full", "Payne", "MStar", "YSO"):
                b, a = fit["before"][split][grp], fit["after"][split][grp]
                rows.append([fit["recipe_seed"], split, grp]
                            + [f"{fmt(b['scatter'][k], 3)} -> {fmt(a['scatter'][k], 3)}"
                               for k in range(3)]
                            + [f"{b['bias'][0]:+.0f} -> {a['bias'][0]:+.0f}"])
    out += table(["seed", "split", "group", *LABELS, "Teff bias"], rows)
    pens = "; ".join(f"seed {fit['recipe_seed']}: " + ", ".join(
        "none" if p is None else f"{p:g}" for p in fit["refit"]["penalty"]) + f" "
        f"({fit['refit_seconds']} s)" for fit in f["posthoc"])
    return out + f"\nPenalties (Teff, log g, [Fe/H]) and refit time: {pens}.\n\n" + \
        source(rec, name) + "\n\n" + refit_verdict(rec)


GROUPS4 = ("Full", "Payne", "MStar", "YSO")


#: The refit may add at most this factor to `fit`'s wall time.
REFIT_TIME = 1.5


def refit_verdict(posthoc: dict) -> str:
    """Whether the last-layer refit belongs in the default recipe: on the same networks (post
    hoc), the test split's scatter, hence scatter / bound, of every group, label and network no
    larger after than before and smaller in at least one label; across fits with and without it,
    the mean test scatter / bound per group; and the refit's share of `fit`'s time."""
    worse, better, cells = [], 0, 0
    for fit in posthoc["figures"]["posthoc"]:
        for grp in GROUPS4:
            b, a = fit["before"]["test"][grp]["scatter"], fit["after"]["test"][grp]["scatter"]
            cells += 3
            better += sum(a[k] < b[k] for k in range(3))
            worse += [f"seed {fit['recipe_seed']} {grp} {LABELS[k]} {fmt(b[k], 3)} -> "
                      f"{fmt(a[k], 3)}" for k in range(3) if a[k] > b[k]]
    out = ("**Does the refit bring Table 3 closer to the bound?** On the same networks, test "
           f"split, group x label x network: {better} of {cells} closer, "
           f"{cells - better - len(worse)} unchanged (the trained layer kept), {len(worse)} "
           "farther" + (f" ({'; '.join(worse)})" if worse else "") + "; closer in every group: "
           + ("**met**" if not worse else "**NOT met**") + ".\n\n")
    means = _mean_ratios()
    if means:
        out += ("Across fits, the mean test scatter / bound RMS (Teff / log g / [Fe/H]) as "
                "trained -> fitted again: " + "; ".join(
                    f"{grp} " + " / ".join(f"{o:.2f} -> {n:.2f}" for o, n in
                                           zip(means[False][grp], means[True][grp]))
                    for grp in GROUPS4) + f" (over {means['counts']}).\n\n")
        gain = min(1 - means[True][g][k] / means[False][g][k] for g in GROUPS4 for k in range(3))
        out += (f"Smallest gain of the mean scatter / bound over the groups and labels: "
                f"**{100 * gain:+.0f}%** ({target(100 * gain, '>=', 25, unit='%')}).\n\n")
    times = [fit["seconds"] / (fit["seconds"] - fit["last_layer"]["seconds"])
             for name in tagged("cool_bias") if not name.endswith("posthoc")
             for fit in load(name)["figures"]["fits"] if fit.get("last_layer")]
    if times:
        out += (f"`fit` with the refit / without it (the refit's own seconds taken out of the "
                f"same fits): at most **{max(times):.3f}x** "
                f"({target(max(times), '<=', REFIT_TIME, unit='x')}).\n\n")
    return out


def _mean_ratios() -> dict | None:
    """{refit: {group: [mean test scatter / bound per label]}} over the information.py runs of
    the same survey, with and without the refit; None without both."""
    runs = {False: [], True: []}
    main = load("information")
    for name in (["information"] if main else []) + tagged("information"):
        rec = load(name)
        if main and rec["figures"]["survey"] != main["figures"]["survey"]:
            continue
        runs[bool((rec.get("recipe") or {}).get("refit_last_layer"))].append(rec)
    if not (runs[False] and runs[True]):
        return None
    out = {refit: {grp: [sum(r["figures"]["groups"]["test"][grp]["scatter_over_bound"][k]
                             for r in recs) / len(recs) for k in range(3)] for grp in GROUPS4}
           for refit, recs in runs.items()}
    out["counts"] = (f"{len(runs[False])} fits as trained and {len(runs[True])} fitted "
                     "again")
    return out
