import numpy as np
import pytest
import tensorflow as tf

from apnet_tf.inference.predict import predict_catalog
from apnet_tf.io.spectra import read_apstar
from apnet_tf.model.calibration import coverage, fit_scale
from apnet_tf.model.loading import load_model
from apnet_tf.model.uncertainty import (
    MonteCarloPredictor,
    clean_errors,
    kth_smallest,
    mask_into_errors,
    noise_scale,
    noisy_draws,
    typical_error,
)


def test_typical_error_is_the_median_over_good_pixels():
    err = np.array([[1.0, 2.0, 3.0, 1e10, 1e10, 100.0]], np.float32)
    bad = np.array([[0, 0, 0, 1, 1, 0]], bool)
    # good pixels 1, 2, 3, 100: the lower median is 2 (a mean would be 26.5; with the 1e10
    # pixels it would be 3e9)
    assert typical_error(tf.constant(err), tf.constant(bad)).numpy()[0, 0] == 2.0
    scale = noise_scale(tf.constant(err), tf.constant(bad), cap=5.0).numpy()[0]
    np.testing.assert_array_equal(scale, [1.0, 2.0, 3.0, 0.0, 0.0, 10.0])  # capped at 5 x 2
    none_good = typical_error(tf.constant(err), tf.constant(np.ones_like(bad)))
    assert none_good.numpy()[0, 0] == 0.0


def test_kth_smallest_is_exactly_the_sorted_element():
    """The bisection that replaced tf.sort gives the very element a sort gives: ties, -0.0, inf,
    negative values, magnitudes from 1e-30 to 1e30, rows of one."""
    rng = np.random.default_rng(1)
    for trial in range(120):
        n, b = int(rng.integers(1, 40)), int(rng.integers(1, 4))
        x = (rng.normal(0, 10, (b, n)) * 10.0 ** rng.integers(-30, 30, (b, n))).astype(np.float32)
        x[rng.random((b, n)) < 0.2] = np.inf
        x[rng.random((b, n)) < 0.1] = -np.inf
        x[rng.random((b, n)) < 0.1] = -0.0
        if trial % 2:
            x = np.round(x)  # ties
        k = rng.integers(0, n, b)
        got = kth_smallest(tf.constant(x), tf.constant(k, tf.int32)).numpy()
        np.testing.assert_array_equal(got, np.sort(x, axis=1)[np.arange(b), k])


def test_noisy_draws_are_one_vectorised_batch():
    flux = tf.constant([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])
    scale = tf.constant([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    x = noisy_draws(flux, scale, 50, seed=(1, 2)).numpy()
    assert x.shape == (100, 3)
    np.testing.assert_array_equal(x[:50, [0, 2]], np.tile([1.0, 3.0], (50, 1)))  # no noise
    np.testing.assert_array_equal(x[50:], np.tile([10.0, 20.0, 30.0], (50, 1)))
    assert 0.6 < x[:50, 1].std() < 1.4
    # each star draws from (seed, its row): star 1 alone, as row 1 of a call, draws what it did
    again = noisy_draws(flux[1:], tf.constant([[0.0, 1.0, 0.0]]), 50, seed=(1, 2), first=1)
    np.testing.assert_array_equal(again.numpy(), noisy_draws(
        flux, tf.constant([[0.0, 1.0, 0.0]] * 2), 50, seed=(1, 2)).numpy()[50:])


def test_a_mask_is_the_same_as_infinite_errors():
    err = np.array([[1.0, 2.0, 3.0, 5.0], [1.0, np.nan, 2e9, 1.0]], np.float32)
    bad = np.array([[0, 1, 0, 0], [0, 0, 0, 0]], bool)
    e1, b1 = clean_errors(err, bad)
    e2, b2 = clean_errors(mask_into_errors(err, bad))
    np.testing.assert_array_equal(b1.numpy(), b2.numpy())
    np.testing.assert_array_equal(b1.numpy(), [[0, 1, 0, 0], [0, 1, 1, 0]])
    np.testing.assert_array_equal(noise_scale(e1, b1).numpy(), noise_scale(e2, b2).numpy())


@pytest.fixture(scope="module")
def real_spectra(apstar_files):
    specs = [read_apstar(p) for p in apstar_files]
    return tuple(np.stack([getattr(s, k) for s in specs]) for k in ("flux", "err", "bad"))


def test_the_seed_reaches_the_graph(trained_run, real_spectra):
    """Review item 4: the same seed gives the same draws whatever the global random state, and
    whatever the chunking; another seed gives others."""
    flux, err, bad = (a[:3] for a in real_spectra)
    model = load_model(str(trained_run)).model
    mcp = MonteCarloPredictor(model, 16)
    first = mcp(flux, err, bad, seed=(7, 1))
    tf.random.set_seed(123)
    tf.random.normal([5])
    again = mcp(flux, err, bad, seed=(7, 1))
    chunked = MonteCarloPredictor(model, 16, rows_per_chunk=16)(flux, err, bad, seed=(7, 1))
    other = mcp(flux, err, bad, seed=(7, 2))
    for key in ("mean", "std", "p16", "p84"):
        np.testing.assert_array_equal(first[key], again[key])
        np.testing.assert_allclose(first[key], chunked[key], rtol=1e-4)
        assert (first[key] != other[key]).any()


def test_same_seed_same_catalog(trained_run, apstar_files):
    """Review item 4, as a user meets it: infer twice with --seed 3 on one loaded model."""
    loaded = load_model(str(trained_run))
    folder = str(apstar_files[0].parent)
    a = predict_catalog(loaded, [folder], mc=8, batch_size=16, seed=3).catalog
    b = predict_catalog(loaded, [folder], mc=8, batch_size=16, seed=3).catalog
    c = predict_catalog(loaded, [folder], mc=8, batch_size=16, seed=4).catalog
    for col in ("TEFF", "TEFF_ERR", "FE_H_ERR"):
        np.testing.assert_array_equal(np.asarray(a[col]), np.asarray(b[col]))
        assert (np.asarray(a[col]) != np.asarray(c[col])).any()


def test_mc_on_all_real_files_is_finite_and_plausible(real_spectra, trained_run):
    loaded = load_model(str(trained_run))
    flux, err, bad = real_spectra
    assert (err >= 1e9).sum() > 24 * 700  # the 1e10 chip gaps are there
    mcp = MonteCarloPredictor(loaded.model, 100)
    res = mcp(flux, err, bad)
    for key in ("mean", "std", "p16", "p50", "p84"):
        assert res[key].shape == (24, 3) and np.isfinite(res[key]).all(), key
    assert (res["std"] > 0).all()
    # nothing of order 1e9 leaks: sigmas stay well below the label spread of the training set
    assert (res["std"][:, 0] < 3000).all() and (res["std"][:, 1:] < 3).all()
    assert (np.abs(res["mean"][:, 0]) < 1e5).all()
    assert (res["p16"] <= res["p50"]).all() and (res["p50"] <= res["p84"]).all()
    # the sigma comes from the per-pixel noise: zero error gives (almost) zero spread
    quiet = mcp(flux[:2], np.zeros_like(err[:2]), bad[:2])
    assert (quiet["std"] < 1e-3 * res["std"][:2] + 1e-6).all()
    # MC dropout adds its spread in quadrature
    both = MonteCarloPredictor(loaded.model, 100, mc_dropout=True)(flux[:4], err[:4], bad[:4])
    assert (both["std"] >= both["std_dropout"] - 1e-6).all()
    assert (both["std_dropout"] > 0).all()


def test_coverage_and_scale():
    rng = np.random.default_rng(0)
    labels = rng.normal(size=(4000, 3))
    sigma = np.full((4000, 3), 0.25)  # four times too small, as the paper found
    pred = labels + rng.normal(size=(4000, 3))
    cov = coverage(pred, sigma, labels)
    assert (cov < 0.25).all()
    s = fit_scale(pred, sigma, labels)
    assert np.isnan(fit_scale(pred[:4], sigma[:4], labels[:4])).all()  # too few stars
    np.testing.assert_allclose(s, 4.0, rtol=0.08)
    np.testing.assert_allclose(coverage(pred, sigma * s, labels), 0.683, atol=0.01)
    labels[:10, 1] = np.nan
    assert np.isfinite(coverage(pred, sigma, labels)).all()


def test_the_noise_is_tensorflows_stateless_normal():
    """``standard_normal`` is ``tf.random.stateless_normal`` to within float32 rounding: the same
    Philox words, with the Box-Muller transform as vectorised ops (odd lengths too)."""
    from apnet_tf.model.uncertainty import standard_normal

    seed = tf.constant([11, 22], tf.int64)
    for m in (857_500, 63, 1):
        got = tf.function(standard_normal)(seed, m).numpy()
        expect = tf.random.stateless_normal([m], seed=seed).numpy()
        assert got.shape == (m,)
        np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5)
    assert (standard_normal(seed + 1, 63).numpy() != expect).all()
