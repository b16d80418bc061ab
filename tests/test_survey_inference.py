"""infer at survey scale: a resume that cannot lie, and the cases of issue 10's "Why" list.

Each test reproduces one way the old resume or input handling gave a wrong catalog or lost it.
The model is the real architecture, untrained (its weights fixed by a seed): these tests check
bookkeeping, not accuracy.
"""

import fcntl
import os
import shutil

import numpy as np
import pytest
from astropy.table import Table
from typer.testing import CliRunner

from apnet_tf.cli.app import app
from apnet_tf.inference.predict import predict_catalog
from apnet_tf.io.catalog import write_catalog
from apnet_tf.model.loading import load_model


class Killed(Exception):
    pass


def kill_after(n_stars):
    def progress(done, total):
        if done >= n_stars:
            raise Killed
    return progress


def _run_folder(path, seed):
    import keras

    from apnet_tf.model.network import build_model

    keras.utils.set_random_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    build_model([4500.0, 3.0, -0.3], [800.0, 1.0, 0.4]).save(path / "best.keras")
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return _run_folder(root / "a", 1), _run_folder(root / "b", 2)


@pytest.fixture(scope="module")
def stars(tmp_path_factory):
    from apnet_tf.data.synth import make_survey

    out = tmp_path_factory.mktemp("stars")
    make_survey(str(out), 24, seed=11)
    return out


def _copy(stars, dst):
    dst.mkdir()
    for f in sorted(stars.glob("*.fits")):
        shutil.copy(f, dst)
    return dst


def _ids(res):
    return list(res.catalog["APOGEE_ID"])


def test_a_replaced_model_is_not_mixed_with_the_old_one(models, stars, tmp_path):
    # Why 1: the old settings.json held the model's path, so a new best.keras reused old batches
    run = tmp_path / "run"
    shutil.copytree(models[0], run)
    work = str(tmp_path / "cat.csv.parts")
    with pytest.raises(Killed):
        predict_catalog(load_model(str(run)), [str(stars)], mc=0, batch_size=8,
                        work_dir=work, on_progress=kill_after(16))
    shutil.copy(models[1] / "best.keras", run / "best.keras")
    resumed = predict_catalog(load_model(str(run)), [str(stars)], mc=0, batch_size=8,
                              work_dir=work)
    fresh = predict_catalog(load_model(str(models[1])), [str(stars)], mc=0, batch_size=8)
    np.testing.assert_array_equal(resumed.catalog["TEFF"], fresh.catalog["TEFF"])


def test_deleted_inputs_are_not_taken_from_old_batches(models, stars, tmp_path):
    # Why 2: the old resume kept rows of deleted files and lost rows of present ones
    src = _copy(stars, tmp_path / "in")
    loaded = load_model(str(models[0]))
    work = str(tmp_path / "cat.csv.parts")
    with pytest.raises(Killed):
        predict_catalog(loaded, [str(src)], mc=0, batch_size=8, work_dir=work,
                        on_progress=kill_after(16))
    gone = sorted(src.glob("*.fits"))[2:12:3]
    for f in gone:
        f.unlink()
    res = predict_catalog(loaded, [str(src)], mc=0, batch_size=8, work_dir=work)
    assert sorted(res.catalog["FILE"]) == sorted(str(f) for f in src.glob("*.fits"))
    fresh = predict_catalog(loaded, [str(src)], mc=0, batch_size=8)
    np.testing.assert_array_equal(res.catalog["TEFF"], fresh.catalog["TEFF"])


def test_a_resumed_run_equals_an_uninterrupted_one(models, stars, tmp_path):
    # Why 3: the old draws followed one global random stream, so a resume drew other noise
    loaded = load_model(str(models[0]))
    kw = dict(mc=3, batch_size=8, seed=5)
    work = str(tmp_path / "cat.csv.parts")
    with pytest.raises(Killed):
        predict_catalog(loaded, [str(stars)], work_dir=work, on_progress=kill_after(8), **kw)
    resumed = predict_catalog(loaded, [str(stars)], work_dir=work, **kw)
    whole = predict_catalog(loaded, [str(stars)], **kw)
    for col in ("TEFF", "TEFF_ERR", "LOGG_ERR", "FE_H_ERR"):
        np.testing.assert_array_equal(resumed.catalog[col], whole.catalog[col])
    other = predict_catalog(loaded, [str(stars)], mc=3, batch_size=8, seed=6)
    assert not np.array_equal(other.catalog["TEFF_ERR"], whole.catalog["TEFF_ERR"])


def test_a_second_job_on_the_same_output_stops_at_once(models, stars, tmp_path):
    # Why 4: two jobs on one --out mixed their rows and deleted each other's batches
    out = tmp_path / "cat.csv"
    with open(str(out) + ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running job holds it
        res = CliRunner().invoke(app, ["infer", "--model", str(models[0]), "--spectra",
                                       str(stars), "--out", str(out), "--mc", "0"])
    assert res.exit_code == 1 and "another process" in res.output
    assert not out.exists()


def test_fits_catalog_keeps_any_unicode_path(tmp_path):
    # Why 5: a non-ASCII path made the FITS writer fail after every prediction
    path = "/données/étoiles/apStar-r6-2M00000000+0000000 ☆.fits"
    table = Table({"APOGEE_ID": ["2M00000000+0000000"], "TEFF": [5000.0], "FILE": [path],
                   "AGE_BIN": [""]})
    write_catalog(table, str(tmp_path / "c.fits"))
    assert list(Table.read(tmp_path / "c.fits")["FILE"]) == [path]


def test_a_missing_input_is_skipped_with_exit_2(models, stars, tmp_path):
    # Why 6: a path that matched nothing aborted the whole job
    out = tmp_path / "cat.csv"
    res = CliRunner().invoke(app, ["infer", "--model", str(models[0]), "--spectra", str(stars),
                                   "--spectra", str(tmp_path / "nonexistent.fits"),
                                   "--out", str(out), "--mc", "0"])
    assert res.exit_code == 2, res.output
    assert "nonexistent.fits" in res.output
    assert len(Table.read(out, format="ascii.ecsv")) == 24


def test_a_spectrum_without_finite_flux_or_error_is_bad_and_nan(models, stars, tmp_path):
    # Why 7: an all-NaN spectrum got a confident 5555 K and BAD=False
    from astropy.io import fits

    src = _copy(stars, tmp_path / "in")
    files = sorted(src.glob("*.fits"))
    for f, hdu in ((files[0], 1), (files[1], 2)):
        with fits.open(f, mode="update") as hdul:
            hdul[hdu].data[...] = np.nan if f == files[0] else np.inf
    res = predict_catalog(load_model(str(models[0])), [str(src)], mc=3, batch_size=8, seed=1)
    cat = res.catalog
    dead = np.isin(np.asarray(cat["FILE"]), [str(files[0]), str(files[1])])
    assert dead.sum() == 2
    assert cat["BAD"][dead].all()
    for col in ("TEFF", "TEFF_ERR", "LOGG", "FE_H_ERR"):
        assert np.isnan(np.asarray(cat[col])[dead]).all()
        assert np.isfinite(np.asarray(cat[col])[~dead]).all()


def test_a_bad_output_name_is_rejected_before_any_prediction(models, stars, tmp_path,
                                                             monkeypatch):
    # Why 8: --out cat.txt was refused only after every star had been predicted
    from apnet_tf.model.keras_runtime import KerasRuntime

    calls = []
    def predict(self, flux):
        calls.append(len(flux))
        return np.full((len(flux), 3), 5000.0, np.float32)

    monkeypatch.setattr(KerasRuntime, "predict", predict)
    res = CliRunner().invoke(app, ["infer", "--model", str(models[0]), "--spectra", str(stars),
                                   "--out", str(tmp_path / "cat.txt"), "--mc", "0"])
    assert res.exit_code == 1 and ".csv, .ecsv or .fits" in res.output
    assert not calls


def test_parallel_reads_give_the_same_catalog(models, stars, tmp_path):
    loaded = load_model(str(models[0]))
    serial = predict_catalog(loaded, [str(stars)], mc=0, batch_size=5, workers=0)
    parallel = predict_catalog(loaded, [str(stars)], mc=0, batch_size=5, workers=2)
    assert _ids(serial) == _ids(parallel)
    np.testing.assert_array_equal(serial.catalog["TEFF"], parallel.catalog["TEFF"])


def test_content_hash_of_files_and_folders(tmp_path):
    from apnet_tf.io.files import content_hash

    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a").write_bytes(b"1")
    (tmp_path / "d" / "sub" / "b").write_bytes(b"2")
    first = content_hash(str(tmp_path / "d"))
    assert content_hash(str(tmp_path / "d" / "a")) != content_hash(str(tmp_path / "d" / "sub/b"))
    os.utime(tmp_path / "d" / "a", (0, 0))  # times do not count, bytes and names do
    assert content_hash(str(tmp_path / "d")) == first
    (tmp_path / "d" / "a").write_bytes(b"3")
    assert content_hash(str(tmp_path / "d")) != first


def test_table_and_root_read_the_sas_layout(models, stars, tmp_path):
    from astropy.io import fits

    files = sorted(stars.glob("*.fits"))[:6]
    rows = []
    for i, f in enumerate(files):
        tel, field = ("apo25m", "M67") if i % 2 else ("lco25m", "NGC 6791")
        (tmp_path / "sas" / tel / field).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, tmp_path / "sas" / tel / field / f.name)
        rows.append((f"2M-TABLE-{i}", tel, field, f.name))
    rows.append(("2M-GONE", "apo25m", "M67", "apStar-r12-2M-GONE.fits"))
    cols = [fits.Column(name=n, format="64A", array=[r[k] for r in rows])
            for k, n in enumerate(("APOGEE_ID", "TELESCOPE", "FIELD", "FILE"))]
    cols.append(fits.Column(name="SNR", format="E", array=np.arange(len(rows))))
    fits.BinTableHDU.from_columns(cols).writeto(tmp_path / "allStar.fits")
    out = tmp_path / "cat.fits"
    res = CliRunner().invoke(app, ["infer", "--model", str(models[0]), "--table",
                                   str(tmp_path / "allStar.fits"), "--root",
                                   str(tmp_path / "sas"), "--out", str(out), "--mc", "0"])
    # a row whose file is not there is no failure: it is left out, said in one line, listed
    assert res.exit_code == 0, res.output
    assert "1 of 7 rows name no file" in res.output and "2M-GONE" in res.output
    assert "skipped" not in res.output
    listed = (tmp_path / "cat.fits.missing.txt").read_text().splitlines()
    assert listed[-1] == "apo25m/M67/apStar-r12-2M-GONE.fits"
    cat = Table.read(out)
    assert list(cat["APOGEE_ID"]) == [r[0] for r in rows[:6]]
    assert list(cat["TELESCOPE"]) == [r[1] for r in rows[:6]]
    assert list(cat["FIELD"]) == [r[2] for r in rows[:6]]
    assert np.isfinite(np.asarray(cat["TEFF"])).all()
