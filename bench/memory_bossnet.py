"""Peak resident memory of ``infer --mc 20`` (astra's Monte Carlo) with APOGEE Net III, run as a
user runs it, in its own process, against ``infer --mc 0`` on the same files.

The run folder is that of ``bench/published_bossnet.py`` (the goldens' stand-in weights, seeded,
in the authors' chunk layout, imported with ``import-torch --arch anet3``; memory does not
depend on the weights' values). The spectra: the 26 real apStar files of ``../shared/data``
(24 DR13, 2 DR17) copied, in turn, into ``--stars`` distinct files (one folder each, so that
``infer`` reads each as its own file). Each figure is the peak RSS (``ru_maxrss``) of the
command's whole process, measured by a parent that runs only it (``bench/memory.py``'s
``PEAK``), and its wall time. ``--rows-per-chunk N`` runs the Monte Carlo with the package's
``BOSSNET_MC_ROWS_PER_CHUNK`` (rows of stars x draws per network call) set to N in that process, to
measure what a smaller chunk would do (a variant: ``--tag`` it).

    python bench/memory_bossnet.py [--stars 256] [--mc 20] [--rows-per-chunk N --tag NAME]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import CACHE, add_tag, machine, report  # noqa: E402
from memory import PEAK  # noqa: E402
from published_bossnet import DATA, imported_run  # noqa: E402

#: The peak RSS that ``infer --mc 20`` on 256 stars must stay under (issue's target), GB.
TARGET_GB = 4.0
#: ``python -m apnet_tf.cli`` with the Monte Carlo's rows per network call (the package's
#: constant BOSSNET_MC_ROWS_PER_CHUNK) set to its first argument, before the package reads it.
CLI_WITH_CHUNK = ("import runpy, sys; import apnet_tf.constants as c; "
                  "c.BOSSNET_MC_ROWS_PER_CHUNK = int(sys.argv.pop(1)); "
                  "runpy.run_module('apnet_tf.cli', run_name='__main__')")


def copies(stars: int) -> Path:
    """A folder of ``stars`` apStar files: the real ones of ../shared/data, copied in turn."""
    real = sorted(DATA.rglob("apStar*.fits"))
    folder = Path(CACHE) / f"memory_anet3_files{stars}"
    if len(list(folder.rglob("apStar*.fits"))) != stars:
        shutil.rmtree(folder, ignore_errors=True)
        for k in range(stars):
            src = real[k % len(real)]
            (folder / f"{k:04d}").mkdir(parents=True)
            shutil.copyfile(src, folder / f"{k:04d}" / src.name)
    return folder


def timed_peak(args, rows_per_chunk: int | None = None) -> tuple[float, float]:
    """(peak RSS in GB, wall seconds) of ``apnet-tf *args`` in a fresh process, with the
    package's Monte Carlo chunk where ``rows_per_chunk`` is given; raises if it fails."""
    import subprocess

    cli = (["-m", "apnet_tf.cli"] if rows_per_chunk is None
           else ["-c", CLI_WITH_CHUNK, str(rows_per_chunk)])
    cmd = [sys.executable, "-c", PEAK, sys.executable, *cli, *map(str, args)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    line = [x for x in res.stdout.splitlines() if x.startswith("PEAK")][-1].split()
    if line[2] != "0":
        raise RuntimeError(f"apnet-tf {' '.join(map(str, args))} failed:\n{res.stderr[-2000:]}")
    return int(line[1]) / 1e9, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stars", type=int, default=256)
    ap.add_argument("--mc", type=int, default=20, help="Monte Carlo draws (astra's: 20)")
    ap.add_argument("--rows-per-chunk", type=int, default=None,
                    help="the Monte Carlo's rows per network call (BOSSNET_MC_ROWS_PER_CHUNK) "
                    "for the Monte Carlo run; default: the package's")
    add_tag(ap)
    args = ap.parse_args()

    from apnet_tf.constants import BOSSNET_MC_ROWS_PER_CHUNK

    run, _, _ = imported_run("anet3")
    spectra = copies(args.stars) / "*" / "apStar*.fits"  # infer expands the glob
    out = Path(CACHE) / "memory_anet3_out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    job = ["infer", "--model", run, "--spectra", spectra]
    plain, plain_s = timed_peak([*job, "--mc", 0, "--out", out / "plain.csv"])
    mc, mc_s = timed_peak([*job, "--mc", args.mc, "--out", out / "mc.csv"], args.rows_per_chunk)
    from astropy.table import Table

    rows = len(Table.read(out / "mc.csv", format="ascii.ecsv"))
    report("memory_bossnet", {
        "machine": machine(), "arch": "anet3", "stars": args.stars, "mc": args.mc,
        "catalog_rows_mc": rows, "real_files": len(list(DATA.rglob("apStar*.fits"))),
        "infer_plain_gb": round(plain, 2), "infer_plain_s": round(plain_s, 1),
        "infer_mc_gb": round(mc, 2), "infer_mc_s": round(mc_s, 1),
        "mc_over_plain": round(mc / plain, 2), "target_gb": TARGET_GB,
        "rows_per_chunk": args.rows_per_chunk or BOSSNET_MC_ROWS_PER_CHUNK,
        "rows_per_chunk_is_the_packages": args.rows_per_chunk is None}, args.tag)


if __name__ == "__main__":
    main()
