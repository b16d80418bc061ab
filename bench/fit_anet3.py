"""APOGEE Net III's layout trained here: ``fit --arch anet3`` against the Appendix B network
(``--arch apnet``) on the same synthetic survey, Table 3 of each.

On an n-star synthetic survey (``synth --seed 0``, cached under .bench/), it trains both networks
on the same records with the same recipe (default, with any ``--set`` overrides; anet3 runs it
without dropout and with its own log scaling of the flux, as ``fit --arch anet3`` does), the
Appendix B network first (the reference): pretraining and the rolling Payne fine-tuning, then
the paper's Table 3 (scatter, bias and rms of prediction - label per group and split), what
``fit`` prints. The sigma calibration that ``fit`` ends with is not run: it does not change
Table 3. Reports both runs' Table 3 on the test split, the ratio anet3 / apnet, each network's
parameters and training time (training and tables).

    python bench/fit_anet3.py [--n 3000] [--set field=value ...] [--tag NAME]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import (  # noqa: E402
    CACHE,
    SPLITS,
    add_tag,
    machine,
    parse_overrides,
    report,
    scatter_ratio,
    survey_records,
    table3_split,
)

ARCHS = ("apnet", "anet3")


def run_fit(records: str, run_dir: str, recipe, arch: str) -> dict:
    """Training (``training.fitting.fit``) and Tables 2 and 3 (``workflows.write_run_report``)
    of one arch: its Table 3 by split, "group target" and "group target bias", the time,
    epochs, rounds and parameters."""
    from apnet_tf.training.fitting import fit
    from apnet_tf.workflows import write_run_report

    t = time.perf_counter()
    res = fit(records, run_dir, stage="all", recipe=recipe, overwrite=True, arch=arch)
    _, table3 = write_run_report(res.model, records, run_dir, res.std)
    secs = time.perf_counter() - t
    return {"table3": {split: table3_split(table3, split) for split in SPLITS},
            "seconds": round(secs, 1), "epochs": res.epochs, "rounds": len(res.rounds),
            "parameters": int(res.model.count_params())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0, help="the survey's seed")
    ap.add_argument("--set", nargs="*", default=[], help="recipe overrides, field=value")
    add_tag(ap)
    args = ap.parse_args()

    from apnet_tf.data.manifest import read_manifest
    from apnet_tf.training.recipes import Recipe, get_recipe

    overrides = parse_overrides(Recipe(), args.set)
    _, records = survey_records(args.n, args.seed)
    recipe = get_recipe("default", **overrides)
    suffix = f"{args.n}_s{args.seed}" + (f"_{args.tag}" if args.tag else "")
    runs = {arch: run_fit(records, os.path.join(CACHE, f"run_fit_{arch}_{suffix}"), recipe, arch)
            for arch in ARCHS}
    result = {"machine": machine(), "n_stars": args.n, "survey_seed": args.seed,
              "split_stars": read_manifest(records).get("counts"),
              "recipe_overrides": overrides,
              "scatter_ratio_anet3_over_apnet": scatter_ratio(runs["apnet"]["table3"]["test"],
                                                              runs["anet3"]["table3"]["test"]),
              "seconds_ratio_anet3_over_apnet": round(
                  runs["anet3"]["seconds"] / runs["apnet"]["seconds"], 2),
              "runs": runs}
    report("fit_anet3", result, args.tag, recipe=recipe)


if __name__ == "__main__":
    main()
