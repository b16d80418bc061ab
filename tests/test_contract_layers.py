"""Every Keras layer the package registers, through one contract (``contract_layers``): config
round trip, ``.keras`` save and load in a functional model, symbolic and eager agree, and the
mixed_bfloat16 policy. ``LAYERS`` says how to test each; a registered layer without an entry
fails ``test_every_registered_class_has_a_contract``, so none is added untested.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from contract_layers import (
    PACKAGE,
    LayerCase,
    check_config_round_trip,
    check_loss_round_trip,
    check_mixed_bfloat16,
    check_saved_in_model,
    check_symbolic_and_eager,
    functional_model,
    registered_classes,
    registering_modules,
)

B = 4  # spectra per sample batch


def _flux(seed: int, n: int = 64) -> np.ndarray:
    """(B, n) positive flux with a few zero (bad) pixels and one all-zero spectrum."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(50.0, 150.0, (B, n))
    x[:, ::9] = 0.0
    x[3] = 0.0
    return x.astype(np.float32)


def _normal(seed: int, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (scale * np.random.default_rng(seed).normal(size=(B, *shape))).astype(np.float32)


def _photometry(seed: int) -> np.ndarray:
    """(B, 7) raw photometry with a value over the fill limit and a NaN."""
    rng = np.random.default_rng(seed)
    x = np.array([1.0, 13.0, 13.6, 12.3, 11.2, 10.6, 10.4]) + rng.normal(0, 1, (B, 7))
    x[1, 1], x[2, 0] = 99.999, np.nan
    return x.astype(np.float32)


def _yso_inputs(seed: int) -> np.ndarray:
    """(B, 12) positive raw YSO inputs (magnitudes, r* Rsun, log L, distance pc)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(8.0, 16.0, (B, 12))
    x[:, 9], x[:, 11] = rng.uniform(0.5, 3.0, B), rng.uniform(100.0, 500.0, B)
    return x.astype(np.float32)


_SEVEN = ([-84.8, 21.4, 24.5, 20.3, 18.4, 24.0, 17.0], [-0.7, 13.6, 14.5, 12.8, 11.5, 10.9, 10.7],
          [14.6, 2.3, 2.8, 2.1, 1.7, 1.5, 1.6])

#: "apnet_tf>Name" -> how to test it. Arguments differ from the defaults where they can.
LAYERS = {
    "apnet_tf>FluxScaling": LayerCase(
        {"mode": "mean"}, _flux, "flux_scaling", "float32"),
    "apnet_tf>Destandardize": LayerCase(
        {"mean": [4700.0, 2.9, -0.2], "std": [730.0, 1.2, 0.3]},
        lambda s: _normal(s, 3), "labels", "float32"),
    "apnet_tf>PhotometryStandardize": LayerCase(
        dict(zip(("fill", "mean", "std"), _SEVEN)), _photometry, "photometry_scaling", "float32"),
    "apnet_tf>Net2PhotometryScaling": LayerCase(
        {}, _photometry, "photometry_scaling", "float32"),
    "apnet_tf>PublishedLabels": LayerCase(
        {"order": ["logg", "log_teff", "fe_h"], "source_mean": [2.9, 3.67, -0.13],
         "source_std": [1.19, 0.09, 0.26]}, lambda s: _normal(s, 3, scale=0.5), "labels",
        "float32"),
    "apnet_tf>LogFluxClip": LayerCase(
        # float32 in every precision: its 95th percentile would not survive bfloat16's 8 bits
        {"group": 2}, lambda s: _flux(s, 50), "log_flux", "float32"),
    "apnet_tf>PositionChannel": LayerCase(
        {"inv_freq": 0.5}, lambda s: _normal(s, 40), "position", "float32"),
    "apnet_tf>ChannelZeroPad": LayerCase(
        {"before": 1, "after": 2}, lambda s: _normal(s, 10, 3), "res0_shortcut", "bfloat16"),
    "apnet_tf>AdaptiveAveragePooling1D": LayerCase(
        {"output_size": 7}, lambda s: _normal(s, 20, 3), "adapt_pool", "bfloat16"),
    "apnet_tf>BossNetLabels": LayerCase(
        {"order": ["logg", "log_teff", "fe_h", "rv"], "source_mean": [3.9, 3.8, -0.4, -7.4],
         "source_std": [0.9, 0.1, 0.5, 60.9]}, lambda s: _normal(s, 4, scale=0.5), "labels",
        "float32"),
    "apnet_tf>PhotometryScaling": LayerCase(
        {"mean": list(np.linspace(9.0, 14.0, 12)), "std": list(np.linspace(0.5, 2.0, 12)),
         "log_columns": [9, 11]}, _yso_inputs, "scaling", "bfloat16"),
}

#: Registered classes that are not layers, each with its constructor arguments.
OTHERS = {"apnet_tf>MaskedStandardizedMSE": {"std": [730.0, 1.2, 0.3]}}


@pytest.fixture(scope="module")
def registered() -> dict[str, type]:
    return registered_classes()


def _case(key: str, registered):
    if key not in registered:
        pytest.fail(f"{key} has a contract entry but the package registers no such class")
    case = LAYERS[key]
    return registered[key], case, case.make_input(0)


def test_every_registered_class_has_a_contract(registered):
    import keras

    layers = {k for k, v in registered.items() if issubclass(v, keras.layers.Layer)}
    missing = sorted(layers - set(LAYERS)) + sorted(set(registered) - layers - set(OTHERS))
    assert not missing, (f"registered without a contract entry: {missing}; add a LayerCase "
                         "(constructor arguments, a sample input) to LAYERS or OTHERS")
    assert not set(LAYERS) - layers and not set(OTHERS) - (set(registered) - layers), \
        "an entry names a class that is not registered (or not a layer)"
    assert len(layers) >= 11  # the layers of today's networks, at the least


def test_registration_imports_every_registering_module():
    """``import apnet_tf`` registers the classes of exactly the modules that register some."""
    from apnet_tf.registration import REGISTERING

    assert sorted(REGISTERING) == registering_modules()


@pytest.mark.parametrize("key", sorted(LAYERS))
def test_config_round_trip(key, registered):
    cls, case, x = _case(key, registered)
    check_config_round_trip(cls, case.kwargs, x)


@pytest.mark.parametrize("key", sorted(LAYERS))
def test_symbolic_and_eager_agree(key, registered):
    cls, case, x = _case(key, registered)
    check_symbolic_and_eager(cls, case.kwargs, x)


@pytest.mark.parametrize("key", sorted(LAYERS))
def test_saved_and_loaded_in_a_functional_model(key, registered, tmp_path):
    cls, case, x = _case(key, registered)
    check_saved_in_model(cls, case.kwargs, x, case.name, tmp_path / "model.keras")


@pytest.mark.parametrize("key", sorted(LAYERS))
def test_mixed_bfloat16(key, registered):
    cls, case, x = _case(key, registered)
    check_mixed_bfloat16(cls, case.kwargs, x, case.name, case.bf16_output)


@pytest.mark.parametrize("key", sorted(OTHERS))
def test_registered_losses_round_trip(key, registered):
    y_true = np.array([[4800.0, 2.5, np.nan], [5200.0, 4.4, -0.5]], np.float32)
    y_pred = np.array([[4700.0, 2.9, -0.1], [5000.0, 4.0, -0.2]], np.float32)
    check_loss_round_trip(registered[key], OTHERS[key], y_true, y_pred)


def test_import_apnet_tf_lets_keras_load_every_layer(registered, tmp_path):
    """A .keras file holding any of the package's layers loads in a fresh process after
    ``import apnet_tf`` (registration.py registers every registered class, lazily)."""
    for key in LAYERS:
        cls, case, x = _case(key, registered)
        functional_model(cls, case.kwargs, x, case.name).save(tmp_path / f"{cls.__name__}.keras")
    script = textwrap.dedent(f"""
        import glob, os, sys
        import apnet_tf
        import keras
        failed = []
        for path in sorted(glob.glob(os.path.join({str(tmp_path)!r}, "*.keras"))):
            try:
                keras.models.load_model(path)
            except Exception as exc:
                failed.append(os.path.basename(path) + ": " + str(exc).splitlines()[0][:120])
        print("\\n".join(failed))
        sys.exit(1 if failed else 0)
    """)
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, f"not loadable after import apnet_tf:\n{proc.stdout}"


# The contract itself can fail: a layer whose get_config drops an argument, one that loses a
# setting in the .keras file, one whose symbolic shape is not its eager one, and one that breaks
# under mixed_bfloat16 are each caught.


def _broken_layers():
    import keras
    import tensorflow as tf

    from apnet_tf.model.network import Destandardize, FluxScaling

    class DropsMode(FluxScaling):
        def get_config(self):
            config = super().get_config()
            config.pop("mode")
            return config

    class WrongSymbolicShape(Destandardize):
        def compute_output_shape(self, input_shape):
            return (input_shape[0], 4)

        def compute_output_spec(self, x):
            return keras.KerasTensor((x.shape[0], 4), dtype=self.compute_dtype)

    class Float32Constants(Destandardize):
        def call(self, z):  # constants in float32 whatever the input's dtype
            return z * tf.constant(self.std, tf.float32) + tf.constant(self.mean, tf.float32)

    return DropsMode, WrongSymbolicShape, Float32Constants


def test_the_contract_catches_broken_layers(tmp_path):
    import keras

    drops_mode, wrong_shape, float32_constants = _broken_layers()
    flux, z = _flux(0), _normal(0, 3)
    stats = LAYERS["apnet_tf>Destandardize"].kwargs
    with pytest.raises(AssertionError, match="drops constructor argument"):
        check_config_round_trip(drops_mode, {"mode": "none"}, flux)
    registered = keras.saving.register_keras_serializable("apnet_tf_contract_test")(drops_mode)
    with pytest.raises(AssertionError, match="saved and loaded"):
        check_saved_in_model(registered, {"mode": "none"}, flux, "flux_scaling",
                             tmp_path / "m.keras")
    with pytest.raises(AssertionError, match="symbolic shape"):
        check_symbolic_and_eager(wrong_shape, stats, z)
    with pytest.raises(AssertionError, match="does not run under mixed_bfloat16"):
        check_mixed_bfloat16(float32_constants, stats, z, "not_kept_in_float32", "bfloat16")
    with pytest.raises(AssertionError, match="FLOAT32_LAYERS makes it"):
        check_mixed_bfloat16(registered_classes()["apnet_tf>Destandardize"], stats, z,
                             "labels", "bfloat16")
