"""Peak resident memory of the Monte Carlo commands, each run as a user runs it, in its own process.

* ``infer --model <SavedModel> --mc 100`` over 256 apStar files (one default batch), against
  ``infer --mc 0`` (plain predictions) on the same files as the reference;
* ``calibrate`` (mc = 100 on the dev split) and ``evaluate`` (mc = 100, all splits) on a 1,500-star
  synthetic survey.

The model is an untrained APOGEE Net (memory does not depend on the weights), exported with
``apnet-tf export``. Each figure is the peak RSS (ru_maxrss) of the command's process.

    python bench/memory.py [--n 1500] [--stars 256]
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import CACHE, add_tag, machine, report, survey_records  # noqa: E402

#: A child that runs one CLI command and prints its own peak RSS in bytes.
PEAK = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
        "print('PEAK', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, rc)")


def peak_rss(*args: str) -> float:
    """Peak RSS in GB of ``apnet-tf *args`` run in a fresh process; raises if it fails."""
    cmd = [sys.executable, "-c", PEAK, sys.executable, "-m", "apnet_tf.cli", *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    line = [x for x in res.stdout.splitlines() if x.startswith("PEAK")][-1].split()
    if line[2] != "0":
        raise RuntimeError(f"apnet-tf {' '.join(map(str, args))} failed:\n{res.stderr[-2000:]}")
    return int(line[1]) / 1e9


def untrained_run(path: str) -> str:
    from apnet_tf.io.files import write_json
    from apnet_tf.model.network import build_model

    if not os.path.exists(os.path.join(path, "best.keras")):
        os.makedirs(path, exist_ok=True)
        build_model([4700.0, 2.9, -0.2], [730.0, 1.2, 0.3]).save(os.path.join(path, "best.keras"))
        write_json(os.path.join(path, "normalization.json"),
                   {"targets": ["teff", "logg", "fe_h"], "mean": [4700.0, 2.9, -0.2],
                    "std": [730.0, 1.2, 0.3]})
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--stars", type=int, default=256)
    add_tag(ap)
    args = ap.parse_args()

    spectra, records = survey_records(args.n)
    run = untrained_run(os.path.join(CACHE, "memory_run"))
    exported = os.path.join(CACHE, "memory_export", "apogee_net")
    if not os.path.exists(os.path.join(exported, "1", "saved_model.pb")):
        subprocess.run([sys.executable, "-m", "apnet_tf.cli", "export", "--model", run, "--out",
                        exported, "--tflite", ""], check=True, capture_output=True)
    files = sorted(glob.glob(os.path.join(spectra, "*.fits")))[:args.stars]
    out = os.path.join(CACHE, "memory_out")
    os.makedirs(out, exist_ok=True)
    model = os.path.join(exported, "1")
    result = {"machine": machine(), "stars_infer": len(files), "survey_stars": args.n}
    plain = peak_rss("infer", "--model", model, "--mc", 0, "--out", f"{out}/plain.csv",
                     "--spectra", *files)
    mc = peak_rss("infer", "--model", model, "--mc", 100, "--out", f"{out}/mc.csv",
                  "--spectra", *files)
    result["infer_saved_model_plain_gb"] = round(plain, 2)
    result["infer_saved_model_mc100_gb"] = round(mc, 2)
    result["mc100_over_plain"] = round(mc / plain, 2)
    result["calibrate_mc100_gb"] = round(peak_rss("calibrate", "--model", run, "--records",
                                                  records, "--mc", 100), 2)
    result["evaluate_mc100_gb"] = round(peak_rss("evaluate", "--model", run, "--records", records,
                                                 "--out", f"{out}/eval", "--mc", 100), 2)
    result["accept_under_3gb"] = all(v < 3.0 for k, v in result.items() if k.endswith("_gb"))
    report("memory", result, args.tag)


if __name__ == "__main__":
    main()
