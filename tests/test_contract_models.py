"""Every model kind x every runtime through one contract (``contract_models``): load, predict,
Monte Carlo shapes and seed reproducibility, calibration applied or refused, metadata present.

Kinds: the package's own layout (``apnet``) and the published APOGEE Net I and II layouts
(``anet1``, ``anet2``), each with seeded random weights, a normalisation (``apnet``) and a
calibration, in a run folder exported once (SavedModel and a float32 TFLite file). The YSO
photometric network has one runtime (Keras, ``labels.yso``), no Monte Carlo and no calibration:
its contract is load, predict, metadata, and that the spectral loader refuses it. APOGEE Net III
and BOSS Net (``model.bossnet``) have no runtime of ``model.loading`` yet (their parity tests
are tests/test_bossnet.py): ``test_every_network_is_in_the_contract`` makes whoever gives them
one add them here.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from contract_models import (
    Expected,
    check_calibration,
    check_loaded,
    check_metadata,
    check_monte_carlo,
    check_predict,
    make_inputs,
    uniform_calibration,
)
from published_weights import photometry_for

KINDS = ("apnet", "anet1", "anet2")
RUNTIMES = ("keras", "saved_model", "tflite")
#: Networks of the package that ``model.loading`` cannot load, and where they are tested.
NO_RUNTIME = {"anet3": "tests/test_bossnet.py", "bossnet": "tests/test_bossnet.py"}
B = 3  # spectra per check
_MEAN, _STD = [4700.0, 2.9, -0.2], [730.0, 1.2, 0.3]
_MIN, _MAX = [3100.0, -0.4, -2.4], [7900.0, 5.2, 0.6]  # as fit writes a training range


def _build(kind: str):
    import keras

    from apnet_tf.model.network import build_model
    from apnet_tf.model.published import build_published

    keras.utils.set_random_seed(KINDS.index(kind) + 1)
    return build_model(_MEAN, _STD) if kind == "apnet" else build_published(kind)


@pytest.fixture(scope="module", params=KINDS)
def bundle(request, tmp_path_factory):
    """One kind: its Keras model, its run folder (best.keras, normalization.json for apnet,
    calibration.json) and that run exported once; the three runtimes loaded from them."""
    from apnet_tf.export.model_export import export_model
    from apnet_tf.model.loading import load_model
    from apnet_tf.model.network import save_model_atomic

    kind = request.param
    model = _build(kind)
    run = tmp_path_factory.mktemp(f"{kind}_run")
    save_model_atomic(model, str(run / "best.keras"))
    if kind == "apnet":
        (run / "normalization.json").write_text(json.dumps(
            {"targets": ["teff", "logg", "fe_h"], "mean": _MEAN, "std": _STD, "min": _MIN,
             "max": _MAX}))
    uniform_calibration().save(str(run / "calibration.json"))
    out = tmp_path_factory.mktemp(f"{kind}_export") / kind
    export_model(str(run), str(out), tflite=("float32",), mc=4)
    paths = {"keras": run, "saved_model": out, "tflite": out / f"{kind}_float32.tflite"}
    runtimes = {r: load_model(str(p)) for r, p in paths.items()}
    phot = photometry_for(B).astype(np.float32) if kind == "anet2" else None
    return kind, model, runtimes, make_inputs(B, phot)


@pytest.fixture(params=RUNTIMES)
def loaded(request, bundle):
    kind, model, runtimes, inputs = bundle
    runtime = request.param
    want = Expected(runtime, kind, kind == "anet2",
                    None if runtime == "keras" else runtimes["keras"], model)
    return runtimes[runtime], want, inputs, runtimes["keras"]


def test_load(loaded):
    model, want, _, _ = loaded
    check_loaded(model, want)


def test_predict(loaded):
    model, want, x, _ = loaded
    check_predict(model, want, x)


def test_monte_carlo_shapes_and_seeds(loaded):
    model, want, x, _ = loaded
    check_monte_carlo(model, want, x)


def test_calibration_applied_or_refused(loaded):
    model, want, x, _ = loaded
    check_calibration(model, want, x)


def test_metadata_present(loaded):
    model, want, _, keras_runtime = loaded
    check_metadata(model, want, keras_runtime)


def test_every_network_is_in_the_contract():
    """A network layout the package builds is either a kind here or named in NO_RUNTIME (and
    then ``load_model`` must not take it for another)."""
    from apnet_tf.model.bossnet import BOSS_ARCHS
    from apnet_tf.model.published import ARCHS
    from apnet_tf.model.uncertainty import MC_STYLES

    assert set(ARCHS) | set(MC_STYLES) <= set(KINDS)
    assert set(BOSS_ARCHS) <= set(KINDS) | set(NO_RUNTIME)


# --- The YSO photometric network: Keras only, no Monte Carlo or calibration.


@pytest.fixture(scope="module")
def yso_folder(tmp_path_factory):
    import keras

    from apnet_tf.labels.yso import FEATURES, OUTPUTS, TrainResult, build_network, save_network

    keras.utils.set_random_seed(4)
    rng = np.random.default_rng(4)
    x = rng.uniform(8.0, 16.0, (32, len(FEATURES))).astype(np.float32)
    x[:, -1] = rng.uniform(100.0, 500.0, 32)
    y = rng.normal(0.0, 1.0, (32, len(OUTPUTS))).astype(np.float32)
    model = build_network(x, y, filters=(4, 4, 4), dense=8)
    out = tmp_path_factory.mktemp("yso_net")
    save_network(TrainResult(model, {"n": 0}, {"features": list(FEATURES),
                                                "outputs": list(OUTPUTS), "seed": 4}), str(out))
    return out, model, x[:B]


def test_yso_network_load_predict_metadata(yso_folder):
    from apnet_tf.labels.yso import FEATURES, OUTPUTS, load_network, predict

    folder, model, x = yso_folder
    loaded, info = load_network(str(folder))
    got = predict(loaded, x)
    assert got.shape == (B, len(OUTPUTS)) and np.isfinite(got).all()
    np.testing.assert_allclose(got, predict(model, x), rtol=1e-6)
    assert np.array_equal(predict(loaded, x[:1]), got[:1])
    assert info["features"] == list(FEATURES) and info["outputs"] == list(OUTPUTS)
    assert "held_out" in info


def test_the_spectral_loader_refuses_the_yso_network(yso_folder):
    from apnet_tf.errors import ApnetError
    from apnet_tf.model.loading import load_model

    folder, _, _ = yso_folder
    with pytest.raises(ApnetError, match="not a run folder"):
        load_model(str(folder))
    with pytest.raises(ApnetError, match=r"network.keras: not a network of apStar spectra "
                                         r"\(input \(None, 12\), output \(None, 5\)"):
        load_model(str(folder / "network.keras"))


# --- The contract can fail: a runtime that drops the seed, one that loses the calibration,
# one that predicts the wrong rows, an export whose metadata lost its conventions.


def _broken(model, name: str, **methods):
    """``model`` (a copy) as an instance of a subclass overriding ``methods``."""
    cls = type(f"{name}{type(model).__name__}", (type(model),), methods)
    broken = dataclasses.replace(model)
    broken.__class__ = cls
    return broken


def test_the_contract_catches_broken_runtimes(bundle):
    kind, model, runtimes, x = bundle
    if kind != "apnet":
        pytest.skip("one kind shows it")
    tflite, keras_rt = runtimes["tflite"], runtimes["keras"]
    want = Expected("tflite", kind, False, keras_rt, model)
    drops_seed = _broken(tflite, "DropsSeed", monte_carlo=lambda self, *a, seed=0, **k:
                         type(tflite).monte_carlo(self, *a, seed=None, **k))
    with pytest.raises(AssertionError, match="the same seed gave other"):
        check_monte_carlo(drops_seed, want, x)
    with pytest.raises(AssertionError, match="calibration was not loaded"):
        check_calibration(dataclasses.replace(tflite, calibration=None), want, x)
    reversed_rows = _broken(tflite, "ReversedRows", predict=lambda self, f, p=None:
                            type(tflite).predict(self, f[::-1], p))
    with pytest.raises(AssertionError, match="predict vs its Keras model"):
        check_predict(reversed_rows, want, x)
    lost = dataclasses.replace(tflite, metadata={**tflite.metadata, "conventions": {"arch": 1}})
    with pytest.raises(AssertionError, match="conventions are not its run's"):
        check_metadata(lost, want, keras_rt)
