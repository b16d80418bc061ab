"""Quiet runs: Keras knows each epoch's length, and inference traces one function per model."""

import numpy as np
import pytest

from apnet_tf.data.dataset import make_dataset


@pytest.mark.parametrize("kwargs", [
    {"splits": ["train"], "labeled_only": True, "batch_size": 16},
    {"splits": ["train"], "labeled_only": True, "sample": {"payne": 0.3}, "seed": 5,
     "batch_size": 8, "categories": ["payne", "mstar"]},
    {"splits": ["dev"], "labeled_only": True, "batch_size": 7, "drop_remainder": True},
])
def test_filtered_datasets_know_their_length(records, kwargs):
    # Unknown length made Keras run each first epoch into the end of the data and warn "Your
    # input ran out of data" on every fit.
    ds = make_dataset(str(records), **kwargs)
    n = sum(1 for _ in ds)
    assert n > 0 and int(ds.cardinality()) == n


def test_one_traced_function_per_model():
    import keras

    from apnet_tf.model.network import _PREDICTORS, predictor

    inp = keras.Input((5,))
    model = keras.Model(inp, keras.layers.Dense(3)(inp))
    for _ in range(4):  # as fine-tuning does once per round
        predictor(model)(np.zeros((2, 5), np.float32))
    assert _PREDICTORS[model].experimental_get_tracing_count() == 1
