"""Inference precision: float32 against mixed bfloat16 (``infer --precision``), speed and cost.

The trained run of ``bench/accuracy.py`` (``.bench/run_default``, on the cached 3,000-star
synthetic survey) predicts the survey's test split and the 24 real DR13 apStar files
(``../shared/data``) in float32 (the reference) and through its bfloat16 twin
(``model.precision.computing_in``), in one process:

* throughput: plain predictions at batch 256 and the Monte Carlo (mc = 100, 32 stars per call) on
  the test split, the two precisions alternating three times, each keeping its best rate;
* accuracy cost: per label, the median and the largest |bfloat16 - float32| of the plain
  predictions in units of the label's spread (the std of normalization.json), and the
  test-split scatter against the labels in both precisions;
* what ``--precision auto`` decides on each input (``inference.predict.job_precision``, which
  probes the job's first 256 spectra).

    python bench/precision.py [--n 3000] [--seconds 6]
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    CACHE,
    add_tag,
    best_rates,
    machine,
    report,
    run_recipe,
    survey_records,
)
from accuracy import load_split  # noqa: E402
from infer import rate  # noqa: E402

LABELS = ("teff", "logg", "fe_h")
REAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "apogee_dr13")


def shift_figures(ref: np.ndarray, trial: np.ndarray, spread: np.ndarray, labels=LABELS,
                  count: str = "stars") -> dict:
    """Median and largest |trial - ref| per label, in percent of its spread and in its units;
    ``count``: the name of the number of rows compared."""
    from apnet_tf.model.precision import precision_shift

    median, largest = precision_shift(ref, trial, spread)
    return {count: len(ref),
            "median_pct_of_spread": dict(zip(labels, np.round(100 * median, 4).tolist())),
            "max_pct_of_spread": dict(zip(labels, np.round(100 * largest, 3).tolist())),
            "median_abs": dict(zip(labels, np.round(median * spread, 5).tolist())),
            "max_abs": dict(zip(labels, np.round(largest * spread, 4).tolist()))}


def throughput(models: dict, flux: np.ndarray, err: np.ndarray, bad: np.ndarray,
               seconds: float) -> dict:
    """Best plain (batch 256) and Monte Carlo (mc = 100, 32 stars) rates of each model."""
    from apnet_tf.model.uncertainty import MonteCarloPredictor

    batch, stars = flux[:256], 32
    runners = {}
    for k, m in models.items():
        mc = MonteCarloPredictor(m.model, 100)
        runners[k, "plain_spectra_per_s"] = (lambda m=m: m.predict(batch), len(batch))
        runners[k, "mc_r100_stars_per_s"] = (
            lambda mc=mc: mc(flux[:stars], err[:stars], bad[:stars], seed=0), stars)
    # infer's rate warms each runner up itself
    best = best_rates(runners, 3, seconds, timer=rate, warm_up=False)
    digits = {"plain_spectra_per_s": 1, "mc_r100_stars_per_s": 2}
    return {k: {key: round(best[k, key], d) for key, d in digits.items()} for k in models}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="stars of bench/accuracy.py's survey")
    ap.add_argument("--seconds", type=float, default=6.0, help="timing per rate and precision")
    add_tag(ap)
    args = ap.parse_args()

    from apnet_tf.data.planning import plan_units
    from apnet_tf.data.readers import read_unit
    from apnet_tf.evaluation.tables import scatter
    from apnet_tf.inference.predict import job_precision
    from apnet_tf.model.loading import load_model
    from apnet_tf.model.precision import bfloat16_is_native, label_spread

    run = os.path.join(CACHE, "run_default")
    if not os.path.exists(os.path.join(run, "best.keras")):
        sys.exit(f"{run}: no trained run; python bench/accuracy.py --n {args.n} trains it")
    _, records = survey_records(args.n)
    f32 = load_model(run)
    models = {"float32": f32, "mixed_bfloat16": f32.in_precision("mixed_bfloat16")}
    spread = label_spread(f32.normalization, f32.model)
    x, y = load_split(records, "test")
    test_plan = plan_units([records], 256, ["test"])
    test_batch = read_unit(test_plan.units[0])[0]  # flux, err, bad of test stars, for the MC
    real = sorted(glob.glob(os.path.join(REAL, "**", "apStar*.fits"), recursive=True))
    real_plan = plan_units(real, 256)
    real_flux = read_unit(real_plan.units[0])[0].flux

    result = {"machine": machine(), "bfloat16_native": bfloat16_is_native(),
              "run": os.path.relpath(run, os.path.dirname(CACHE)), "test_stars": len(x),
              "real_dr13_files": len(real), "spread": dict(zip(LABELS, spread.tolist()))}
    rates = throughput(models, test_batch.flux, test_batch.err, test_batch.bad, args.seconds)
    result["throughput"] = rates
    for key in ("plain_spectra_per_s", "mc_r100_stars_per_s"):
        result["throughput"][f"{key}_bf16_over_f32"] = round(
            rates["mixed_bfloat16"][key] / rates["float32"][key], 3)
    preds = {k: m.predict(x) for k, m in models.items()}
    result["shift_test_split"] = shift_figures(preds["float32"], preds["mixed_bfloat16"], spread)
    result["test_scatter"] = {k: dict(zip(LABELS, np.round(scatter(p, y), 4).tolist()))
                              for k, p in preds.items()}
    result["shift_real_dr13"] = shift_figures(f32.predict(real_flux),
                                              models["mixed_bfloat16"].predict(real_flux), spread)
    result["auto"] = {"test_split": job_precision(f32, test_plan, "auto")[1],
                      "real_dr13": job_precision(f32, real_plan, "auto")[1]}
    report("precision", result, args.tag, recipe=run_recipe(run))


if __name__ == "__main__":
    main()
