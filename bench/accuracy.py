"""Does the network learn? ``fit`` with its defaults against a ridge regression on log flux.

On a 3,000-star synthetic survey (cached under .bench/), it runs what a user runs, ``fit`` with
the default recipe (pretrain + rolling Payne fine-tuning), fits a ridge regression on log flux on
the same train split (alpha chosen on dev), and compares their test-split scatter, both for plain
predictions (``fit``'s Table 3) and for the catalog values of ``apnet-tf infer`` (the mean of 100
Monte Carlo draws, paper 3.5). Acceptance: the network's scatter is at least 3x smaller than
ridge's in every parameter. With --paper it also runs
the paper's recipe (SGD, lr 0.001, raw flux) for 30 epochs.

    python bench/accuracy.py [--n 3000] [--paper] [--set field=value ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _common import CACHE, add_tag, machine, parse_overrides, report, survey_records  # noqa: E402
from _ridge import fit_ridge, log_flux_features  # noqa: E402

TARGET_NAMES = ("teff (K)", "logg (dex)", "fe_h (dex)")


def load_split(records: str, split: str):
    from apnet_tf.data.dataset import make_dataset

    xs, ys = [], []
    for x, y in make_dataset(records, splits=[split], batch_size=512, labeled_only=True):
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def ridge_scatter(records: str) -> tuple[np.ndarray, list]:
    from apnet_tf.evaluation.tables import scatter

    (xt, yt), (xd, yd), (xs, ys) = (load_split(records, s) for s in ("train", "dev", "test"))
    predict = fit_ridge(log_flux_features(xt), yt, log_flux_features(xd), yd)
    return scatter(predict(log_flux_features(xs)), ys), predict.alphas


def catalog_scatter(records: str, run_dir: str, mc: int = 100) -> np.ndarray:
    """Test-split scatter of what ``apnet-tf infer`` writes: the mean of mc draws."""
    import keras

    from apnet_tf.evaluation.tables import scatter
    from apnet_tf.inference.predict import predict_catalog
    from apnet_tf.io.catalog import catalog_arrays
    from apnet_tf.model.loading import load_model

    keras.utils.set_random_seed(0)
    cat = predict_catalog(load_model(run_dir), [records], mc=mc, split_filter=["test"]).catalog
    labels, pred, _ = catalog_arrays(cat)
    return scatter(pred, labels)


def network_scatter(records: str, run_dir: str, recipe, stage: str) -> tuple[np.ndarray, dict]:
    from apnet_tf.workflows import fit

    t = time.perf_counter()
    res = fit(records, run_dir, stage=stage, recipe=recipe, overwrite=True)  # its own cache
    secs = time.perf_counter() - t
    test = res.table3["test"].loc["all"].to_numpy()
    return test, {"seconds": round(secs, 1), "epochs": res.epochs,
                  "rounds": len(res.rounds),
                  "table3_test": {f"{g} {t}": round(float(v), 4) for (g, t), v in
                                  res.table3["test"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--paper", action="store_true", help="also run the paper recipe, 30 epochs")
    ap.add_argument("--set", nargs="*", default=[], help="recipe overrides, field=value")
    ap.add_argument("--stage", default="all")
    add_tag(ap)
    args = ap.parse_args()

    from apnet_tf.training.recipes import Recipe, get_recipe

    overrides = parse_overrides(Recipe(), args.set)
    _, records = survey_records(args.n)
    ridge, alphas = ridge_scatter(records)
    tag = "_".join(f"{k}-{v}" for k, v in overrides.items()) or "default"
    recipe = get_recipe("default", **overrides)
    net, info = network_scatter(records, os.path.join(CACHE, f"run_{tag}"), recipe, args.stage)
    # ``fit``'s Table 3 scores plain predictions; ``infer`` writes the Monte Carlo mean.
    run_dir = os.path.join(CACHE, f"run_{tag}")
    cat = catalog_scatter(records, run_dir)
    result = {"machine": machine(), "n_stars": args.n, "recipe_overrides": overrides,
              "ridge_alphas": alphas,
              "test_scatter": {name: {"network": round(float(a), 4),
                                      "network_catalog_mc100": round(float(c), 4),
                                      "ridge": round(float(b), 4),
                                      "ridge_over_network": round(float(b / a), 2),
                                      "ridge_over_catalog": round(float(b / c), 2)}
                               for name, a, c, b in zip(TARGET_NAMES, net, cat, ridge)},
              "network_run": info}
    result["accept_3x_plain_predictions"] = bool(np.all(ridge / net >= 3.0))
    result["accept_3x_catalog_values"] = bool(np.all(ridge / cat >= 3.0))
    if args.paper:
        paper, pinfo = network_scatter(records, os.path.join(CACHE, "run_paper"),
                                       get_recipe("paper", epochs=30, patience=30), "pretrain")
        result["paper_recipe_30_epochs"] = {
            "test_scatter": {n: round(float(v), 4) for n, v in zip(TARGET_NAMES, paper)},
            "seconds": pinfo["seconds"]}
    report("accuracy", result, args.tag, recipe=recipe)


if __name__ == "__main__":
    main()
