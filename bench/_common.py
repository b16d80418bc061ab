"""Helpers shared by the benchmark scripts: a cached synthetic survey and timing."""

from __future__ import annotations

import os
import platform
import time

CACHE = os.environ.get("APNET_BENCH_CACHE", os.path.join(os.path.dirname(__file__), "..",
                                                         ".bench"))


def survey_records(n: int, seed: int = 0) -> tuple[str, str]:
    """(spectra_dir, records_dir) of an n-star synthetic survey, made once and cached."""
    from apnet_tf.data.records import make_records
    from apnet_tf.data.synth import make_survey

    spectra = os.path.join(CACHE, f"survey{n}_s{seed}")
    records = os.path.join(CACHE, f"records{n}_s{seed}")
    if not os.path.exists(os.path.join(spectra, "labels.csv")):
        make_survey(spectra, n, seed)
    if not os.path.exists(os.path.join(records, "manifest.json")):
        make_records([spectra], records, labels=os.path.join(spectra, "labels.csv"))
    return spectra, records


def timed(fn, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
