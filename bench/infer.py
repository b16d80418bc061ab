"""Inference throughput: plain, Monte Carlo (R=100), and the paper's PyTorch network.

All three run in one process on the same spectra (real shape, 8575 pixels):

* plain: the Keras model's compiled predictor, batch 256;
* MC: ``MonteCarloPredictor`` at R=100 on 32 stars (3,200 rows per call, run in chunks of
  ``MC_ROWS_PER_CHUNK`` = 1,000 rows), in stars/s, compared with plain inference on a batch 100
  times as large (3,200 spectra) in rows/s, and with the same call in one 3,200-row chunk; the
  MC / plain ratio also per CPU second of the process, which other jobs on the machine move less;
* PyTorch: Appendix B's network in eval mode under ``torch.no_grad``, batch 256.

    python bench/infer.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _common import add_tag, machine, report  # noqa: E402


def rate(fn, n_per_call: int, seconds: float) -> float:
    """Items per second of fn() after two warm-up calls, over at least ``seconds``."""
    return rates(fn, n_per_call, seconds)[0]


def rates(fn, n_per_call: int, seconds: float) -> tuple[float, float]:
    """Items per wall-clock second and per CPU second of this process (all its threads) of
    fn(), after two warm-up calls, over at least ``seconds``. The CPU rate measures the work
    itself: other jobs on the machine slow the wall clock, much less the CPU time."""
    fn()
    fn()
    calls, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds or calls < 3:
        fn()
        calls += 1
    return (calls * n_per_call / (time.perf_counter() - t0),
            calls * n_per_call / (time.process_time() - c0))


def spectra(n: int, seed: int = 0):
    from apnet_tf.data.synth import SpectrumModel, gap_mask

    rng = np.random.default_rng(seed)
    model = SpectrumModel()
    base = np.stack([300 * model.flux(t, g, f) for t, g, f in
                     zip(rng.uniform(3000, 7000, 16), rng.uniform(0, 5, 16),
                         rng.uniform(-1, 0.3, 16))])
    flux = base[rng.integers(0, 16, n)] * rng.uniform(0.5, 2, (n, 1))
    err = np.abs(flux) / 50 + 0.1
    gaps = gap_mask()
    flux[:, gaps], err[:, gaps] = 0.0, 1e10
    return flux.astype("float32"), err.astype("float32"), np.broadcast_to(gaps, flux.shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    add_tag(ap)
    args = ap.parse_args()

    import torch

    from apnet_tf.model.network import build_model, predictor
    from apnet_tf.model.torch_reference import apnet_network
    from apnet_tf.model.uncertainty import MonteCarloPredictor

    r, mc_stars = 100, 32
    flux, err, bad = spectra(mc_stars * r)
    model = build_model([4700, 2.9, -0.2], [730, 1.2, 0.3])
    plain = predictor(model)
    plain_256 = rate(lambda: plain(flux[:256]), 256, args.seconds)
    mcp = MonteCarloPredictor(model, r)
    one_chunk = MonteCarloPredictor(model, r, rows_per_chunk=mc_stars * r)
    # MC and its references alternate three times, each keeping its best, so that a slow moment
    # of a shared machine does not decide the ratio.
    plain_big = mc_stars_per_s = mc_one_chunk = plain_big_cpu = mc_cpu = 0.0
    for _ in range(3):
        wall, cpu = rates(lambda: plain(flux), len(flux), args.seconds / 3)
        plain_big, plain_big_cpu = max(plain_big, wall), max(plain_big_cpu, cpu)
        wall, cpu = rates(lambda: mcp(flux[:mc_stars], err[:mc_stars], bad[:mc_stars]),
                          mc_stars, args.seconds / 3)
        mc_stars_per_s, mc_cpu = max(mc_stars_per_s, wall), max(mc_cpu, cpu)
        mc_one_chunk = max(mc_one_chunk, rate(
            lambda: one_chunk(flux[:mc_stars], err[:mc_stars], bad[:mc_stars]), mc_stars,
            args.seconds / 3))

    torch.set_num_threads(os.cpu_count())
    net = apnet_network().eval()
    x = torch.from_numpy(flux[:256, None, :].copy())

    def torch_call():
        with torch.no_grad():
            net(x)

    torch_256 = rate(torch_call, 256, args.seconds)
    result = {
        "machine": machine(),
        "plain_spectra_per_s_batch256": round(plain_256, 1),
        "torch_spectra_per_s_batch256": round(torch_256, 1),
        "plain_over_torch": round(plain_256 / torch_256, 2),
        "mc_r100_stars_per_s": round(mc_stars_per_s, 2),
        "mc_r100_rows_per_s": round(mc_stars_per_s * r, 1),
        "plain_spectra_per_s_batch3200": round(plain_big, 1),
        "mc_rows_over_plain_batch3200": round(mc_stars_per_s * r / plain_big, 3),
        "mc_rows_over_plain_batch3200_per_cpu_second": round(mc_cpu * r / plain_big_cpu, 3),
        "mc_r100_stars_per_s_one_3200_row_chunk": round(mc_one_chunk, 2),
        "chunked_over_one_chunk": round(mc_stars_per_s / mc_one_chunk, 3),
    }
    report("infer", result, args.tag)


if __name__ == "__main__":
    main()
