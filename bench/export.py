"""Exported-model speed: single-spectrum latency and batch-256 throughput of each TFLite variant
(LiteRT interpreter) and of the SavedModel ``serving_default`` signature.

A freshly initialised APOGEE Net is exported (speed does not depend on the weights' values).

    python bench/export.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from _common import machine  # noqa: E402
from infer import rate, spectra  # noqa: E402


def latency_ms(fn, seconds: float) -> float:
    """Median single-call latency in milliseconds."""
    fn()
    fn()
    times, t0 = [], time.perf_counter()
    while time.perf_counter() - t0 < seconds or len(times) < 20:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()

    import tensorflow as tf

    from apnet_tf.export import export_model
    from apnet_tf.inference import load_model
    from apnet_tf.model import build_model
    from apnet_tf.training import save_model_atomic

    flux, _, _ = spectra(256)
    one = flux[:1]
    results = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        save_model_atomic(build_model([4700, 2.9, -0.2], [730, 1.2, 0.3]),
                          os.path.join(tmp, "m.keras"))
        out = os.path.join(tmp, "apogee_net")
        meta = export_model(os.path.join(tmp, "m.keras"), out,
                            tflite=["float32", "float16", "int8"])
        sm = tf.saved_model.load(os.path.join(out, "1")).signatures["serving_default"]
        t_one, t_batch = tf.constant(one), tf.constant(flux)
        results["saved_model"] = {
            "latency_ms": round(latency_ms(lambda: sm(flux=t_one), args.seconds), 3),
            "batch256_spectra_per_s": round(rate(lambda: sm(flux=t_batch), 256, args.seconds), 1)}
        for variant, info in meta["tflite"].items():
            m = load_model(os.path.join(out, info["file"]))
            results[f"tflite_{variant}"] = {
                "bytes": info["bytes"],
                "latency_ms": round(latency_ms(lambda: m.predict(one), args.seconds), 3),
                "batch256_spectra_per_s": round(rate(lambda: m.predict(flux), 256,
                                                     args.seconds), 1)}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
