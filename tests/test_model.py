import keras
import numpy as np
import pytest
import tensorflow as tf

from apnet_tf.model.network import (
    Destandardize,
    FluxScaling,
    MaskedStandardizedMSE,
    build_model,
    flatten_length,
    model_precision,
    paper_torch_parameter_count,
    with_precision,
)

MEAN, STD = [4716.92, 2.88, -0.22], [733.01, 1.16, 0.30]  # paper Table 1


def test_parameter_count_matches_pytorch_apnet():
    model = build_model(MEAN, STD)
    assert flatten_length() == 133
    assert model.get_layer("flatten").output.shape[-1] == 133 * 64
    assert paper_torch_parameter_count() == 4_655_275
    assert model.count_params() == 4_655_275
    # Each Conv1d(kernel 3) of Appendix B is a Conv2D with a (1, 3) kernel on a (1, L, C) image.
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [8, 8, 16, 16, 16, 16, 32, 32, 32, 32, 64, 64]
    assert all(c.kernel_size == (1, 3) and c.padding == "same" for c in convs)
    assert all(c.activation is keras.activations.relu for c in convs)
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert len(pools) == 6 and all(p.pool_size == (1, 2) for p in pools)


def test_output_is_physical_units_and_survives_save_load(tmp_path, apstar_files):
    from apnet_tf.io.spectra import read_apstar

    model = build_model(MEAN, STD)
    flux = np.stack([read_apstar(p).flux for p in apstar_files[:4]])
    pred = model.predict(flux, verbose=0)
    assert pred.shape == (4, 3)
    z = keras.Model(model.input, model.get_layer("fc3").output).predict(flux, verbose=0)
    np.testing.assert_allclose(pred, z * np.array(STD) + np.array(MEAN), rtol=1e-5)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(flux, verbose=0), pred, rtol=1e-6)


def test_mixed_bfloat16_model_and_its_float32_twin(apstar_files):
    from apnet_tf.io.spectra import read_apstar

    keras.utils.set_random_seed(0)
    mixed = build_model(MEAN, STD, precision="mixed_bfloat16")
    assert model_precision(mixed) == "mixed_bfloat16"
    for name in ("conv1", "conv12", "fc1", "fc2"):
        layer = mixed.get_layer(name)
        assert (layer.compute_dtype, layer.variable_dtype) == ("bfloat16", "float32")
    for name in ("flux_scaling", "fc3", "labels"):
        assert mixed.get_layer(name).compute_dtype == "float32"
    twin = with_precision(mixed, "float32")
    assert model_precision(twin) == "float32" and with_precision(twin, "float32") is twin
    assert twin.count_params() == mixed.count_params() == 4_655_275
    for a, b in zip(twin.get_weights(), mixed.get_weights()):
        np.testing.assert_array_equal(a, b)
    flux = np.stack([read_apstar(p).flux for p in apstar_files[:4]])
    reference = build_model(MEAN, STD)
    reference.set_weights(mixed.get_weights())
    np.testing.assert_array_equal(twin.predict(flux, verbose=0), reference.predict(flux, verbose=0))
    out = mixed.predict(flux, verbose=0)
    assert out.dtype == np.float32
    # bfloat16 keeps 8 mantissa bits; through 14 layers of an untrained network, on real spectra
    # it has never seen, the standardised outputs (up to ~7) agree to a few percent
    z_mixed = (out - np.array(MEAN)) / np.array(STD)
    z_float = (reference.predict(flux, verbose=0) - np.array(MEAN)) / np.array(STD)
    assert (np.abs(z_mixed - z_float) <= 0.05 * (np.abs(z_float) + 1)).all()


def test_flux_scaling_makes_brightness_irrelevant():
    rng = np.random.default_rng(0)
    flux = rng.uniform(50, 150, (2, 8575)).astype(np.float32)
    flux[:, :200] = 0  # chip gap
    layer = FluxScaling("mean")
    a, b = layer(flux).numpy(), layer(flux * 37.0).numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert (a[:, :200] == 0).all()
    assert abs(a[:, 200:].mean()) < 0.05
    assert np.isfinite(layer(np.zeros((1, 8575), np.float32)).numpy()).all()
    np.testing.assert_array_equal(FluxScaling("none")(flux).numpy(), flux)


def test_missing_labels_are_left_out_of_the_loss():
    loss = MaskedStandardizedMSE(STD)
    y_pred = tf.constant([[5000.0, 3.0, 0.0], [4000.0, 4.5, -0.5]])
    y_true = tf.constant([[4266.99, np.nan, 0.3], [np.nan, np.nan, np.nan]])
    # star 1: teff off by 733.01 (1 sigma) and fe_h by 0.3 (1 sigma); star 2: nothing present,
    # so it adds nothing, not NaN and not a filled-in value. Every present label weighs the same
    # (Table 2's mean over present labels): (1 + 1) / 2 = 1. Keras averages per-star values over
    # the batch, so each star carries its squares x B / (present labels) = 2 x 2 / 2.
    per_star = loss.call(y_true, y_pred).numpy()
    np.testing.assert_allclose(per_star, [2.0, 0.0], rtol=1e-4)
    assert float(loss(y_true, y_pred)) == pytest.approx(1.0, rel=1e-4)
    # filling the missing label with any value would change the loss; masking does not
    filled = loss.call(tf.constant([[4266.99, 0.0, 0.3]]), y_pred[:1]).numpy()
    assert filled[0] != pytest.approx(1.0, rel=1e-3)
    # and the gradient w.r.t. a prediction whose label is missing is exactly zero
    with tf.GradientTape() as tape:
        p = tf.Variable(y_pred)
        value = tf.reduce_mean(loss.call(y_true, p))
    grad = tape.gradient(value, p).numpy()
    assert grad[0, 1] == 0 and (grad[1] == 0).all() and grad[0, 0] != 0


def test_destandardize_round_trip_config():
    layer = Destandardize(MEAN, STD)
    again = Destandardize.from_config(layer.get_config())
    z = tf.constant([[1.0, -1.0, 0.0]])
    np.testing.assert_allclose(again(z).numpy(), [[MEAN[0] + STD[0], MEAN[1] - STD[1], MEAN[2]]],
                               rtol=1e-6)
