"""``infer --precision``: float32 as before, a bfloat16 twin of the network, and what auto
decides from the shift it measures on the job's first spectra."""

import numpy as np
import pytest
from astropy.io import fits
from cli_helpers import assert_one_line_error, cli

from apnet_tf.constants import AUTO_MAX_SHIFT, AUTO_MEDIAN_SHIFT
from apnet_tf.data.planning import plan_units
from apnet_tf.data.readers import read_unit
from apnet_tf.errors import ApnetError
from apnet_tf.inference.predict import job_precision, predict_catalog
from apnet_tf.io.catalog import write_catalog
from apnet_tf.model import precision as precision_module
from apnet_tf.model.loading import load_model
from apnet_tf.model.precision import auto_choice, auto_line, label_spread, precision_shift
from apnet_tf.model.saved_model_runtime import SavedModelRuntime

SPREAD = np.array([730.0, 1.2, 0.3])  # the untrained run's normalization.json std


def _first_batch(folder):
    plan = plan_units([str(folder)], 16)
    return plan, read_unit(plan.units[0])[0]


@pytest.mark.parametrize("median,largest,choice", [
    ((0.5, 0.5, 0.5), (5.0, 5.0, 5.0), "mixed_bfloat16"),  # well inside both bounds (x 1e-3)
    ((1.0, 0.2, 0.2), (2.0, 2.0, 2.0), "mixed_bfloat16"),  # a median on its bound
    ((1.01, 0.2, 0.2), (2.0, 2.0, 2.0), "float32"),  # a median just over
    ((0.2, 0.2, 0.2), (2.0, 10.0, 2.0), "mixed_bfloat16"),  # a maximum on its bound
    ((0.2, 0.2, 0.2), (2.0, 2.0, 10.1), "float32"),  # a maximum just over
    ((0.2, np.nan, 0.2), (2.0, 2.0, 2.0), "float32"),  # nothing measured
])
def test_auto_choice_follows_both_bounds(median, largest, choice):
    assert (AUTO_MEDIAN_SHIFT, AUTO_MAX_SHIFT) == (0.001, 0.01)
    assert auto_choice(np.array(median) * 1e-3, np.array(largest) * 1e-3) == choice


def test_shift_is_in_units_of_each_labels_spread():
    ref = np.zeros((4, 3))
    trial = np.array([[7.3, 0.0, 0.0], [0.0, 0.012, 0.0], [0.0, 0.0, 0.0], [np.nan, 0, 0]])
    median, largest = precision_shift(ref, trial, SPREAD)
    np.testing.assert_allclose(largest, [0.01, 0.01, 0.0])  # the NaN row is left out
    np.testing.assert_allclose(median, [0.0, 0.0, 0.0])
    line = auto_line("float32", [0.0004, 0.0, 0.0], [0.012, 0.0, 0.0])
    assert line.startswith("auto -> float32 (median shift 0.040%, max 1.20% of spread")


def test_a_bad_precision_is_refused_before_any_work(small_survey, untrained_run, tmp_path):
    out = tmp_path / "cat.csv"
    res = cli("infer", "--model", untrained_run, "--spectra", small_survey, "--out", out,
              "--precision", "float16")
    line = assert_one_line_error(res, "--precision float16", "float32, mixed_bfloat16, auto")
    assert not out.exists() and not (tmp_path / "cat.csv.parts").exists(), line
    with pytest.raises(ApnetError, match="--precision float16"):
        predict_catalog(load_model(str(untrained_run)), [str(small_survey)], precision="float16")
    exported = SavedModelRuntime(saved=None, path="apogee_net/1")
    with pytest.raises(ApnetError, match="apogee_net/1: --precision mixed_bfloat16 needs a "
                                         "Keras model"):
        exported.in_precision("mixed_bfloat16")
    assert exported.in_precision("float32") is exported


def test_float32_is_the_model_as_before(small_survey, untrained_run):
    loaded = load_model(str(untrained_run))
    assert loaded.in_precision("float32") is loaded
    plan, batch = _first_batch(small_survey)
    cat = predict_catalog(loaded, [str(small_survey)], mc=0, batch_size=16,
                          precision="float32").catalog
    expect = np.asarray(loaded.model(batch.flux, training=False))  # Keras itself, eagerly
    assert {w.dtype for w in loaded.model.weights} == {"float32"}
    np.testing.assert_allclose(np.stack([cat[c][:len(expect)] for c in ("TEFF", "LOGG",
                                                                         "FE_H")], 1),
                               expect, rtol=1e-6)
    assert cat.meta["PRECISN"] == "float32"


def test_mixed_bfloat16_stays_near_float32_plain_and_mc(small_survey, untrained_run, tmp_path):
    loaded = load_model(str(untrained_run))
    f32 = predict_catalog(loaded, [str(small_survey)], mc=8, seed=1, batch_size=16)
    bf16 = predict_catalog(loaded, [str(small_survey)], mc=8, seed=1, batch_size=16,
                           precision="mixed_bfloat16")
    assert f32.catalog.meta["PRECISN"] == "float32" and bf16.precision == ""
    for k, col in enumerate(("TEFF", "LOGG", "FE_H")):
        shift = np.abs(np.asarray(bf16.catalog[col]) - np.asarray(f32.catalog[col]))
        assert shift.max() < 0.05 * SPREAD[k] and shift.max() > 0, col  # bfloat16 did run
        np.testing.assert_allclose(bf16.catalog[f"{col}_ERR"], f32.catalog[f"{col}_ERR"],
                                   atol=0.01 * SPREAD[k])
    # the Monte Carlo draws run in the same precision as plain: without noise (zero errors)
    # their mean is the bfloat16 prediction (up to a kernel's choice for another batch
    # size), not the float32 one
    plan, batch = _first_batch(small_survey)
    twin = loaded.in_precision("mixed_bfloat16")
    assert {layer.compute_dtype for layer in twin.model.layers} == {"float32", "bfloat16"}
    quiet = twin.monte_carlo(batch.flux, np.zeros_like(batch.err), batch.bad, 2, seed=0)
    plain16, plain32 = twin.predict(batch.flux), loaded.predict(batch.flux)
    off = np.abs(quiet["mean"] - plain16) / SPREAD
    assert np.median(off) == 0 and off.sum() < 0.2 * (np.abs(plain32 - plain16) / SPREAD).sum()
    path = str(tmp_path / "cat.fits")
    write_catalog(bf16.catalog, path)
    header = fits.getheader(path, 1)
    assert header["PRECISN"] == "mixed_bfloat16"
    assert "precision" in header.comments["PRECISN"]


@pytest.mark.parametrize("native", [False, True])
def test_auto_measures_on_the_jobs_first_spectra(small_survey, untrained_run, monkeypatch,
                                                 native):
    # the machine's answer, for auto's rule (model.precision), which infer asks too
    monkeypatch.setattr(precision_module, "bfloat16_is_native", lambda: native)
    loaded = load_model(str(untrained_run))
    plan, batch = _first_batch(small_survey)
    model, line = job_precision(loaded, plan, "auto")
    if not native:
        assert model is loaded and line == ("auto -> float32 (this machine has no bfloat16 "
                                            "hardware)")
        return
    # what auto must have measured, worked out here: each label's shift between the float32
    # network and its bfloat16 twin on the job's first batch, in units of the label's spread
    twin = loaded.in_precision("mixed_bfloat16")
    shift = np.abs(twin.predict(batch.flux) - loaded.predict(batch.flux)) / SPREAD
    median, largest = np.median(shift, axis=0), shift.max(axis=0)
    assert largest.max() > 0  # bfloat16 did run
    choice = ("mixed_bfloat16" if (median <= 0.001).all() and (largest <= 0.01).all()
              else "float32")
    assert line == (f"auto -> {choice} (median shift {100 * median.max():.3f}%, max "
                    f"{100 * largest.max():.2f}% of spread, worst label; bound 0.1% and 1%)")
    assert model.precision == choice
    # the bounds decide: a bound below the measured shift turns bfloat16 down
    monkeypatch.setattr(precision_module, "auto_choice",
                        lambda m, x: auto_choice(m, x, median_bound=np.min(median) / 2))
    model, line = job_precision(loaded, plan, "auto")
    assert model is loaded and line.startswith("auto -> float32 (median shift")
    result = predict_catalog(loaded, [str(small_survey)], mc=0, batch_size=16,
                             precision="auto")
    assert result.precision.startswith("auto -> float32 (median shift")
    assert result.catalog.meta["PRECISN"] == "float32"


def test_bossnet_spread_has_one_entry_per_output_rv_included():
    """BOSS Net outputs RV beside the three labels of its normalization.json: auto's shift
    (precision_shift of (B, 4) predictions) needs RV's spread too, or it cannot be computed
    (``infer --precision auto`` on BOSS Net stopped with a broadcasting traceback)."""
    from apnet_tf.model.bossnet import BOSSNET_STD, build_bossnet

    model = build_bossnet("bossnet", n_pixels=120, pool_size=8, linear_dim=8)
    normalization = {"targets": ["teff", "logg", "fe_h"], "std": [1452.8, 0.9, 0.5]}
    spread = label_spread(normalization, model)
    np.testing.assert_allclose(spread, [1452.8, 0.9, 0.5, BOSSNET_STD[3]])
    flux = np.random.default_rng(0).uniform(1.0, 2.0, (3, 120)).astype(np.float32)
    out = model.predict(flux, verbose=0)
    median, largest = precision_shift(out, out + spread / 100, spread)
    np.testing.assert_allclose(largest, 0.01, rtol=1e-6)
    anet3 = build_bossnet("anet3", n_pixels=120, pool_size=8, linear_dim=8)
    np.testing.assert_allclose(label_spread(normalization, anet3), [1452.8, 0.9, 0.5])
