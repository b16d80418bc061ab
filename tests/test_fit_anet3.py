"""Training APOGEE Net III's layout here (fit --arch anet3) and what runs on the trained run:
infer with the package's Monte Carlo and calibration, calibrate, export (SavedModel, TFLite).

The network has 72.6 M parameters, so one run, trained for one epoch, serves every test."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from astropy.table import Table
from cli_helpers import assert_one_line_error, cli

from apnet_tf.model.bossnet import TRAINABLE_ANET3, build_bossnet

#: Parameters of the authors' APOGEE class (3 outputs), measured on their code (BatchNorm's
#: running statistics are buffers there, not parameters).
AUTHORS_PARAMETERS = 72_606_495


@pytest.fixture(scope="module")
def anet3_run(records, tmp_path_factory):
    """A run folder of fit --arch anet3, pretrained for one epoch on the 150-star records."""
    from apnet_tf.training.fitting import fit
    from apnet_tf.training.recipes import get_recipe

    run = tmp_path_factory.mktemp("anet3_run")
    fit(str(records), str(run), stage="pretrain", arch="anet3",
        recipe=get_recipe("default", epochs=1, batch_size=16))
    return run


@pytest.fixture(scope="module")
def few_spectra(survey, tmp_path_factory):
    """Twelve apStar files of the 150-star survey."""
    out = tmp_path_factory.mktemp("anet3_spectra")
    for path in sorted(survey.glob("apStar-*.fits"))[:12]:
        shutil.copy(path, out)
    return out


@pytest.mark.slow
def test_fit_anet3_trains_the_authors_layout(anet3_run, records):
    import keras

    record = json.loads((anet3_run / "run.json").read_text())
    assert record["arch"] == "anet3" and record["stages"] == ["pretrain"]
    assert record["recipe"]["dropout"] == 0.0 and record["recipe"]["input_scaling"] == "none"
    assert "BOSS Net" in record["network"]["layout"]
    model = keras.models.load_model(anet3_run / "best.keras")
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert model.name == TRAINABLE_ANET3 and trainable == AUTHORS_PARAMETERS
    # the authors' layers, one for one, up to the last Linear; the targets are the package's
    published = build_bossnet("anet3")
    body = [(layer.name, [tuple(w.shape) for w in layer.weights]) for layer in model.layers]
    theirs = [(layer.name, [tuple(w.shape) for w in layer.weights])
              for layer in published.layers]
    assert body[:-1] == theirs[:-1] and body[-1][0] == "labels"
    norm = json.loads((anet3_run / "normalization.json").read_text())
    assert model.get_layer("labels").mean == norm["mean"]
    assert not any("dropout" in layer.name for layer in model.layers)
    assert (anet3_run / "table3.csv").exists() or (anet3_run / "history.csv").exists()
    # fine-tuning continues the run's network; another --arch is refused before any work
    assert_one_line_error(cli("fit", "--records", records, "--out", anet3_run, "--stage",
                              "finetune", "--arch", "apnet"), "--arch anet3")


@pytest.mark.parametrize("flags", [("--dropout", "0.1"), ("--input-scaling", "mean"),
                                   ("--refit-last-layer",)])
def test_fit_anet3_refuses_the_flags_it_would_not_use(flags, small_records, tmp_path):
    flag = flags[0]
    res = cli("fit", "--records", small_records, "--out", tmp_path / "run", "--arch", "anet3",
              *flags, "--epochs", 1)
    assert_one_line_error(res, flag, "--arch anet3")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_calibrate_and_infer_on_the_anet3_run(anet3_run, records, few_spectra, tmp_path):
    res = cli("calibrate", "--model", anet3_run, "--records", records, "--mc", 2,
              "--stars-per-stratum", 0)
    assert res.exit_code == 0, res.output
    assert (anet3_run / "calibration.json").exists()
    res = cli("infer", "--model", anet3_run, "--spectra", few_spectra, "--out",
              tmp_path / "cat.fits", "--mc", 3, "--seed", 1)
    assert res.exit_code == 0, res.output
    assert "sigma: calibrated" in res.stdout
    cat = Table.read(tmp_path / "cat.fits")
    assert len(cat) == 12
    for col in ("TEFF", "LOGG", "FE_H", "TEFF_ERR", "LOGG_ERR", "FE_H_ERR"):
        assert np.isfinite(cat[col]).all(), col
    assert (cat["TEFF_ERR"] > 0).all()
    # the catalog's values are the package's Monte Carlo mean (paper 3.5): near the plain
    # pass, not equal to it
    plain = cli("infer", "--model", anet3_run, "--spectra", few_spectra, "--out",
                tmp_path / "plain.fits", "--mc", 0)
    assert plain.exit_code == 0, plain.output
    spread = np.asarray(json.loads((anet3_run / "normalization.json").read_text())["std"])
    moved = np.abs(np.asarray(Table.read(tmp_path / "plain.fits")["TEFF"]) - cat["TEFF"])
    assert moved.max() > 0 and moved.max() < 0.2 * spread[0]
    # BatchNorm and no dropout: MC dropout has nothing to sample; one line, no traceback
    res = cli("infer", "--model", anet3_run, "--spectra", few_spectra, "--out",
              tmp_path / "drop.fits", "--mc", 2, "--mc-dropout")
    assert_one_line_error(res, "MC dropout", "BatchNorm")


@pytest.mark.slow
def test_export_of_the_anet3_run(anet3_run, records, tmp_path):
    from apnet_tf.data.planning import plan_units
    from apnet_tf.data.readers import read_unit
    from apnet_tf.model.loading import load_model

    res = cli("export", "--model", anet3_run, "--out", tmp_path / "exp", "--tflite", "float32")
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "exp" / "export_metadata.json").read_text())
    assert meta["inputs"] == {"flux": [None, 8575], "err": [None, 8575]}
    assert meta["conventions"] is None and meta["targets"] == ["teff", "logg", "fe_h"]
    batch, _ = read_unit(plan_units([str(records)]).units[0])
    flux, err, bad = batch.flux[:4], batch.err[:4], batch.bad[:4]
    keras_model = load_model(str(anet3_run))
    expect = keras_model.predict(flux)
    spread = np.asarray(meta["target_std"])
    # TFLite's float32 kernels sum the 65,536 inputs of the first Linear in another order: a
    # few 1e-4 of the spread on this one-epoch network's outputs (6-10 spreads from the mean)
    for path, atol in ((tmp_path / "exp", 1e-4), (tmp_path / "exp" / "exp_float32.tflite", 1e-3)):
        served = load_model(str(path))
        assert served.mc_style == "apnet"
        np.testing.assert_allclose(served.predict(flux) / spread, expect / spread, rtol=0,
                                   atol=atol, err_msg=str(path))
    # the SavedModel's Monte Carlo is the Keras model's, draw for draw
    saved = load_model(str(tmp_path / "exp"))
    a = keras_model.monte_carlo(flux, err, bad, 3, seed=5)
    b = saved.monte_carlo(flux, err, bad, 3, seed=5)
    assert (np.abs(a["std"] - b["std"]) / spread).max() < 1e-4
