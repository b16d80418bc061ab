"""Survey-scale inference: how close ``infer`` comes to the model alone, and its memory.

In one process, on the same synthetic stars (real shape, 8575 pixels; an untrained network of
the real architecture, which costs the same as a trained one):

* model: the Keras predictor on in-memory arrays, batch 256 (the reference of the plain rows);
* MC alone: ``MonteCarloPredictor`` at R=100 on in-memory arrays (the reference of --mc 100);
* ``predict_catalog`` on the record folder, on the FITS files read in this process (workers 0,
  the old way) and read ahead by worker processes, plain and with --mc 100.

Also files/s of ``read_apstar`` on the 24 real DR13 files against the old full astropy read.
Then peak RSS of ``apnet-tf infer --mc 0`` (a fresh process each) on ``--rss`` file counts;
the files beyond the survey are symbolic links to it, which read the same as distinct files.

With ``--ray``, last: ``--engine ray`` on a local Ray instance against the local engine, whole
jobs on the same ``--ray-files`` files (links cycling through the survey), plain, and with
--mc 100 on ``--ray-mc-n`` of them; Ray's own start-up and a one-batch job of each engine (the
fixed cost of a job) are measured on their own.

    python bench/survey.py [--n 600] [--mc-n 64] [--rss 3000 30000] [--ray] [--ray-files 30000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _common import CACHE, add_tag, machine, report, survey_records  # noqa: E402


def _rate(fn, n: int) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def cpu_per_file(files: list[str], batch: int = 256) -> dict:
    """CPU milliseconds per file, in this process, of each step of a job: reading a batch
    (``read_fits_unit``), the model alone on it, and ``unit_part`` (the model, the flags and
    the catalog columns). CPU time, unlike wall time, hardly changes with what else runs on
    the cores; the projection (``bench/projection.py``) scales from these."""
    from apnet_tf.data.planning import plan_units
    from apnet_tf.data.readers import read_fits_unit
    from apnet_tf.inference.parts import unit_part
    from apnet_tf.inference.settings import InferenceSettings
    from apnet_tf.model.loading import load_model

    model = load_model(_model_dir())
    settings = InferenceSettings(mc=0, calibrated=False, seed=0)
    units = plan_units(files, batch).units
    out = {"read": 0.0, "model": 0.0, "unit_part": 0.0}
    model.predict(read_fits_unit(units[0])[0].flux)  # warm-up (trace)
    for i, unit in enumerate(units):
        c = time.process_time()
        batch_, failures = read_fits_unit(unit)
        out["read"] += time.process_time() - c
        c = time.process_time()
        model.predict(batch_.flux)
        out["model"] += time.process_time() - c
        c = time.process_time()
        unit_part(model, batch_, failures, settings, i)
        out["unit_part"] += time.process_time() - c
    return {k: 1e3 * v / len(files) for k, v in out.items()}


def _model_dir() -> str:
    path = os.path.join(CACHE, "survey_model")
    if not os.path.exists(os.path.join(path, "best.keras")):
        import keras

        from apnet_tf.model.network import build_model

        keras.utils.set_random_seed(0)
        os.makedirs(path, exist_ok=True)
        build_model([4500.0, 3.0, -0.3], [800.0, 1.0, 0.4]).save(os.path.join(path, "best.keras"))
    return path


def _arrays(files: list[str]):
    from apnet_tf.io.spectra import read_apstar

    specs = [read_apstar(f) for f in files]
    return tuple(np.stack([getattr(s, k) for s in specs]) for k in ("flux", "err", "bad"))


def throughput(spectra: str, records: str, n: int, mc_n: int) -> dict:
    """spectra/s of each way, and each as a ratio to its reference."""
    from apnet_tf.inference.predict import predict_catalog
    from apnet_tf.io.spectra import expand_paths
    from apnet_tf.model.loading import load_model
    from apnet_tf.model.network import predictor
    from apnet_tf.model.uncertainty import MonteCarloPredictor

    model = load_model(_model_dir())
    files = expand_paths([spectra])[:n]
    flux, err, bad = _arrays(files)
    plain = predictor(model.model)
    plain(flux[:256])  # warm up (trace)

    def model_pass():
        for i in range(0, len(flux), 256):
            plain(flux[i:i + 256])

    out = {"model": _rate(model_pass, len(flux))}
    mc = MonteCarloPredictor(model.model, 100)
    mc(flux[:4], err[:4], bad[:4])
    out["mc_alone"] = _rate(lambda: mc(flux[:mc_n], err[:mc_n], bad[:mc_n]), mc_n)
    out["records"] = _rate(lambda: predict_catalog(model, [records], mc=0), len(flux))
    out["fits_serial"] = _rate(lambda: predict_catalog(model, files, mc=0, workers=0), n)
    out["fits_parallel"] = _rate(lambda: predict_catalog(model, files, mc=0, workers=2), n)
    sub = files[:mc_n]
    out["fits_mc100"] = _rate(lambda: predict_catalog(model, sub, mc=100, workers=2), mc_n)
    return out


def _ray_init() -> float:
    """Start a local Ray instance (its workers import this checkout); seconds it took."""
    import ray

    t = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2",
                                       "PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    return time.perf_counter() - t


def ray_against_local(spectra: str, n_files: int, sub: list[str], rounds: int) -> dict:
    """``--engine ray`` against the local engine on the same ``n_files`` files, each a whole
    job from the model's path to the catalog in memory (model loading, reader processes or
    actors, every batch), alternating ``rounds`` times, each keeping its best. The Ray
    instance starts once, before, and is reported on its own (``ray_init_s``); so is a job of
    one batch on each engine, the fixed cost every job pays."""
    import ray

    from apnet_tf.inference.predict import predict_catalog
    from apnet_tf.inference.ray_engine import predict_catalog_ray
    from apnet_tf.inference.settings import InferenceSettings
    from apnet_tf.io.spectra import expand_paths
    from apnet_tf.model.loading import load_model

    model = _model_dir()
    files = expand_paths([_linked(spectra, n_files)])
    out = {"ray_init_s": _ray_init()}

    def local(paths, mc=0):
        predict_catalog(load_model(model), paths, mc=mc, workers=None)

    def far(paths, mc=0):
        predict_catalog_ray(model, paths, InferenceSettings(mc=mc, calibrated=False))

    for name, fn in (("local", local), ("ray", far)):
        t = time.perf_counter()
        fn(files[:256])
        out[f"{name}_one_batch_job_s"] = time.perf_counter() - t
    best = {"local": 0.0, "ray": 0.0}
    for _ in range(rounds):
        best["local"] = max(best["local"], _rate(lambda: local(files), len(files)))
        best["ray"] = max(best["ray"], _rate(lambda: far(files), len(files)))
    out.update({"files": len(files), "distinct_files": len(set(map(os.path.realpath, files))),
                "local_files_per_s": best["local"], "ray_files_per_s": best["ray"],
                "ray_over_local": best["ray"] / best["local"],
                "local_mc100_stars_per_s": _rate(lambda: local(sub, 100), len(sub)),
                "ray_mc100_stars_per_s": _rate(lambda: far(sub, 100), len(sub))})
    out["ray_mc100_over_local"] = out["ray_mc100_stars_per_s"] / out["local_mc100_stars_per_s"]
    ray.shutdown()
    return out


def read_rates(seconds: float = 3.0) -> dict:
    """files/s of ``read_apstar`` on the real DR13 files, one core, against a full astropy read
    of HDUs 1-3 as the old reader did it (the reference)."""
    import glob

    from astropy.io import fits

    from apnet_tf.io.spectra import read_apstar

    data = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
    files = sorted(glob.glob(os.path.join(data, "apogee_dr13", "apStar", "apStar-*.fits")))
    if not files:
        return {}

    def full(path):
        with fits.open(path, memmap=False) as hdul:
            return [hdul[k].data for k in (1, 2, 3)], hdul[0].header["OBJID"]

    out = {}
    for name, fn in (("astropy_full_read", full), ("read_apstar", read_apstar)):
        fn(files[0])
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds:
            for f in files:
                fn(f)
            n += len(files)
        out[name] = n / (time.perf_counter() - t)
    return out


def _linked(spectra: str, n: int) -> str:
    """A folder of n apStar names, symbolic links cycling through the survey's files."""
    from apnet_tf.io.spectra import expand_paths

    folder = os.path.join(CACHE, f"links{n}")
    if len(os.listdir(folder) if os.path.isdir(folder) else []) != n:
        os.makedirs(folder, exist_ok=True)
        real = expand_paths([spectra])
        for i in range(n):
            link = os.path.join(folder, f"apStar-bench-{i:07d}.fits")
            if not os.path.lexists(link):
                os.symlink(os.path.abspath(real[i % len(real)]), link)
    return folder


_RSS_CHILD = """
import resource, sys
from apnet_tf.cli.app import app
try:
    app(sys.argv[1:])
except SystemExit:
    pass
print("RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss(spectra: str, n: int) -> dict:
    """Peak RSS (MiB) of a fresh ``infer --mc 0`` on n files: the main process and its largest
    reader process; and its wall time."""
    folder = _linked(spectra, n)
    out = os.path.join(CACHE, f"rss{n}.csv")
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _RSS_CHILD, "infer", "--model", _model_dir(),
                          "--spectra", folder, "--out", out, "--mc", "0"],
                         capture_output=True, text=True)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RSS_KB")]
    if not line:
        raise SystemExit(f"infer on {n} files failed: {res.stderr[-2000:]}")
    main_kb, child_kb = map(int, line[-1].split()[1:])
    return {"files": n, "main_mib": main_kb / 1024, "reader_mib": child_kb / 1024,
            "seconds": time.perf_counter() - t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="stars for the throughput runs")
    ap.add_argument("--mc-n", type=int, default=64, help="stars for the --mc 100 runs")
    ap.add_argument("--rss", type=int, nargs="*", default=[3000, 30000])
    ap.add_argument("--ray", action="store_true", help="also measure --engine ray, at the end")
    ap.add_argument("--ray-files", type=int, default=30000,
                    help="files of the Ray and local jobs (links cycling through the survey)")
    ap.add_argument("--ray-mc-n", type=int, default=256, help="stars of their --mc 100 jobs")
    ap.add_argument("--ray-rounds", type=int, default=1, help="alternations, best kept")
    add_tag(ap)
    args = ap.parse_args()
    from apnet_tf.io.spectra import expand_paths

    spectra, records = survey_records(args.n)
    reads = read_rates()
    rates = throughput(spectra, records, args.n, args.mc_n)
    result = {"machine": machine(), "real_dr13_files_per_s": reads, "spectra_per_s": rates,
              "ratio_to_model": {k: v / rates["model"] for k, v in rates.items()
                                 if "mc" not in k},
              "ratio_to_mc_alone": {k: v / rates["mc_alone"] for k, v in rates.items()
                                    if "mc" in k},
              "rss": [peak_rss(spectra, n) for n in args.rss],
              "cpu_ms_per_file": cpu_per_file(expand_paths([spectra])[:args.n])}
    if args.ray:
        sub = expand_paths([spectra])[:args.ray_mc_n]
        result["ray"] = ray_against_local(spectra, args.ray_files, sub, args.ray_rounds)
    report("survey", result, args.tag)


if __name__ == "__main__":
    main()
