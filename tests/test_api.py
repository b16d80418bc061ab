"""The notebook API: apnet_tf.load, Model.predict and predict_files give the table infer writes,
whatever runs the model; apnet_tf.fit and make_records; import apnet_tf stays light."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from cli_helpers import cli

import apnet_tf
from apnet_tf.errors import ApnetError
from apnet_tf.io.catalog_flags import BAD_BITS, flag_value

MC, SEED = 5, 11


@pytest.fixture(scope="module")
def models(trained_run, tmp_path_factory) -> dict:
    """The trained run, its SavedModel and its float32 .tflite file: runtime -> path."""
    from apnet_tf.export.model_export import export_model

    out = tmp_path_factory.mktemp("api_export")
    meta = export_model(str(trained_run), str(out), tflite=["float32"], mc=MC)
    return {"keras": str(trained_run), "saved_model": str(out / str(meta["version"])),
            "tflite": str(out / meta["tflite"]["float32"]["file"])}


def _values(col) -> np.ndarray:
    """A column's values, a masked text cell (how ECSV reads an empty string) as ""."""
    values = getattr(col, "value", col)
    if hasattr(values, "filled"):
        values = values.filled("" if values.dtype.kind in "OUS" else np.nan)
    return np.asarray(values)


def _assert_same_table(got, want, skip=()) -> None:
    """Same columns in the same order, same units, same values (NaN where NaN)."""
    assert got.colnames == want.colnames
    for name in got.colnames:
        assert getattr(got[name], "unit", None) == getattr(want[name], "unit", None), name
        if name in skip:
            continue
        a, b = _values(got[name]), _values(want[name])
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(a, b.astype(a.dtype), err_msg=name)
        else:
            assert a.astype(str).tolist() == b.astype(str).tolist(), name


def _infer(model: str, out, *args) -> None:
    res = cli("infer", "--model", model, "--out", out, "--seed", SEED, "--workers", 0, *args)
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("runtime", ["keras", "saved_model", "tflite"])
def test_predict_files_is_the_table_infer_writes(models, runtime, apstar_files, tmp_path):
    """On the 24 real DR13 files: the columns, units, flags, numbers and header of infer's
    catalog, from a run folder, a SavedModel and a .tflite file alike."""
    from astropy.table import QTable, Table

    model = apnet_tf.load(models[runtime])
    folder = str(apstar_files[0].parent)
    _infer(models[runtime], tmp_path / "cat.ecsv", "--spectra", folder, "--mc", MC)
    _infer(models[runtime], tmp_path / "cat.fits", "--spectra", folder, "--mc", MC)
    cat = model.predict_files(folder, mc=MC, seed=SEED)
    assert type(cat) is QTable and len(cat) == 24
    ecsv = QTable.read(tmp_path / "cat.ecsv")
    _assert_same_table(cat, ecsv, skip=cat.colnames)  # units as written, dex included
    fits = Table.read(tmp_path / "cat.fits")
    for name in cat.colnames:  # values as written (FITS keeps empty text empty)
        a, b = _values(cat[name]), _values(fits[name])
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            assert a.astype(str).tolist() == b.astype(str).tolist(), name
    assert str(cat["TEFF"].unit) == "K" and str(cat["LOGG"].unit) == "dex"
    assert cat["BAD"].dtype == bool and cat["APNET_FLAG"].dtype.kind in "iu"
    assert cat["BAD"].any() and not cat["BAD"].all()
    assert {k: v for k, v in cat.meta.items() if k != "DATE"} == \
        {k: v for k, v in ecsv.meta.items() if k != "DATE"}
    assert cat.meta["MCSEED"] == SEED and cat.meta["MC"] == MC


@pytest.mark.parametrize("runtime", ["keras", "tflite"])
def test_predict_on_arrays_gives_the_rows_of_predict_files(models, runtime, apstar_files):
    """The spectra of the files as arrays, with their S/N, names and positions: the same
    rows, cut into the same batches (so the same noise draws), but for FILE."""
    model = apnet_tf.load(models[runtime])
    specs = [apnet_tf.read_apstar(f) for f in apstar_files]
    files = model.predict_files([str(f) for f in apstar_files], mc=MC, seed=SEED,
                                batch_size=7)
    arrays = model.predict(np.stack([s.flux for s in specs]), np.stack([s.err for s in specs]),
                           np.stack([s.bad for s in specs]), mc=MC, seed=SEED, batch_size=7,
                           snr=[s.snr for s in specs], apogee_id=[s.apogee_id for s in specs],
                           ra=[s.ra for s in specs], dec=[s.dec for s in specs])
    _assert_same_table(arrays, files, skip=("FILE",))
    assert set(arrays["FILE"]) == {""}
    assert {k: v for k, v in arrays.meta.items() if k != "DATE"} == \
        {k: v for k, v in files.meta.items() if k != "DATE"}


def test_predict_defaults_and_garbage(models, apstar_files):
    from apnet_tf.inference.arrays import median_snr

    model = apnet_tf.load(models["keras"])
    spec = apnet_tf.read_apstar(apstar_files[0])
    flux = np.stack([spec.flux, np.zeros_like(spec.flux)])  # a dead spectrum as the second
    err = np.stack([spec.err, spec.err])
    cat = model.predict(flux, err, mc=MC, seed=SEED)
    assert list(cat["APOGEE_ID"]) == ["0", "1"] and np.isnan(cat["RA"].value).all()
    assert cat["SNR"][0] == pytest.approx(median_snr(flux, err, spec.bad[None].repeat(2, 0))[0],
                                          rel=0.05)
    assert abs(cat["SNR"][0] / spec.snr - 1) < 0.5  # the header's S/N, roughly
    # a real star is no garbage; against a network trained on synthetic stars it may well be
    # FAR_FROM_TRAINING (the novelty bit), which says nothing of the input's quality
    far = flag_value("FAR_FROM_TRAINING")
    assert not int(cat["APNET_FLAG"][0]) & BAD_BITS & ~far
    assert cat["BAD"][1] and np.isnan(cat["TEFF"][1].value)
    one = model.predict(spec.flux, spec.err, mc=MC, seed=SEED)  # one spectrum, 1-D
    assert len(one) == 1 and one["TEFF"][0] == cat["TEFF"][0]


@pytest.mark.parametrize("args,words", [
    ((np.ones((2, 100)), np.ones((2, 100))), ["flux and err", "(N, 8575)"]),
    ((np.ones((2, 8575)), np.ones((3, 8575))), ["flux and err", "(3, 8575)"]),
    ((np.ones((2, 8575)), np.ones((2, 8575)), np.ones((2, 5), bool)), ["bad", "(2, 5)"]),
])
def test_arrays_of_the_wrong_shape_are_one_clear_error(models, args, words):
    model = apnet_tf.load(models["keras"])
    with pytest.raises(ApnetError) as info:
        model.predict(*args, mc=0)
    assert all(w in str(info.value) for w in words) and "\n" not in str(info.value)
    with pytest.raises(ApnetError, match="snr: expected one value per spectrum"):
        model.predict(np.ones((2, 8575)), np.ones((2, 8575)), snr=[1, 2, 3], mc=0)
    with pytest.raises(ApnetError, match="takes flux only"):
        model.predict(np.ones((2, 8575)), np.ones((2, 8575)), photometry=np.ones((2, 7)), mc=0)


def test_a_bad_file_is_a_warning_and_the_rest_go_on(models, apstar_files, tmp_path):
    broken = tmp_path / "apStar-broken.fits"
    broken.write_text("not FITS")
    model = apnet_tf.load(models["keras"])
    with pytest.warns(UserWarning, match="apStar-broken.fits"):
        cat = model.predict_files([str(apstar_files[0]), str(broken)], mc=0)
    assert len(cat) == 1
    with pytest.raises(ApnetError, match="no input"):
        model.predict_files([], mc=0)


def test_info_and_repr_say_what_the_model_is(models):
    for runtime, path in models.items():
        model = apnet_tf.load(path)
        info = model.info
        assert (info.runtime, info.network, info.published) == (runtime, "apnet", False)
        assert info.precision == "float32" and not info.takes_photometry
        assert len(info.label_range) == 3
        assert repr(model) == (f"Model({info.path!r}, runtime={runtime!r}, network='apnet', "
                               f"calibrated={info.calibration is not None}, "
                               "precision='float32')")
    assert apnet_tf.load(models["keras"], calibration=False).info.calibration is None


def test_a_published_network_run_loads_and_predicts_as_infer(apstar_files, tmp_path):
    """APOGEE Net II imported from (stand-in) PyTorch weights: the network and its
    conventions in .info; photometry as arrays or as a table gives infer's table."""
    torch = pytest.importorskip("torch")
    ref = pytest.importorskip("published_reference")
    from astropy.table import Table
    from published_weights import photometry_for

    from apnet_tf.io.photometry import PHOT_COLUMNS

    specs = [apnet_tf.read_apstar(f) for f in apstar_files]
    torch.manual_seed(2)
    torch.save(ref.ApogeeNetII().state_dict(), tmp_path / "net2.pt")
    assert cli("import-torch", tmp_path / "net2.pt", "--arch", "anet2", "--out",
               tmp_path / "anet2").exit_code == 0
    phot = photometry_for(len(specs))
    table = Table(phot, names=PHOT_COLUMNS)
    table.add_column([s.apogee_id for s in specs], name="APOGEE_ID", index=0)
    table.write(tmp_path / "phot.csv")
    model = apnet_tf.load(tmp_path / "anet2")
    assert (model.info.network, model.info.published, model.info.takes_photometry) == \
        ("anet2", True, True)
    assert model.info.conventions["arch"] == "anet2"
    _infer(str(tmp_path / "anet2"), tmp_path / "cat.fits", "--spectra",
           str(apstar_files[0].parent), "--photometry", tmp_path / "phot.csv", "--mc", MC)
    files = model.predict_files(str(apstar_files[0].parent), mc=MC, seed=SEED,
                                photometry=tmp_path / "phot.csv")
    written = Table.read(tmp_path / "cat.fits")
    for name in ("TEFF", "LOGG_ERR", "APNET_FLAG", "PHOT_FILLED", "BAD"):
        np.testing.assert_array_equal(_values(files[name]), _values(written[name]), name)
    order = [[str(s.path) for s in specs].index(f) for f in files["FILE"]]
    arrays = model.predict(np.stack([specs[i].flux for i in order]),
                           np.stack([specs[i].err for i in order]),
                           np.stack([specs[i].bad for i in order]), mc=MC, seed=SEED,
                           snr=[specs[i].snr for i in order], photometry=phot[order],
                           apogee_id=[specs[i].apogee_id for i in order],
                           ra=[specs[i].ra for i in order], dec=[specs[i].dec for i in order])
    _assert_same_table(arrays, files, skip=("FILE",))
    with pytest.raises(ApnetError, match="takes photometry as well as flux"):
        model.predict(specs[0].flux, specs[0].err, mc=0)


def test_make_records_and_fit_from_python(small_survey, tmp_path, capsys):
    records = apnet_tf.make_records(small_survey, tmp_path / "records",
                                    labels=small_survey / "labels.csv", shards=1)
    assert sum(sum(c.values()) for c in records.manifest["counts"].values()) == 16
    recipe = tmp_path / "r.toml"
    recipe.write_text("dropout = 0.2\n")
    result = apnet_tf.fit(tmp_path / "records", tmp_path / "run", ["paper", recipe],
                          stage="pretrain", epochs=1, batch_size=8)
    assert (result.recipe.optimizer, result.recipe.dropout, result.recipe.batch_size,
            result.recipe.epochs) == ("sgd", 0.2, 8, 1)
    assert "pretrain epoch 1: standardised MSE" in capsys.readouterr().out
    model = apnet_tf.load(tmp_path / "run")
    assert model.info.runtime == "keras" and (tmp_path / "run" / "run.json").exists()
    with pytest.raises(ApnetError, match="not a recipe field: bach_size"):
        apnet_tf.fit(tmp_path / "records", tmp_path / "run2", bach_size=8)
    assert not (tmp_path / "run2").exists()


def test_the_top_level_names_are_the_library_functions():
    import apnet_tf.io.boss
    import apnet_tf.io.spectra

    assert apnet_tf.read_apstar is apnet_tf.io.spectra.read_apstar
    assert apnet_tf.read_boss is apnet_tf.io.boss.read_boss
    assert {"load", "Model", "fit", "make_records", "read_apstar", "read_boss"} <= \
        set(dir(apnet_tf)) and set(apnet_tf.__all__) >= {"load", "Model"}
    with pytest.raises(AttributeError, match="no attribute 'predict'"):
        apnet_tf.predict  # noqa: B018 - the attribute access is the test
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert apnet_tf.load.__module__ == "apnet_tf.api"


def _python(code: str) -> str:
    """The stdout of ``code`` run in a fresh interpreter on this checkout."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_import_apnet_tf_is_quick_and_imports_no_tensorflow():
    """TensorFlow alone costs 5-15 s of CPU here; the package and its notebook names, well
    under one."""
    out = _python("import sys, time\nt = time.process_time()\nimport apnet_tf\n"
                  "from apnet_tf import *\n"
                  "names = [apnet_tf.load, apnet_tf.Model, apnet_tf.fit, apnet_tf.make_records, "
                  "apnet_tf.read_apstar, apnet_tf.read_boss]\n"
                  "print('CPU:', time.process_time() - t)\n"
                  "print('HEAVY:', sorted({m.split('.')[0] for m in sys.modules} & "
                  "{'tensorflow', 'keras', 'tf_keras', 'torch'}))\n")
    assert "HEAVY: []" in out
    assert float(out.split("CPU:")[1].split()[0]) < 2.0


def test_the_package_leaves_the_matplotlib_backend_alone():
    """The figure modules draw without pyplot: importing them (as fit and evaluate do) keeps a
    notebook's inline backend, so its figures still show."""
    out = _python("import matplotlib\nmatplotlib.use('svg')\n"
                  "import apnet_tf.evaluation.plots, apnet_tf.evaluation.sky_map\n"
                  "print('BACKEND:', matplotlib.get_backend())\n")
    assert "BACKEND: svg" in out
