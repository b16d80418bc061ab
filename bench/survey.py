"""Survey-scale inference: how close ``infer`` comes to the model alone, and its memory.

In one process, on the same synthetic stars (real shape, 8575 pixels; an untrained network of
the real architecture, which costs the same as a trained one):

* model: the Keras predictor on in-memory arrays, batch 256 (the reference of the plain rows);
* MC alone: ``MonteCarloPredictor`` at R=100 on in-memory arrays (the reference of --mc 100);
* ``predict_catalog`` on the record folder, on the FITS files read in this process (workers 0,
  the old way) and read ahead by worker processes, plain and with --mc 100;
* with ``--ray``, the same through ``--engine ray`` on a local Ray instance.

Also files/s of ``read_apstar`` on the 24 real DR13 files against the old full astropy read.
Then peak RSS of ``apnet-tf infer --mc 0`` (a fresh process each) on ``--rss`` file counts;
the files beyond the survey are symbolic links to it, which read the same as distinct files.

    python bench/survey.py [--n 600] [--mc-n 64] [--rss 3000 30000] [--ray]
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


def throughput(spectra: str, records: str, n: int, mc_n: int, ray: bool) -> dict:
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
    if ray:
        out.update(_ray_rates(files, sub))
    return out


def _ray_rates(files: list[str], sub: list[str]) -> dict:
    import ray

    from apnet_tf.inference.ray_engine import predict_catalog_ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    model = _model_dir()
    predict_catalog_ray(model, files[:8], mc=0, batch_size=8)  # cluster and actor start-up
    out = {"ray_fits": _rate(lambda: predict_catalog_ray(model, files, mc=0), len(files)),
           "ray_fits_mc100": _rate(lambda: predict_catalog_ray(model, sub, mc=100), len(sub))}
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
    ap.add_argument("--ray", action="store_true", help="also measure --engine ray")
    add_tag(ap)
    args = ap.parse_args()
    spectra, records = survey_records(args.n)
    reads = read_rates()
    rates = throughput(spectra, records, args.n, args.mc_n, args.ray)
    result = {"machine": machine(), "real_dr13_files_per_s": reads, "spectra_per_s": rates,
              "ratio_to_model": {k: v / rates["model"] for k, v in rates.items()
                                 if "mc" not in k},
              "ratio_to_mc_alone": {k: v / rates["mc_alone"] for k, v in rates.items()
                                    if "mc" in k},
              "rss": [peak_rss(spectra, n) for n in args.rss]}
    report("survey", result, args.tag)


if __name__ == "__main__":
    main()
