"""The cost of ``fit --deterministic``: epoch time with TensorFlow's op determinism against without.

Each mode trains in a process of its own (op determinism is process-wide and permanent):
``fit --stage pretrain`` with the default recipe for ``--epochs`` epochs on a synthetic survey
(cached under .bench/). The first epoch (graph tracing) is not counted; each later epoch is timed
from the end of the one before. The two modes alternate ``--repeat`` times and each keeps its
best mean epoch time. The ratio is deterministic / plain.

    python bench/determinism.py [--n 600] [--epochs 3] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import add_tag, report, survey_records  # noqa: E402

CHILD = """
import json, sys, time
from apnet_tf.training.fitting import fit
from apnet_tf.training.recipes import get_recipe
records, run, epochs, det = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
stamps = []
fit(records, run, stage="pretrain", recipe=get_recipe("default", epochs=epochs,
    patience=epochs, deterministic=det),
    on_epoch=lambda stage, epoch, logs: stamps.append(time.perf_counter()))
later = [b - a for a, b in zip(stamps, stamps[1:])]
print(json.dumps({"epoch_s": sum(later) / len(later)}))
"""


def epoch_time(records: str, epochs: int, deterministic: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-c", CHILD, records, os.path.join(tmp, "run"),
                               str(epochs), "1" if deterministic else "0"],
                              capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])["epoch_s"]


def default_recipe():
    """The recipe each child trains with, but for its epochs and patience (``--epochs``)."""
    from apnet_tf.training.recipes import RECIPES

    return RECIPES["default"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    add_tag(parser)
    args = parser.parse_args()
    _, records = survey_records(args.n)
    best = {False: float("inf"), True: float("inf")}
    for _ in range(args.repeat):
        for det in (False, True):
            best[det] = min(best[det], epoch_time(records, args.epochs, det))
    report("determinism", {"stars": args.n, "epochs": args.epochs,
                           "epoch_s_plain": round(best[False], 2),
                           "epoch_s_deterministic": round(best[True], 2),
                           "ratio": round(best[True] / best[False], 3)}, args.tag,
           recipe=default_recipe())


if __name__ == "__main__":
    main()
