"""Training throughput at batch 128: apnet-tf's Keras model against the paper's PyTorch network.

Both train on the same in-memory spectra (real shape, 8575 pixels) with the same optimiser
(Adam, lr 0.001); the first steps (graph tracing, XLA compilation) are not timed. The two run
alternately three times, ``--steps`` steps each, and each keeps its best rate.

    python bench/train.py [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from _common import machine  # noqa: E402

BATCH = 128


def keras_trainer(x, y):
    """A function that runs ``steps`` training steps of the default-recipe model."""
    import tensorflow as tf

    from apnet_tf.model import build_model
    from apnet_tf.training import RECIPES, compile_model

    std = y.std(axis=0)
    model = build_model(y.mean(axis=0), std)
    compile_model(model, RECIPES["default"], std)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).repeat().prefetch(2)
    model.fit(ds, steps_per_epoch=5, epochs=1, verbose=0)  # trace and compile
    return lambda steps: model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)


def keras_rate(x, y, steps: int) -> float:
    run = keras_trainer(x, y)
    t = time.perf_counter()
    run(steps)
    return steps * BATCH / (time.perf_counter() - t)


def torch_trainer(x, y):
    import torch

    from apnet_tf.torch_reference import appendix_b_network

    torch.set_num_threads(os.cpu_count())
    net = appendix_b_network()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt = torch.from_numpy(x[:, None, :] / np.median(x)).float()
    yt = torch.from_numpy((y - y.mean(0)) / y.std(0)).float()
    n = len(xt)

    def step(i):
        sl = slice((i * BATCH) % (n - BATCH), (i * BATCH) % (n - BATCH) + BATCH)
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(xt[sl]), yt[sl])
        loss.backward()
        opt.step()

    for i in range(3):
        step(i)

    def run(steps):
        for i in range(steps):
            step(i)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    from apnet_tf.synth import SpectrumModel, draw_labels

    rng = np.random.default_rng(0)
    labels = draw_labels(512, rng)
    model = SpectrumModel()
    x = np.stack([200 * model.flux(t, g, f) for t, g, f in
                  labels[["TEFF", "LOGG", "FE_H"]].to_numpy()]).astype("float32")
    x += rng.normal(0, 2, x.shape).astype("float32")
    y = labels[["TEFF", "LOGG", "FE_H"]].to_numpy().astype("float32")
    # Alternate the two three times and keep each one's best, so that a slow moment of a shared
    # machine does not decide the ratio.
    runners = {"keras": keras_trainer(x, y), "torch": torch_trainer(x, y)}
    best = {"keras": 0.0, "torch": 0.0}
    for _ in range(3):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run(args.steps)
            best[name] = max(best[name], args.steps * BATCH / (time.perf_counter() - t0))
    k, t = best["keras"], best["torch"]
    result = {"machine": machine(), "batch": BATCH, "steps": args.steps,
              "keras_spectra_per_s": round(k, 1), "torch_spectra_per_s": round(t, 1),
              "ratio_keras_over_torch": round(k / t, 2)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
