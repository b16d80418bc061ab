"""Run ``apnet_tf.workflows.fit`` once with the default recipe and time its stages.

``bench/time_to_accuracy.py`` runs this file in a process of its own, with ``PYTHONPATH`` set to
the source tree being measured (today's checkout, or an earlier commit's ``apnet_tf``), so both
sides of its comparison run the same driver. The stages are timed by wrapping the functions that
``fit`` calls by module attribute: ``training.fitting.pretrain`` and ``finetune``,
``workflows.write_run_report`` (Tables 2 and 3) and ``workflows.calibrate_fitted_run``.

    PYTHONPATH=SRC python bench/_fit_stages.py RECORDS RUN_DIR OUT.json [--set field=value ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import parse_overrides  # noqa: E402

#: (module, function name, stage name) of what ``workflows.fit`` runs.
STAGES = (("apnet_tf.training.fitting", "pretrain", "pretrain"),
          ("apnet_tf.training.fitting", "finetune", "finetune"),
          ("apnet_tf.workflows", "write_run_report", "tables"),
          ("apnet_tf.workflows", "calibrate_fitted_run", "calibration"))


def time_stages(seconds: dict) -> None:
    """Wrap each function of STAGES so that its wall time adds to ``seconds[stage]``."""
    import importlib

    for module_name, name, stage in STAGES:
        module = importlib.import_module(module_name)
        fn = getattr(module, name)

        def wrapper(*args, _fn=fn, _stage=stage, **kwargs):
            t = time.perf_counter()
            try:
                return _fn(*args, **kwargs)
            finally:
                seconds[_stage] = seconds.get(_stage, 0.0) + time.perf_counter() - t

        setattr(module, name, wrapper)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records")
    ap.add_argument("run_dir")
    ap.add_argument("out")
    ap.add_argument("--set", nargs="*", default=[], help="recipe overrides, field=value")
    args = ap.parse_args()

    import apnet_tf
    from apnet_tf import workflows
    from apnet_tf.training.recipes import Recipe, get_recipe

    seconds: dict = {}
    time_stages(seconds)
    recipe = get_recipe("default", **parse_overrides(Recipe(), args.set))
    t = time.perf_counter()
    res = workflows.fit(args.records, args.run_dir, recipe=recipe, overwrite=True)
    seconds["total"] = time.perf_counter() - t
    table3 = {f"{g} {target}": round(float(v), 5)
              for (g, target), v in res.table3["test"].items()}
    out = {"source": os.path.dirname(os.path.dirname(os.path.abspath(apnet_tf.__file__))),
           "seconds": {k: round(v, 1) for k, v in seconds.items()},
           "epochs": res.epochs, "rounds": len(res.rounds),
           "recipe": dataclasses.asdict(res.recipe), "table3_test": table3,
           "coverage_dev_calibrated": [round(float(c), 3) for c in
                                       res.calibration.coverage_dev_calibrated],
           # the coverage of dev stars the calibration was not fitted on (the one above is
           # 0.683 by construction)
           "coverage_dev_held_out": [None if c is None else round(float(c), 3) for c in
                                     res.calibration.coverage_dev_held_out]}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
