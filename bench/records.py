"""make-records throughput (files/s) and tf.data read throughput (spectra/s, parse + batch).

The read rate is compared with the rate at which a Keras training step of the default recipe (its
batch size, its precision with ``auto`` resolved on this machine) consumes spectra, measured in the
same run: reading must be at least 10x faster so input never limits training.

    python bench/records.py [--n 2000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import CACHE, add_tag, machine, report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    add_tag(ap)
    args = ap.parse_args()

    import numpy as np
    from train import keras_trainer

    from apnet_tf.data.dataset import make_dataset
    from apnet_tf.data.records import make_records
    from apnet_tf.data.synth import make_survey
    from apnet_tf.training.precision import resolve_precision
    from apnet_tf.training.recipes import RECIPES

    spectra = os.path.join(CACHE, f"survey{args.n}_s0")
    if not os.path.exists(os.path.join(spectra, "labels.csv")):
        make_survey(spectra, args.n, 0)
    out = tempfile.mkdtemp(prefix="bench_records_")
    try:
        t = time.perf_counter()
        make_records([spectra], out, labels=os.path.join(spectra, "labels.csv"))
        write_s = time.perf_counter() - t

        def read_all():
            n = 0
            for flux, y in make_dataset(out, batch_size=128, shuffle=True):
                n += int(flux.shape[0])
            return n

        read_all()  # warm the page cache and trace the parse function
        t = time.perf_counter()
        n_read = sum(read_all() for _ in range(3))
        read_rate = n_read / (time.perf_counter() - t)

        x = np.concatenate([f.numpy() for f, _ in make_dataset(out, batch_size=512)])[:512]
        y = np.concatenate([t_.numpy() for _, t_ in make_dataset(out, batch_size=512)])[:512]
        y = np.nan_to_num(y, nan=np.nanmean(y, axis=0)[None, :].repeat(len(y), 0))
        recipe = RECIPES["default"]
        run = keras_trainer(x, y, recipe, recipe.batch_size)
        train_rate = max(20 * recipe.batch_size / run(20) for _ in range(2))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    result = {"machine": machine(), "n_files": args.n,
              "make_records_files_per_s": round(args.n / write_s, 1),
              "read_spectra_per_s": round(read_rate, 1),
              "keras_train_spectra_per_s": round(train_rate, 1),
              "train_batch": recipe.batch_size,
              "train_precision": resolve_precision(recipe.precision),
              "read_over_train": round(read_rate / train_rate, 1)}
    report("records", result, args.tag, recipe=recipe)


if __name__ == "__main__":
    main()
