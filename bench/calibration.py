"""Which sigma calibration holds for every kind of star? Candidates fitted on dev (and train),
judged on test and on an independent survey.

Needs a trained run on the 3,000-star survey of ``bench/accuracy.py`` (``.bench/run_default``).
It runs the raw Monte Carlo (mc = 100, seed 0) once over the train, dev and test splits (cached in
the run folder as ``bench_mc_{split}.npz``, and every draw of the train and dev stars as
``bench_draws_{split}.npz``), fits each candidate, and reports the 1-sigma coverage
per parameter for all stars, each category (payne, mstar, yso) and each S/N tercile, of the test
split and (``--indep N``) of every star of a second synthetic survey made with another seed, which
the network never saw (``bench_mc_indep{N}.npz``): its larger categories tell a calibration's own
error from the test split's sampling noise. Candidates, all on the raw Monte Carlo sigma:

* ``raw``: no calibration (the paper);
* ``global``: one factor per parameter (what ``calibrate`` fitted first, there on MC-dropout
  sigmas);
* ``snr``: one factor per S/N tercile of dev;
* ``region``: one factor per Kiel region of the prediction (``calibration.kiel_region``);
* ``region_snr``: region x S/N tercile factors, with fallbacks to the region (< 30 dev stars)
  and to all stars;
* ``floor``: per region, sigma^2 = (a sigma_MC)^2 + b^2 with a and b fitted by a Gaussian
  likelihood on dev (all stars for a region with < 30);
* ``dev_only``: ``calibration_fit.fit_calibration`` given only the dev stars (they give its
  shape and its level);
* ``package_every_star_r100``: ``calibration_fit.fit_calibration`` as ``calibrate`` ran it
  before its subset: shape (noise and floor per region, a factor per region and S/N tercile) on
  every training star, level on every dev star, mc = 100;
* ``package``: the same as ``calibrate`` runs it now: on its seeded, stratified subset
  (``calibration.subset``, seed 0) with its R (the first R of the cached draws).

``--subsets`` judges the package's fit with other subset sizes and R, over ten seeds each, on
the independent survey (``SWEEP``): what the defaults were chosen by. Finally it writes the
catalog ``infer`` writes with its defaults for the test split (the run's own calibration.json;
``--calibrate`` fits it again first with ``calibrate``'s defaults, timed) and reports its coverage
(``--infer``).

    python bench/calibration.py [--run .bench/run_default] [--records .bench/records3000_s0]
                                [--indep 3000] [--subsets] [--infer [--calibrate]]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _common import CACHE, add_tag, machine, report, run_recipe, survey_records  # noqa: E402

BAND = (0.60, 0.76)


def mc_arrays(run: str, records: str, split: str | None, name: str | None = None,
              ) -> dict[str, np.ndarray]:
    """pred, sigma (raw MC), labels, snr, category, split of one split's stars (every labelled
    star with split None): the Monte Carlo that ``calibrate`` (train, dev) and ``infer`` (test)
    run, mc = 100, seed 0. Cached per run as bench_mc_{name or split}.npz."""
    cache = os.path.join(run, f"bench_mc_{name or split}.npz")
    if os.path.exists(cache):
        with np.load(cache) as f:
            return {k: f[k] for k in f.files}
    from apnet_tf.inference.predict import predict_catalog
    from apnet_tf.io.catalog import catalog_arrays
    from apnet_tf.model.loading import load_model

    cat = predict_catalog(load_model(run, calibration=False), [records], mc=100, seed=0,
                          calibrated=False,
                          split_filter=("train", "dev", "test") if split is None else (split,)
                          ).catalog
    labels, pred, sigma = catalog_arrays(cat)
    out = {"pred": pred, "sigma": sigma, "labels": labels, "snr": np.asarray(cat["SNR"], float),
           "category": np.asarray(cat["CATEGORY"]).astype(str),
           "split": np.asarray(cat["SPLIT"]).astype(str)}
    np.savez(cache, **out)
    return out


def mc_draws(run: str, records: str, split: str, r: int = 100) -> dict[str, np.ndarray]:
    """Every one of the ``r`` Monte Carlo predictions of each labelled star of one split,
    ``draws`` (N, r, 3) float32, with labels (N, 3), snr and category (N,): any R' <= r is then
    the first R' draws. The noise is ``uncertainty.monte_carlo``'s (seed 0, the star's row);
    cached per run as bench_draws_{split}.npz."""
    cache = os.path.join(run, f"bench_draws_{split}.npz")
    if os.path.exists(cache):
        with np.load(cache) as f:
            return {k: f[k] for k in f.files}
    import tensorflow as tf

    from apnet_tf.constants import MC_ERROR_CAP, MC_ROWS_PER_CHUNK
    from apnet_tf.data.planning import plan_units
    from apnet_tf.data.pool import iter_units
    from apnet_tf.model.loading import load_model
    from apnet_tf.model.uncertainty import (
        clean_errors,
        noise_scale,
        noisy_draws,
        stateless_seed,
    )

    model = load_model(run, calibration=False).model
    net = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    seed = tf.constant(stateless_seed(0), tf.int64)
    per = max(1, MC_ROWS_PER_CHUNK // r)
    out = {"draws": [], "labels": [], "snr": [], "category": []}
    first = 0
    for _, batch, _ in iter_units(plan_units([records], 256, (split,)).units, 0):
        err, bad = clean_errors(batch.err, batch.bad)
        scale = noise_scale(err, bad, MC_ERROR_CAP)
        for lo in range(0, len(batch.flux), per):
            hi = min(lo + per, len(batch.flux))
            x = noisy_draws(batch.flux[lo:hi], scale[lo:hi], r, seed, first + lo)
            out["draws"].append(net(x).numpy().reshape(hi - lo, r, 3).astype(np.float32))
        first += len(batch.flux)
        out["labels"].append(batch.labels)
        out["snr"].append(batch.snr)
        out["category"].append(np.asarray(batch.category).astype(str))
    out = {k: np.concatenate(v) for k, v in out.items()}
    np.savez(cache, **out)
    return out


def _cells(pred, snr, edges, use_region: bool, use_snr: bool) -> np.ndarray:
    from apnet_tf.model.calibration import kiel_region, snr_bin

    region = kiel_region(pred[:, 0], pred[:, 1]) if use_region else np.zeros(len(pred), int)
    sbin = snr_bin(snr, edges) if use_snr else np.zeros(len(pred), int)
    return region * 10 + sbin


def cell_factors(d: dict, dev, test, use_region: bool, use_snr: bool) -> np.ndarray:
    """Factors for the test stars from the 68.3% quantile of |r| / sigma per dev cell."""
    from apnet_tf.model.calibration import fit_scale

    edges = np.quantile(d["snr"][dev], [1 / 3, 2 / 3])
    c_dev = _cells(d["pred"][dev], d["snr"][dev], edges, use_region, use_snr)
    c_test = _cells(d["pred"][test], d["snr"][test], edges, use_region, use_snr)
    overall = fit_scale(d["pred"][dev], d["sigma"][dev], d["labels"][dev])
    out = np.tile(overall, (test.sum(), 1))
    for c in np.unique(c_test):
        sel = c_dev == c
        s = fit_scale(d["pred"][dev][sel], d["sigma"][dev][sel], d["labels"][dev][sel],
                      min_stars=30)
        out[c_test == c] = np.where(np.isfinite(s), s, overall)
    return out


def floor_sigma(d: dict, dev, test) -> np.ndarray:
    """Per region, sigma^2 = (a sigma)^2 + b^2 maximising the Gaussian likelihood on dev
    (``calibration_fit.max_likelihood``; all dev stars for a region with fewer than 30)."""
    from apnet_tf.calibration.fit import max_likelihood
    from apnet_tf.model.calibration import kiel_region, usable

    r_dev = kiel_region(d["pred"][dev][:, 0], d["pred"][dev][:, 1])
    r_test = kiel_region(d["pred"][test][:, 0], d["pred"][test][:, 1])
    out = np.array(d["sigma"][test], float)
    for k in range(3):
        ok = usable(d["pred"][dev], d["sigma"][dev], d["labels"][dev], k)
        res = d["pred"][dev][:, k] - d["labels"][dev][:, k]
        for region in np.unique(r_test):
            sel = ok & ((r_dev == region) if (r_dev == region).sum() >= 30 else True)
            a, b = max_likelihood(res[sel], d["sigma"][dev][sel, k])
            t = r_test == region
            out[t, k] = np.sqrt((a * d["sigma"][test][t, k]) ** 2 + b**2)
    return out


def judge(pred, sigma, labels, category, snr, split=None) -> dict:
    """Coverage per group of the given stars (all taken as one split)."""
    from apnet_tf.evaluation.tables import coverage_table

    table = coverage_table(pred, labels, {"s": sigma}, category, np.full(len(pred), "test"), snr)
    rows = table.loc[("s", "test")]
    cov = rows[["teff", "logg", "fe_h"]]
    worst = float(np.nanmax(np.abs(cov.to_numpy() - 0.683)))
    inside = bool(((cov >= BAND[0]) & (cov <= BAND[1])).to_numpy().all())
    return {"worst_abs_dev_from_0.683": round(worst, 3), "all_cells_in_0.60-0.76": inside,
            "coverage": {g: [round(float(v), 3) for v in r] + [int(rows.loc[g, "stars"])]
                         for g, r in cov.iterrows()}}


#: The subset sizes and Monte Carlo draws ``--subsets`` tries (each with the package's
#: default of the other; 0: every star), and the seeds each is drawn with (the subset and which
#: of the mc = 100 draws it keeps).
SWEEP = {"per_stratum": (50, 100, 150, 200, 0), "mc": (10, 20, 30, 100),
         "seeds": tuple(range(10))}


def subset_fit(train: dict, dev: dict, per_stratum: int, r: int, seed: int):
    """(calibration, stars in its Monte Carlo) as ``calibrate`` fits it with this subset size,
    R and seed, from the cached mc = 100 draws (``mc_draws``) of every train and dev star: its
    subset drawn by ``calibration.subset`` (from every star, as ``calibrate`` reads on a survey
    this small), the first R of a seeded shuffle of each star's draws."""
    from apnet_tf.calibration.fit import fit_calibration
    from apnet_tf.calibration.subset import (
        ALL_STARS,
        DEV_STRATA,
        strata,
        take_per_stratum,
        take_proportional,
        tercile_edges,
    )

    rng = np.random.default_rng([seed, 2])
    edges = tercile_edges(train["snr"])
    picks = (take_per_stratum(strata(train["labels"], train["snr"], edges), per_stratum, rng),
             take_proportional(strata(dev["labels"], dev["snr"], edges),
                               None if per_stratum == ALL_STARS else DEV_STRATA * per_stratum,
                               rng))
    keep = np.random.default_rng([seed, 3]).permutation(train["draws"].shape[1])[:r]
    arrays = []
    for d, idx in zip((train, dev), picks):
        draws = d["draws"][idx][:, keep].astype(float)
        arrays.append((draws.mean(1), draws.std(1), d["labels"][idx], d["snr"][idx]))
    return fit_calibration(*arrays[1][:3], r, seed, snr=arrays[1][3], shape=arrays[0],
                           snr_edges=edges), len(picks[0]) + len(picks[1])


def subset_sweep(train: dict, dev: dict, judged: dict) -> dict:
    """Coverage on the judged stars (mc = 100 sigmas, as ``infer`` gives them) of calibrations
    fitted on subsets of each size with each R (``SWEEP``): per setting, the stars in its Monte
    Carlo, and over the seeds the mean and the largest worst |coverage - 0.683| and how many
    seeds keep every cell in 0.60-0.76."""
    from apnet_tf.constants import CALIBRATION_MC_DRAWS, CALIBRATION_STARS_PER_STRATUM

    settings = [(k, CALIBRATION_MC_DRAWS) for k in SWEEP["per_stratum"]]
    settings += [(CALIBRATION_STARS_PER_STRATUM, r) for r in SWEEP["mc"]
                 if r != CALIBRATION_MC_DRAWS] + [(0, 100)]
    out = {}
    for per_stratum, r in settings:
        row: dict = {"monte_carlo_stars": 0}
        for where, x in judged.items():
            worst, inside = [], 0
            for seed in SWEEP["seeds"]:
                cal, row["monte_carlo_stars"] = subset_fit(train, dev, per_stratum, r, seed)
                j = judge(x["pred"], cal.sigma(x["pred"], x["sigma"], x["snr"]), x["labels"],
                          x["category"], x["snr"])
                worst.append(j["worst_abs_dev_from_0.683"])
                inside += j["all_cells_in_0.60-0.76"]
            row[where] = {"worst_mean": round(float(np.mean(worst)), 3),
                          "worst_max": round(float(np.max(worst)), 3),
                          "seeds_all_cells_in_band": inside, "seeds": len(SWEEP["seeds"])}
        out[f"{per_stratum or 'all'} per stratum, mc = {r}"] = row
    return out


def calibrated_infer(run: str, records: str, recalibrate: bool) -> dict:
    """Coverage of the test split's catalog that ``infer`` writes with its defaults (the run's
    calibration.json); with ``recalibrate``, ``calibrate`` with its defaults first, timed."""
    import time

    from apnet_tf.calibration.fit import calibrate
    from apnet_tf.inference.predict import predict_catalog
    from apnet_tf.io.catalog import catalog_arrays
    from apnet_tf.model.loading import load_model

    out = {}
    if recalibrate:
        t = time.perf_counter()
        cal = calibrate(run, records)
        out["calibrate_seconds"] = round(time.perf_counter() - t, 1)
        out["calibrate_subset"] = cal.subset
    cat = predict_catalog(load_model(run), [records], mc=100, split_filter=("test",)).catalog
    labels, pred, sigma = catalog_arrays(cat)
    return {"sigma": cat.meta["SIGMA"], **out, **judge(
        pred, sigma, labels, np.asarray(cat["CATEGORY"]).astype(str),
        np.asarray(cat["SNR"], float))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=os.path.join(CACHE, "run_default"))
    ap.add_argument("--records", default=os.path.join(CACHE, "records3000_s0"))
    ap.add_argument("--indep", type=int, default=0,
                    help="also judge on every star of an N-star survey made with seed 1")
    ap.add_argument("--infer", action="store_true", help="also check infer's default catalog")
    ap.add_argument("--calibrate", action="store_true",
                    help="with --infer: run calibrate with its defaults first (timed)")
    ap.add_argument("--subsets", action="store_true",
                    help="also judge calibrations of other subset sizes and R (SWEEP)")
    add_tag(ap)
    args = ap.parse_args()

    from apnet_tf.calibration.fit import fit_calibration
    from apnet_tf.constants import CALIBRATION_MC_DRAWS, CALIBRATION_STARS_PER_STRATUM

    parts = {s: mc_arrays(args.run, args.records, s) for s in ("train", "dev", "test")}
    d = {k: np.concatenate([parts["dev"][k], parts["test"][k]]) for k in parts["dev"]}
    dev, test = d["split"] == "dev", d["split"] == "test"
    tr = parts["train"]
    draws = {s: mc_draws(args.run, args.records, s) for s in ("train", "dev")}
    # what ``calibrate`` fits (and so the end of ``fit``), seed 0: on its subset, with its R
    cal, mc_stars = subset_fit(draws["train"], draws["dev"], CALIBRATION_STARS_PER_STRATUM,
                               CALIBRATION_MC_DRAWS, 0)
    # before the subset: every train and dev star, mc = 100
    every = fit_calibration(d["pred"][dev], d["sigma"][dev], d["labels"][dev], 100, 0,
                            snr=d["snr"][dev], shape=(tr["pred"], tr["sigma"], tr["labels"],
                                                      tr["snr"]))
    dev_only = fit_calibration(d["pred"][dev], d["sigma"][dev], d["labels"][dev], 100, 0,
                               snr=d["snr"][dev])
    judged = {"test": {k: v[test] for k, v in d.items()}}
    if args.indep:
        _, indep_records = survey_records(args.indep, seed=1)
        judged[f"independent survey ({args.indep} stars, seed 1)"] = mc_arrays(
            args.run, indep_records, None, name=f"indep{args.indep}")
    result = {"machine": machine(), "train_stars": int(len(tr["pred"])),
              "dev_stars": int(dev.sum()), "columns": "teff, logg, fe_h, stars",
              "package": {"stars_per_stratum": CALIBRATION_STARS_PER_STRATUM,
                          "mc": CALIBRATION_MC_DRAWS,
                          "monte_carlo_stars": mc_stars}}
    for where, x in judged.items():
        # candidates fitted on dev, applied to the judged stars
        both = {k: np.concatenate([d[k][dev], x[k]]) for k in d}
        both["split"] = np.r_[np.full(dev.sum(), "dev"), np.full(len(x["pred"]), "test")]
        bdev, btest = both["split"] == "dev", both["split"] == "test"
        sig = x["sigma"]
        candidates = {
            "raw": sig,
            "global": sig * cell_factors(both, bdev, btest, False, False),
            "snr": sig * cell_factors(both, bdev, btest, False, True),
            "region": sig * cell_factors(both, bdev, btest, True, False),
            "region_snr": sig * cell_factors(both, bdev, btest, True, True),
            "floor": floor_sigma(both, bdev, btest),
            "dev_only": dev_only.sigma(x["pred"], sig, x["snr"]),
            "package_every_star_r100": every.sigma(x["pred"], sig, x["snr"]),
            "package": cal.sigma(x["pred"], sig, x["snr"]),
        }
        result[where] = {name: judge(x["pred"], s, x["labels"], x["category"], x["snr"])
                         for name, s in candidates.items()}
    if args.subsets:
        result["subset_sweep"] = subset_sweep(draws["train"], draws["dev"], {
            where: x for where, x in judged.items() if where != "test"} or judged)
    if args.infer:
        result["infer_defaults"] = calibrated_infer(args.run, args.records, args.calibrate)
    report("calibration", result, args.tag, recipe=run_recipe(args.run))


if __name__ == "__main__":
    main()
