"""Exported-model speed: single-spectrum latency and batch-256 throughput of each TFLite variant
(LiteRT interpreter) and of the SavedModel ``serving_default`` signature.

A freshly initialised APOGEE Net is exported (speed does not depend on the weights' values). With
``--model RUN`` that run's model is exported instead, and the script also reports each TFLite
variant's parity with the Keras model on the real apStar files in ../shared/data: the largest and
median |TFLite - Keras| per target, in percent of the run's target standard deviation.

    python bench/export.py [--seconds 5] [--model .bench/run_default]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _common import add_tag, machine, report, run_recipe  # noqa: E402
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


def real_flux():
    """Flux (N, 8575) of the real apStar files, or None where they are missing."""
    import glob

    from apnet_tf.io.spectra import read_apstar

    files = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                          "apogee_dr13", "apStar", "apStar-*.fits")))
    return np.stack([read_apstar(f).flux for f in files]) if files else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--model", help="a run folder: export it and measure parity on real spectra")
    add_tag(ap)
    args = ap.parse_args()

    import tensorflow as tf

    from apnet_tf.export.model_export import TFLITE_VARIANTS, export_model
    from apnet_tf.model.loading import load_model
    from apnet_tf.model.network import build_model, save_model_atomic

    flux, _, _ = spectra(256)
    one = flux[:1]
    results = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        source = args.model
        if source is None:
            source = os.path.join(tmp, "m.keras")
            save_model_atomic(build_model([4700, 2.9, -0.2], [730, 1.2, 0.3]), source)
        out = os.path.join(tmp, "apogee_net")
        meta = export_model(source, out, tflite=list(TFLITE_VARIANTS))
        sm = tf.saved_model.load(os.path.join(out, "1")).signatures["serving_default"]
        t_one, t_batch = tf.constant(one), tf.constant(flux)
        results["saved_model"] = {
            "latency_ms": round(latency_ms(lambda: sm(flux=t_one), args.seconds), 3),
            "batch256_spectra_per_s": round(rate(lambda: sm(flux=t_batch), 256, args.seconds), 1)}
        real = real_flux() if args.model else None
        if real is not None:
            keras_model = load_model(source)
            reference, std = keras_model.predict(real), np.array(keras_model.normalization["std"])
        for variant, info in meta["tflite"].items():
            m = load_model(os.path.join(out, info["file"]))
            results[f"tflite_{variant}"] = {
                "bytes": info["bytes"],
                "latency_ms": round(latency_ms(lambda: m.predict(one), args.seconds), 3),
                "batch256_spectra_per_s": round(rate(lambda: m.predict(flux), 256,
                                                     args.seconds), 1)}
            if real is not None:
                dev = 100 * np.abs(m.predict(real) - reference) / std
                results[f"tflite_{variant}"]["real_spectra"] = len(real)
                results[f"tflite_{variant}"]["max_pct_of_std"] = np.round(dev.max(0), 3).tolist()
                results[f"tflite_{variant}"]["median_pct_of_std"] = np.round(
                    np.median(dev, 0), 3).tolist()
    report("export", results, args.tag, recipe=run_recipe(args.model) if args.model else None)


if __name__ == "__main__":
    main()
