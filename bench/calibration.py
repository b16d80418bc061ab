"""Which sigma calibration holds for every kind of star? Candidates fitted on dev (and train),
judged on test and on an independent survey.

Needs a trained run on the 3,000-star survey of ``bench/accuracy.py`` (``.bench/run_default``).
It runs the raw Monte Carlo (R = 100, seed 0) once over the train, dev and test splits (cached in
the run folder as ``bench_mc_{split}.npz``), fits each candidate, and reports the 1-sigma coverage
per parameter for all stars, each category (payne, mstar, yso) and each S/N tercile, of the test
split and (``--indep N``) of every star of a second synthetic survey made with another seed, which
the network never saw (``bench_mc_indep{N}.npz``): its larger categories tell a calibration's own
error from the test split's sampling noise. A run without calibration.json gets the fit
``calibrate`` would write (the same fit; other Monte Carlo draws). Candidates, all on the raw
Monte Carlo sigma:

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
* ``package``: ``calibration_fit.fit_calibration`` as ``calibrate`` runs it: shape (noise and
  floor per region, a factor per region and S/N tercile) on the train split, level on dev.

Finally it writes the catalog ``infer`` writes with its defaults for the test split (the run's own
calibration.json, fitted at the end of ``fit``) and reports its coverage (``--infer``).

    python bench/calibration.py [--run .bench/run_default] [--records .bench/records3000_s0]
                                [--indep 3000] [--infer]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _common import CACHE, add_tag, machine, report, survey_records  # noqa: E402

BAND = (0.60, 0.76)


def mc_arrays(run: str, records: str, split: str | None, name: str | None = None,
              ) -> dict[str, np.ndarray]:
    """pred, sigma (raw MC), labels, snr, category, split of one split's stars (every labelled
    star with split None): the Monte Carlo that ``calibrate`` (train, dev) and ``infer`` (test)
    run, R = 100, seed 0. Cached per run as bench_mc_{name or split}.npz."""
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=os.path.join(CACHE, "run_default"))
    ap.add_argument("--records", default=os.path.join(CACHE, "records3000_s0"))
    ap.add_argument("--indep", type=int, default=0,
                    help="also judge on every star of an N-star survey made with seed 1")
    ap.add_argument("--infer", action="store_true", help="also check infer's default catalog")
    add_tag(ap)
    args = ap.parse_args()

    from apnet_tf.calibration.fit import fit_calibration
    from apnet_tf.model.calibration import CALIBRATION

    parts = {s: mc_arrays(args.run, args.records, s) for s in ("train", "dev", "test")}
    d = {k: np.concatenate([parts["dev"][k], parts["test"][k]]) for k in parts["dev"]}
    dev, test = d["split"] == "dev", d["split"] == "test"
    tr = parts["train"]
    # the fit ``calibrate`` (and so the end of ``fit``) runs; its Monte Carlo draws differ,
    # because ``calibrate`` runs train and dev in one pass
    cal = fit_calibration(d["pred"][dev], d["sigma"][dev], d["labels"][dev], 100, 0,
                          snr=d["snr"][dev], shape=(tr["pred"], tr["sigma"], tr["labels"],
                                                    tr["snr"]))
    dev_only = fit_calibration(d["pred"][dev], d["sigma"][dev], d["labels"][dev], 100, 0,
                               snr=d["snr"][dev])
    if not os.path.exists(os.path.join(args.run, CALIBRATION)):
        cal.save(os.path.join(args.run, CALIBRATION))
    judged = {"test": {k: v[test] for k, v in d.items()}}
    if args.indep:
        _, indep_records = survey_records(args.indep, seed=1)
        judged[f"independent survey ({args.indep} stars, seed 1)"] = mc_arrays(
            args.run, indep_records, None, name=f"indep{args.indep}")
    result = {"machine": machine(), "train_stars": int(len(tr["pred"])),
              "dev_stars": int(dev.sum()), "columns": "teff, logg, fe_h, stars"}
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
            "package": cal.sigma(x["pred"], sig, x["snr"]),
        }
        result[where] = {name: judge(x["pred"], s, x["labels"], x["category"], x["snr"])
                         for name, s in candidates.items()}
    if args.infer:
        from apnet_tf.inference.predict import predict_catalog
        from apnet_tf.io.catalog import catalog_arrays
        from apnet_tf.model.loading import load_model

        cat = predict_catalog(load_model(args.run), [args.records], mc=100,
                              split_filter=("test",)).catalog
        labels, pred, sigma = catalog_arrays(cat)
        result["infer_defaults"] = {"sigma": cat.meta["SIGMA"], **judge(
            pred, sigma, labels, np.asarray(cat["CATEGORY"]).astype(str),
            np.asarray(cat["SNR"], float))}
    report("calibration", result, args.tag)


if __name__ == "__main__":
    main()
