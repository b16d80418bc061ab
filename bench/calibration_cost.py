"""What the sigma calibration costs as the survey grows: ``calibrate`` with its defaults on a
6,000-star survey and on the same survey repeated ten times (60,000 stars).

The 6,000-star survey is ``bench/time_to_accuracy.py``'s (``records6000_s23``, made if missing).
The 60,000-star one lists its train and dev shards ten times over in one manifest (links to the
same files, so the stars repeat and the files are in the page cache as often as at 6,000; the
subset reads whole shards, so what it reads is what a survey of new stars would make it read).
The model is the ``bench/accuracy.py`` default run (``--run``; its weights do not change the
cost), copied, so that its own calibration.json stays. Each size is timed ``--repeat`` times,
alternating, from the call to the written calibration.json (shard checksums forgotten before
each call, as a fresh ``apnet-tf calibrate`` starts; TensorFlow already imported, as in ``fit``),
and the best time kept. ``--all-stars`` also times the calibration as it was before the subset
(every train and dev star, mc = 100) on the 6,000-star survey, once.

    python bench/calibration_cost.py [--run .bench/run_default] [--repeat 2] [--all-stars]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import CACHE, add_tag, machine, report, run_recipe, survey_records  # noqa: E402

#: The survey of bench/time_to_accuracy.py, and how many times the large one repeats it.
SURVEY_STARS, SURVEY_SEED, TIMES = 6000, 23, 10


def repeated_records(records: str, out: str, times: int) -> str:
    """A record folder at ``out`` whose train and dev splits are those of ``records`` ``times``
    over (links to the same shard files), its test split that of ``records``."""
    from apnet_tf.data.manifest import MANIFEST, read_manifest

    manifest = read_manifest(records)
    if os.path.exists(os.path.join(out, MANIFEST)):
        return out
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    for split, names in manifest["shards"].items():
        k = times if split in ("train", "dev") else 1
        new = [f"{split}-{i:05d}-of-{k * len(names):05d}.tfrecord" for i in range(k * len(names))]
        for name, src in zip(new, names * k):
            os.symlink(os.path.abspath(os.path.join(records, src)), os.path.join(out, name))
            for key in ("shard_bytes", "shard_sha256"):
                manifest[key][name] = manifest[key][src]
        manifest["shards"][split] = new
        manifest["counts"][split] = {c: n * k for c, n in manifest["counts"][split].items()}
    with open(os.path.join(out, MANIFEST), "w") as f:
        json.dump(manifest, f)
    return out


def timed_calibrate(run: str, records: str, **kwargs) -> tuple[float, object]:
    """(seconds, Calibration) of one ``calibrate`` call, shard checksums forgotten first."""
    from apnet_tf.calibration.fit import calibrate
    from apnet_tf.data import manifest

    manifest._CHECKED.clear()
    t = time.perf_counter()
    cal = calibrate(run, records, **kwargs)
    return time.perf_counter() - t, cal


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=os.path.join(CACHE, "run_default"))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--all-stars", action="store_true",
                    help="also time the calibration over every star at mc = 100 (6,000 stars)")
    add_tag(ap)
    args = ap.parse_args()

    from apnet_tf.constants import CALIBRATION_MC_DRAWS, CALIBRATION_STARS_PER_STRATUM
    from apnet_tf.data.manifest import count_records

    run = os.path.join(CACHE, "calibration_cost_run")
    if not os.path.exists(os.path.join(run, "best.keras")):
        shutil.copytree(args.run, run, ignore=shutil.ignore_patterns(
            "pretrained.keras", "bench_*.npz", "calibration.json", "*.png"))
    _, base = survey_records(SURVEY_STARS, seed=SURVEY_SEED)
    sizes = {"6k": base, "60k": repeated_records(base, os.path.join(
        CACHE, f"records{SURVEY_STARS}_s{SURVEY_SEED}_x{TIMES}"), TIMES)}
    timed_calibrate(run, base)  # warm: TensorFlow and the files, as in fit
    seconds: dict[str, list[float]] = {k: [] for k in sizes}
    cals = {}
    for _ in range(args.repeat):
        for name, records in sizes.items():
            dt, cals[name] = timed_calibrate(run, records)
            seconds[name].append(round(dt, 2))
    out = {"machine": machine(), "mc": CALIBRATION_MC_DRAWS,
           "stars_per_stratum": CALIBRATION_STARS_PER_STRATUM, "model": args.run}
    for name, records in sizes.items():
        sub = cals[name].subset
        out[name] = {"train_stars_in_split": count_records(records, ["train"]),
                     "dev_stars_in_split": count_records(records, ["dev"]),
                     "train_stars_read": sub["train_stars_read"],
                     "dev_stars_read": sub["dev_stars_read"],
                     "monte_carlo_stars": sub["train_stars"] + sub["dev_stars"],
                     "seconds": seconds[name], "best_seconds": min(seconds[name])}
    out["ratio_60k_over_6k"] = round(out["60k"]["best_seconds"] / out["6k"]["best_seconds"], 3)
    if args.all_stars:
        dt, cal = timed_calibrate(run, base, mc=100, per_stratum=0)
        out["all_stars_r100_6k"] = {"seconds": round(dt, 2), "monte_carlo_stars":
                                    cal.subset["train_stars"] + cal.subset["dev_stars"]}
        out["subset_over_all_stars_6k"] = round(out["6k"]["best_seconds"] / dt, 3)
    report("calibration_cost", out, args.tag, recipe=run_recipe(args.run))


if __name__ == "__main__":
    main()
