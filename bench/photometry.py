"""Does photometry help? ``fit --arch anet2`` (flux, Gaia EDR3 and 2MASS photometry and parallax)
against the spectrum-only network (``--arch apnet``) on the same synthetic survey.

On an n-star synthetic survey (``synth --seed 0``, cached under .bench/, with its photometry.csv;
records made with ``make-records --photometry``), it runs ``fit`` with the default recipe twice on
the same records, the spectrum-only network first (the reference), and reports both runs' Table 3
(scatter of prediction - label, each group) on the test split, the ratio anet2 / apnet, and each
``fit``'s time (training, tables and the sigma calibration).

    python bench/photometry.py [--n 3000] [--set field=value ...] [--tag NAME]
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
    add_tag,
    machine,
    parse_overrides,
    report,
    scatter_ratio,
    survey_records,
    table3_split,
)

ARCHS = ("apnet", "anet2")


def run_fit(records: str, run_dir: str, recipe, arch: str) -> dict:
    """``fit`` (workflows: training, Tables 2 and 3, calibration) of one arch: its test-split
    Table 3 by "group target" and "group target bias", the time, epochs and rounds."""
    from apnet_tf.workflows import fit

    t = time.perf_counter()
    res = fit(records, run_dir, stage="all", recipe=recipe, overwrite=True, arch=arch)
    secs = time.perf_counter() - t
    return {"table3_test": table3_split(res.table3, "test"), "seconds": round(secs, 1),
            "epochs": res.epochs, "rounds": len(res.rounds)}


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
    _, records = survey_records(args.n, args.seed, photometry=True)
    recipe = get_recipe("default", **overrides)
    suffix = f"{args.n}_s{args.seed}" + (f"_{args.tag}" if args.tag else "")
    runs = {arch: run_fit(records, os.path.join(CACHE, f"run_phot_{arch}_{suffix}"), recipe, arch)
            for arch in ARCHS}
    result = {"machine": machine(), "n_stars": args.n, "survey_seed": args.seed,
              "recipe_overrides": overrides,
              "photometry": read_manifest(records)["photometry"],
              "scatter_ratio_anet2_over_apnet": scatter_ratio(runs["apnet"]["table3_test"],
                                                              runs["anet2"]["table3_test"]),
              "fit_seconds_ratio_anet2_over_apnet": round(
                  runs["anet2"]["seconds"] / runs["apnet"]["seconds"], 2),
              "runs": runs}
    report("photometry", result, args.tag, recipe=recipe)


if __name__ == "__main__":
    main()
