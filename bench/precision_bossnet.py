"""``infer --precision`` for APOGEE Net III and BOSS Net: what ``auto`` decides for them, and
the speed and the shift of their bfloat16 twins against float32.

The run folders are those of ``bench/published_bossnet.py`` (the goldens' stand-in weights,
seeded, in the authors' chunk layout, imported with ``import-torch --arch``). Spectra: the 26
real apStar files of ``../shared/data`` (APOGEE Net III) and a synthetic BOSS survey of
``--boss-stars`` spec files (``synth --instrument boss``; BOSS Net), read under astra's
convention, in one process:

* throughput: plain predictions on ``--stars`` spectra per call (the files tiled), float32 (the
  reference) and the bfloat16 twin (``KerasRuntime.in_precision``: same weights, the
  convolutions and Linear layers in bfloat16, the log scaling, the last Linear and the labels in
  float32) alternating ``--rounds`` times, each keeping its best rate;
* the shift: per label, the median and the largest |bfloat16 - float32| over the files, in
  percent of the label's spread (``precision.label_spread``: the network's own de-standardising
  std, linearised for log10 Teff) and in the label's units;
* ``auto``: ``inference.predict.job_precision`` on the job's plan of the same files, the line
  ``infer --precision auto`` prints;
* reading: the CPU time per file of ``read_unit`` on the same files (one process, one core,
  the page cache warm), for ``bench/projection.py``'s rows.

    python bench/precision_bossnet.py [--arch anet3 bossnet] [--stars 16] [--boss-stars 64]
        [--seconds 12] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _common import CACHE, add_tag, best_rates, machine, rate, report  # noqa: E402
from precision import shift_figures  # noqa: E402
from published_bossnet import DATA, imported_run  # noqa: E402

LABELS = {"anet3": ("teff", "logg", "fe_h"), "bossnet": ("teff", "logg", "fe_h", "rv")}


def spectra(arch: str, boss_stars: int) -> list[str]:
    """The files a job of ``arch`` reads here: real apStar files, or a synthetic BOSS survey."""
    if arch == "anet3":
        return sorted(str(p) for p in DATA.rglob("apStar*.fits"))
    from apnet_tf.data.synth_boss import make_boss_survey

    folder = Path(CACHE) / f"boss_survey{boss_stars}"
    if not (folder / "labels.csv").exists():
        make_boss_survey(str(folder), boss_stars, seed=0, overwrite=True)
    return sorted(str(p) for p in folder.glob("*.fits"))


def measure(arch: str, stars: int, boss_stars: int, seconds: float, rounds: int) -> dict:
    from apnet_tf.data.planning import plan_units
    from apnet_tf.data.readers import read_unit
    from apnet_tf.inference.predict import job_precision
    from apnet_tf.model.loading import load_model
    from apnet_tf.model.network_inputs import network_inputs
    from apnet_tf.model.precision import label_spread

    run, _, _ = imported_run(arch)
    f32 = load_model(str(run))
    paths = spectra(arch, boss_stars)
    plan = plan_units(paths, 256, instrument="boss" if arch == "bossnet" else "apogee")
    batch, failures = read_unit(plan.units[0])
    assert not failures, failures
    cpu = time.process_time()
    for _ in range(3):
        read_unit(plan.units[0])
    read_ms = (time.process_time() - cpu) / 3 / len(paths) * 1e3
    flux = network_inputs(f32.conventions, batch).flux
    _, auto_line = job_precision(f32, plan, "auto")
    bf16 = f32.in_precision("mixed_bfloat16")
    spread = label_spread(f32.normalization, f32.model)
    figures = {"arch": arch, "files": len(paths), "spread": spread.tolist(),
               "shift": shift_figures(f32.predict(flux), bf16.predict(flux), spread,
                                      LABELS[arch], count="spectra"),
               "auto": auto_line, "stars_per_call": stars,
               "read_cpu_ms_per_file": round(read_ms, 3)}
    tiled = flux[np.arange(stars) % len(flux)]
    best = best_rates({"float32": (lambda: f32.predict(tiled), stars),
                       "mixed_bfloat16": (lambda: bf16.predict(tiled), stars)},
                      rounds, seconds, timer=partial(rate, calls=1))
    figures.update({"float32_spectra_per_s": round(best["float32"], 2),
                    "bfloat16_spectra_per_s": round(best["mixed_bfloat16"], 2),
                    "bfloat16_over_float32": round(best["mixed_bfloat16"] / best["float32"], 3)})
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=["anet3", "bossnet"],
                    choices=["anet3", "bossnet"])
    ap.add_argument("--stars", type=int, default=16, help="spectra per timed call")
    ap.add_argument("--boss-stars", type=int, default=64, help="synthetic BOSS spec files")
    ap.add_argument("--seconds", type=float, default=12.0, help="per precision, all rounds")
    ap.add_argument("--rounds", type=int, default=2)
    add_tag(ap)
    args = ap.parse_args()
    from apnet_tf.model.precision import bfloat16_is_native

    figures = {"machine": machine(), "bfloat16_native": bfloat16_is_native()}
    for arch in args.arch:
        figures[arch] = measure(arch, args.stars, args.boss_stars, args.seconds, args.rounds)
    report("precision_bossnet", figures, args.tag)


if __name__ == "__main__":
    main()
