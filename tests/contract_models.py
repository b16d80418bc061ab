"""The model contract of tests/test_contract_models.py: each check takes a loaded model (a
``model.runtime.Runtime``: Keras, SavedModel or TFLite), what it should be (``Expected``) and
sample inputs (``Inputs``), and raises AssertionError naming what broke.

* ``check_loaded``: the runtime kind, the network's Monte Carlo style and conventions, whether
  it takes photometry, and that an export refuses what only a Keras model can do (another
  precision, MC dropout).
* ``check_predict``: (B, 3) finite float predictions, the numbers of the Keras model it came
  from, the same for one row as in a batch; a two-input model refuses to predict without its
  photometry.
* ``check_monte_carlo``: every summary (``uncertainty.SUMMARIES``) (B, 3) and finite, sigma
  positive where there is noise; the same seed gives the same numbers, another seed others, and
  the numbers of the Keras model for the same seed.
* ``check_calibration``: with a calibration, the catalog's sigmas are the calibrated ones
  (``uniform_calibration``: sigma = sqrt((noise sigma_MC)^2 + floor^2) everywhere) and say so;
  without one, asking for calibrated sigmas is one ApnetError, and the raw sigmas come back.
* ``check_metadata``: an export carries its metadata (inputs, conventions, targets, calibration,
  Monte Carlo draws), and the notebook API describes the model as what it is.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Expected", "Inputs", "make_inputs", "uniform_calibration", "check_loaded",
           "check_predict", "check_monte_carlo", "check_calibration", "check_metadata"]

#: How far an export's numbers may be from its Keras model's: K, dex, dex (the TFLite parity
#: bounds of tests/test_export.py), and a relative 1% for sigmas.
ATOL = np.array([0.5, 1e-3, 1e-3])
SIGMA_RTOL = 0.01
#: A calibration that is the same in every Kiel region and at every S/N.
CAL_NOISE, CAL_FLOOR = (2.0, 3.0, 1.5), (40.0, 0.05, 0.02)


@dataclasses.dataclass(frozen=True)
class Expected:
    """What a model of one kind and runtime is: its ``kind`` ("keras", "saved_model",
    "tflite"), network (``mc_style``: "apnet", "anet1", "anet2"), whether it takes photometry,
    and the reference it must agree with: the Keras runtime of the same run (None for that
    runtime itself, which is compared with ``keras_model`` directly)."""

    kind: str
    network: str
    takes_photometry: bool
    reference: object
    keras_model: object = None


@dataclasses.dataclass(frozen=True)
class Inputs:
    """B spectra: flux, err (B, 8575), bad (B, 8575) bool, photometry (B, 7) or None, S/N."""

    flux: np.ndarray
    err: np.ndarray
    bad: np.ndarray
    photometry: np.ndarray | None
    snr: np.ndarray


def make_inputs(n: int, photometry: np.ndarray | None, seed: int = 0) -> Inputs:
    """``n`` spectra of positive flux with noise, a run of masked pixels in spectrum 1."""
    from apnet_tf.constants import N_PIXELS

    rng = np.random.default_rng(seed)
    flux = rng.uniform(50.0, 150.0, (n, N_PIXELS)).astype(np.float32)
    err = rng.uniform(1.0, 4.0, (n, N_PIXELS)).astype(np.float32)
    bad = np.zeros((n, N_PIXELS), bool)
    bad[min(1, n - 1), 2000:2600] = True
    return Inputs(flux, err, bad, photometry, np.full(n, 60.0))


def uniform_calibration():
    """A valid calibration (``model.calibration.Calibration``) with no S/N terciles and the
    same noise and floor in every region: its sigma is known without its regions."""
    from apnet_tf.model.calibration import KEYS, Calibration

    return Calibration.from_dict({
        "noise": {k: list(CAL_NOISE) for k in KEYS}, "floor": {k: list(CAL_FLOOR) for k in KEYS},
        "snr_factor": {k: [[1.0] * 3] * 3 for k in KEYS}, "snr_edges": [None, None],
        "stars": {k: 10 for k in KEYS}, "shape_split": "dev", "mc": 4, "seed": 0,
        "dev_stars": 10, "coverage_dev_raw": [0.3] * 3, "coverage_dev_calibrated": [0.68] * 3,
        "coverage_dev_held_out": [0.66] * 3, "targets": ["teff", "logg", "fe_h"],
        "format": "apnet-tf calibration 4"})


def _close(got, want, what: str, atol=ATOL, rtol=0.0) -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    diff = np.abs(got - want)
    ok = diff <= atol + rtol * np.abs(want)
    assert ok.all(), f"{what}: {int((~ok).sum())} of {ok.size} values differ (at most {diff.max()})"


def check_loaded(model, want: Expected) -> None:
    from apnet_tf.errors import ApnetError

    assert model.kind == want.kind, f"loaded as a {model.kind} model, expected {want.kind}"
    assert model.mc_style == want.network, \
        f"{want.kind}: Monte Carlo style {model.mc_style!r}, expected {want.network!r}"
    arch = (model.conventions or {}).get("arch")
    assert arch == (None if want.network == "apnet" else want.network), \
        f"{want.kind}: conventions of {arch!r}, expected those of {want.network!r}"
    assert model.takes_photometry is want.takes_photometry, \
        f"{want.kind}: takes_photometry is {model.takes_photometry}"
    assert model.in_precision(model.precision) is model
    if want.kind == "keras":
        twin = model.in_precision("mixed_bfloat16")
        assert twin.precision == "mixed_bfloat16" and twin.kind == "keras"
        return
    for refused in (lambda: model.in_precision("mixed_bfloat16"),
                    lambda: model.refuse_mc_dropout(True)):
        try:
            refused()
        except ApnetError as exc:
            assert model.path in str(exc) and "\n" not in str(exc), str(exc)
        else:
            raise AssertionError(f"{want.kind}: another precision or MC dropout not refused")


def _keras_predict(want: Expected, x: Inputs) -> np.ndarray:
    if want.reference is not None:
        return want.reference.predict(x.flux, x.photometry)
    inputs = x.flux if x.photometry is None else [x.flux, x.photometry.astype(np.float32)]
    return np.asarray(want.keras_model(inputs, training=False))


def check_predict(model, want: Expected, x: Inputs) -> None:
    from apnet_tf.errors import ApnetError

    got = model.predict(x.flux, x.photometry)
    n = len(x.flux)
    assert isinstance(got, np.ndarray) and got.shape == (n, 3), \
        f"{want.kind}: predict gives {type(got).__name__} {getattr(got, 'shape', None)}"
    assert np.isfinite(got).all(), f"{want.kind}: non-finite predictions"
    _close(got, _keras_predict(want, x), f"{want.kind} predict vs its Keras model")
    one = model.predict(x.flux[-1:], None if x.photometry is None else x.photometry[-1:])
    _close(one, got[-1:], f"{want.kind}: one row alone vs in a batch")
    if want.takes_photometry:
        try:
            model.predict(x.flux)
        except ApnetError as exc:
            assert "photometry" in str(exc), str(exc)
        else:
            raise AssertionError(f"{want.kind}: a two-input model predicted without photometry")


def _summaries(model, x: Inputs, mc: int, seed) -> dict:
    return model.monte_carlo(x.flux, x.err, x.bad, mc, seed=seed, photometry=x.photometry)


def check_monte_carlo(model, want: Expected, x: Inputs, mc: int = 4) -> dict:
    """The checks of the module docstring; returns the summaries of seed (3, 1)."""
    from apnet_tf.model.uncertainty import SUMMARIES

    res = _summaries(model, x, mc, (3, 1))
    assert set(res) == set(SUMMARIES), \
        f"{want.kind}: Monte Carlo summaries {sorted(res)}, expected {sorted(SUMMARIES)}"
    for key in SUMMARIES:
        assert res[key].shape == (len(x.flux), 3), f"{want.kind}: {key} {res[key].shape}"
        assert np.isfinite(res[key]).all(), f"{want.kind}: non-finite {key}"
    assert (res["std"] > 0).all(), f"{want.kind}: a zero sigma from noisy spectra"
    assert (res["p16"] <= res["p84"]).all(), f"{want.kind}: p16 above p84"
    again = _summaries(model, x, mc, (3, 1))
    for key in SUMMARIES:
        assert np.array_equal(again[key], res[key]), \
            f"{want.kind}: the same seed gave other {key} values"
    other = _summaries(model, x, mc, (4, 1))
    assert not np.array_equal(other["std"], res["std"]), \
        f"{want.kind}: another seed gave the same sigmas"
    if want.reference is not None:
        ref = _summaries(want.reference, x, mc, (3, 1))
        for key in ("value", "mean", "p16", "p50", "p84"):
            _close(res[key], ref[key], f"{want.kind} {key} vs Keras, same seed")
        _close(res["std"], ref["std"], f"{want.kind} std vs Keras, same seed", atol=1e-6,
               rtol=SIGMA_RTOL)
    return res


def _catalog(model, x: Inputs, calibrated, mc: int = 4):
    from apnet_tf.inference.arrays import array_batch, predict_arrays
    from apnet_tf.inference.settings import InferenceSettings

    batch = array_batch(x.flux, x.err, x.bad, x.snr, photometry=x.photometry)
    settings = InferenceSettings(mc=mc, seed=5, calibrated=calibrated)
    return predict_arrays(model, batch, settings).catalog


def _errors(catalog) -> np.ndarray:
    return np.stack([np.asarray(catalog[c], np.float64)
                     for c in ("TEFF_ERR", "LOGG_ERR", "FE_H_ERR")], axis=1)


def check_calibration(model, want: Expected, x: Inputs) -> None:
    """``model`` loaded with ``uniform_calibration``; its twin without (calibration unread)."""
    from apnet_tf.errors import ApnetError

    assert model.calibration is not None, f"{want.kind}: the run's calibration was not loaded"
    assert model.calibration.to_dict() == uniform_calibration().to_dict(), \
        f"{want.kind}: a calibration other than the run's"
    raw = _catalog(model, x, calibrated=False)
    cal = _catalog(model, x, calibrated=None)
    assert raw.meta["SIGMA"] == "raw MC" and cal.meta["SIGMA"] == "calibrated", \
        f"{want.kind}: SIGMA {raw.meta['SIGMA']!r}, {cal.meta['SIGMA']!r}"
    for col in ("TEFF", "LOGG", "FE_H"):
        assert np.array_equal(np.asarray(raw[col]), np.asarray(cal[col])), \
            f"{want.kind}: calibration changed {col}"
    expect = np.sqrt((np.array(CAL_NOISE) * _errors(raw)) ** 2 + np.array(CAL_FLOOR) ** 2)
    _close(_errors(cal), expect, f"{want.kind}: calibrated sigma", atol=0.0, rtol=1e-5)
    bare = dataclasses.replace(model, calibration=None)
    try:
        _catalog(bare, x, calibrated=True)
    except ApnetError as exc:
        assert "calibrat" in str(exc) and "\n" not in str(exc), str(exc)
    else:
        raise AssertionError(f"{want.kind}: calibrated sigmas without a calibration not refused")
    plain = _catalog(bare, x, calibrated=None)
    assert plain.meta["SIGMA"] == "raw MC", f"{want.kind}: {plain.meta['SIGMA']!r}"
    _close(_errors(plain), _errors(raw), f"{want.kind}: raw sigma", atol=0.0, rtol=0.0)


def check_metadata(model, want: Expected, keras_runtime) -> None:
    """Exports: export_metadata.json as the run was. Every runtime: ``api.Model.info``."""
    from apnet_tf.api import Model
    from apnet_tf.constants import N_PIXELS, TARGETS

    info = Model(model).info
    assert (info.runtime, info.network) == (want.kind, want.network), \
        f"info says {info.runtime} {info.network}"
    assert info.published is (want.network != "apnet") and info.calibration is not None
    assert info.label_range == keras_runtime.label_range(), f"{want.kind}: other label range"
    if want.kind == "keras":
        return
    meta = model.metadata
    assert isinstance(meta, dict), f"{want.kind}: no export metadata"
    inputs = {"flux": [None, N_PIXELS], "err": [None, N_PIXELS]}
    if want.takes_photometry:
        inputs["photometry"] = [None, 7]
    assert meta.get("inputs") == inputs, f"{want.kind}: inputs {meta.get('inputs')}"
    assert meta.get("conventions") == keras_runtime.conventions, \
        f"{want.kind}: the export's conventions are not its run's"
    assert meta.get("targets") == list(TARGETS)
    assert meta.get("calibration") == "calibration.json"
    assert isinstance(meta.get("mc"), int) and meta["mc"] >= 2
    for key in ("name", "version", "source", "created", "tensorflow", "signatures"):
        assert meta.get(key), f"{want.kind}: export metadata without {key}"
