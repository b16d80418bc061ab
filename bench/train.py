"""Training throughput: apnet-tf's Keras model against the paper's PyTorch network.

Both train on the same in-memory spectra (real shape, 8575 pixels) with Adam, lr 0.001; the first
steps (graph tracing) are not timed. Keras is timed from the start of its second step to the end
of its last inside one ``fit`` call, so the setup of a ``fit`` call (creating the dataset
iterator and callbacks, 0.5-2 s here) is not counted as step time. PyTorch (float32) and Keras in
float32 and in mixed bfloat16 (``fit --precision mixed_bfloat16``; fast only where the hardware
computes bfloat16) run at the paper's batch of 128, like for like; Keras runs once more as
``fit`` trains by default: the default recipe's batch size and its precision, ``auto`` resolved
on this machine. The runners alternate three times, ``--steps`` steps each, and each keeps its
best rate.

    python bench/train.py [--steps 20]
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

BATCH = 128


def keras_trainer(x, y, recipe, batch: int = BATCH):
    """A function that runs ``steps`` training steps of ``recipe`` (its network, optimizer and
    precision, ``auto`` resolved) at ``batch`` and returns their wall time in seconds."""
    import keras
    import tensorflow as tf

    from apnet_tf.model.network import build_model
    from apnet_tf.training.fitting import compile_model
    from apnet_tf.training.precision import resolve_precision

    class StepClock(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 1:
                self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.end = time.perf_counter()

    std = y.std(axis=0)
    model = build_model(y.mean(axis=0), std, dropout=recipe.dropout,
                        input_scaling=recipe.input_scaling, initializer=recipe.initializer,
                        precision=resolve_precision(recipe.precision))
    compile_model(model, recipe, std)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat().prefetch(2)
    model.fit(ds, steps_per_epoch=5, epochs=1, verbose=0)  # trace

    def run(steps):
        clock = StepClock()
        model.fit(ds, steps_per_epoch=steps + 1, epochs=1, verbose=0, callbacks=[clock])
        return clock.end - clock.start

    return run


def torch_trainer(x, y):
    import torch

    from apnet_tf.model.torch_reference import apnet_network

    torch.set_num_threads(os.cpu_count())
    net = apnet_network()
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
        t = time.perf_counter()
        for i in range(steps):
            step(i)
        return time.perf_counter() - t

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    add_tag(ap)
    args = ap.parse_args()
    from apnet_tf.data.synth import SpectrumModel, draw_labels

    rng = np.random.default_rng(0)
    labels = draw_labels(512, rng)
    model = SpectrumModel()
    x = np.stack([200 * model.flux(t, g, f) for t, g, f in
                  labels[["TEFF", "LOGG", "FE_H"]].to_numpy()]).astype("float32")
    x += rng.normal(0, 2, x.shape).astype("float32")
    y = labels[["TEFF", "LOGG", "FE_H"]].to_numpy().astype("float32")
    import dataclasses

    from apnet_tf.training.precision import resolve_precision
    from apnet_tf.training.recipes import RECIPES

    default = RECIPES["default"]
    batches = {"keras_float32": BATCH, "keras_mixed_bfloat16": BATCH,
               "keras_default": default.batch_size, "torch": BATCH}
    # Alternate the runners three times and keep each one's best, so that a slow moment of a
    # shared machine does not decide the ratio.
    runners = {"keras_float32": keras_trainer(x, y, dataclasses.replace(default,
                                                                        precision="float32")),
               "keras_mixed_bfloat16": keras_trainer(
                   x, y, dataclasses.replace(default, precision="mixed_bfloat16")),
               "keras_default": keras_trainer(x, y, default, default.batch_size),
               "torch": torch_trainer(x, y)}
    best = dict.fromkeys(runners, 0.0)
    for _ in range(3):
        for name, run in runners.items():
            best[name] = max(best[name], args.steps * batches[name] / run(args.steps))
    torch_rate = best.pop("torch")
    result = {"machine": machine(), "batch": BATCH, "steps": args.steps,
              "default_batch": default.batch_size,
              "default_precision": resolve_precision(default.precision),
              "torch_spectra_per_s": round(torch_rate, 1)}
    for name, rate in best.items():
        result[f"{name}_spectra_per_s"] = round(rate, 1)
        result[f"ratio_{name}_over_torch"] = round(rate / torch_rate, 2)
    report("train", result, args.tag, recipe=default)


if __name__ == "__main__":
    main()
