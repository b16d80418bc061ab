"""Time to a trained, calibrated model: ``fit`` with today's defaults against the defaults of an
earlier commit and against The Cannon, on one fresh synthetic survey, in one run.

On an n-star survey (default 6,000 stars, seed 23: one that no test uses; cached under .bench/),
it runs ``apnet_tf.workflows.fit`` (what ``apnet-tf fit`` runs) with the default recipe of this
checkout and of ``--baseline`` (an earlier commit's ``apnet_tf``, exported with ``git archive``),
each in a process of its own (``bench/_fit_stages.py``), and reports the wall time of each stage
(pretraining, fine-tuning rounds, Tables 2 and 3, the sigma calibration) and Table 3 on the test
split. In the same run it fits two references on the same train split and scores them on the same
test split: The Cannon (``bench/_cannon.py``) and the ridge regression of ``bench/accuracy.py``.

Targets (issue 23): ``fit`` at most 1/3 of the baseline's wall time and at most 5x The Cannon's,
Table 3 (test, all stars) within 5% of the baseline's in each parameter, and the calibration at
most 10% of ``fit``'s wall time.

    python bench/time_to_accuracy.py [--n 6000] [--seed 23] [--baseline COMMIT]
        [--set field=value ...] [--skip-baseline] [--skip-references] [--tag NAME]

A variant (``--skip-baseline --skip-references --set field=value ... --tag NAME``) times ``fit``
with other recipe fields on the same survey; BENCHMARKS.md lists the variants beside the defaults
("How the training defaults were chosen").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _cannon import fit_cannon  # noqa: E402
from _common import CACHE, add_tag, report, survey_records, table3_cell  # noqa: E402
from _ridge import fit_ridge, log_flux_features  # noqa: E402

#: The commit whose defaults issue 23 measured (``fit`` 820 s on 6,000 stars).
BASELINE = "71d1a3a"
TARGET_NAMES = ("teff (K)", "logg (dex)", "fe_h (dex)")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def baseline_source(commit: str) -> str:
    """A folder holding ``commit``'s ``apnet_tf`` (``git archive``), made once under .bench/."""
    src = os.path.join(CACHE, f"src-{commit}")
    if not os.path.isdir(os.path.join(src, "apnet_tf")):
        os.makedirs(src, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit, "apnet_tf"], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
    return src


def run_fit(source: str, records: str, name: str, overrides: list[str]) -> dict:
    """``_fit_stages.py`` with ``source`` first on PYTHONPATH; its JSON output."""
    run_dir, out = os.path.join(CACHE, f"tta_{name}"), os.path.join(CACHE, f"tta_{name}.json")
    env = dict(os.environ, PYTHONPATH=source)
    subprocess.run([sys.executable, os.path.join(HERE, "_fit_stages.py"), records, run_dir, out,
                    "--set", *overrides], env=env, check=True)
    with open(out) as f:
        return json.load(f)


def load_split(records: str, split: str) -> tuple[dict, np.ndarray]:
    """({"flux", "err", "bad"} arrays (N, 8575), labels (N, 3)) of a split's labelled stars."""
    from apnet_tf.data.dataset import make_dataset

    parts, ys = {"flux": [], "err": [], "bad": []}, []
    for x, y in make_dataset(records, splits=[split], batch_size=512, labeled_only=True,
                             features=tuple(parts)):
        for k in parts:
            parts[k].append(x[k].numpy())
        ys.append(y.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}, np.concatenate(ys)


def references(records: str) -> dict:
    """Wall time (reading the spectra included) and test scatter of The Cannon and ridge."""
    from apnet_tf.evaluation.tables import scatter

    out = {}
    t = time.perf_counter()
    (xt, yt), (xs, ys) = load_split(records, "train"), load_split(records, "test")
    read = time.perf_counter() - t
    full = np.isfinite(yt).all(axis=1)  # The Cannon needs every label of a training star
    t = time.perf_counter()
    predict = fit_cannon({k: v[full] for k, v in xt.items()}, yt[full])
    pred = predict(xs)
    out["cannon"] = {"seconds": round(read + time.perf_counter() - t, 1),
                     "test_scatter": [round(float(v), 4) for v in scatter(pred, ys)]}
    t = time.perf_counter()
    xd, yd = load_split(records, "dev")
    predict = fit_ridge(log_flux_features(xt["flux"]), yt, log_flux_features(xd["flux"]), yd)
    pred = predict(log_flux_features(xs["flux"]))
    out["ridge"] = {"seconds": round(read + time.perf_counter() - t, 1),
                    "test_scatter": [round(float(v), 4) for v in scatter(pred, ys)]}
    return out


def full_scatter(run: dict) -> np.ndarray:
    return np.array([table3_cell(run["table3_test"], "all", t) for t in TARGET_NAMES])


def judge(current: dict, baseline: dict | None, refs: dict | None) -> dict:
    """The ratios issue 23 sets targets for."""
    total = current["seconds"]["total"]
    out = {"calibration_share": round(current["seconds"]["calibration"] / total, 3)}
    out["accept"] = {"calibration_share <= 0.10": out["calibration_share"] <= 0.10}
    if refs:
        out["fit_over_cannon"] = round(total / refs["cannon"]["seconds"], 2)
        out["accept"]["fit_over_cannon <= 5"] = out["fit_over_cannon"] <= 5
    if baseline:
        out["fit_over_baseline"] = round(total / baseline["seconds"]["total"], 3)
        out["table3_over_baseline"] = [round(float(r), 3) for r in
                                       full_scatter(current) / full_scatter(baseline)]
    if baseline:
        out["accept"]["fit_over_baseline <= 1/3"] = out["fit_over_baseline"] <= 1 / 3
        out["accept"]["table3 within 5%"] = max(out["table3_over_baseline"]) <= 1.05
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("--baseline", default=BASELINE, help="the commit whose defaults to measure")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--skip-references", action="store_true",
                    help="leave out The Cannon and ridge (a variant's run)")
    ap.add_argument("--set", nargs="*", default=[], help="recipe overrides for this checkout")
    add_tag(ap)
    args = ap.parse_args()

    _, records = survey_records(args.n, args.seed)
    name = f"{args.n}_s{args.seed}" + (f"_{args.tag}" if args.tag else "")
    current = run_fit(ROOT, records, f"current_{name}", args.set)
    baseline = None
    if not args.skip_baseline:
        baseline = run_fit(baseline_source(args.baseline), records,
                           f"baseline_{args.n}_s{args.seed}", [])
        baseline["commit"] = args.baseline
    refs = None if args.skip_references else references(records)
    figures = {"n_stars": args.n, "survey_seed": args.seed, "overrides": args.set,
               "current": current, "baseline": baseline, "references": refs,
               "judged": judge(current, baseline, refs)}
    report("time_to_accuracy", figures, args.tag, recipe=current["recipe"])


if __name__ == "__main__":
    main()
