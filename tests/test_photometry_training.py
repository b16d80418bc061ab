"""Training the two-input network here: make-records --photometry, fit --arch anet2, and what
runs on the trained run (infer, export)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table
from cli_helpers import assert_one_line_error, cli

from apnet_tf.data.dataset import make_dataset
from apnet_tf.data.manifest import read_manifest, records_hold_photometry
from apnet_tf.data.records import make_records
from apnet_tf.io.photometry import PHOT_COLUMNS
from apnet_tf.model.published import PHOT_FILL


def _stored(records) -> dict[str, np.ndarray]:
    """APOGEE_ID -> the (7,) photometry a record folder stores."""
    out = {}
    for ex, _ in make_dataset(str(records), features=("apogee_id", "photometry")):
        for key, row in zip(ex["apogee_id"].numpy(), ex["photometry"].numpy()):
            out[key.decode()] = row
    return out


@pytest.fixture(scope="module")
def phot_table(small_survey, tmp_path_factory):
    """The small survey's photometry.csv with one star left out, a 99.999 G and a NaN
    parallax: (path, the table)."""
    table = pd.read_csv(small_survey / "photometry.csv")
    table = table[table.APOGEE_ID != sorted(table.APOGEE_ID)[0]].reset_index(drop=True)
    table.loc[1, "GAIAEDR3_PHOT_G_MEAN_MAG"] = 99.999
    table.loc[2, "GAIAEDR3_PARALLAX"] = np.nan
    path = tmp_path_factory.mktemp("phot") / "phot.csv"
    table.to_csv(path, index=False)
    return path, table


@pytest.fixture(scope="module")
def phot_records(small_survey, phot_table, tmp_path_factory):
    out = tmp_path_factory.mktemp("phot_records")
    res = cli("make-records", "--spectra", small_survey, "--labels",
              small_survey / "labels.csv", "--photometry", phot_table[0], "--out", out,
              "--shards", 1)
    assert res.exit_code == 0, res.output
    assert "photometry: 15 records from" in res.stdout and "1 absent" in res.stdout
    return out


def test_make_records_stores_the_photometry_as_given(phot_records, phot_table, small_survey,
                                                     small_records):
    path, table = phot_table
    stored = _stored(phot_records)
    assert len(stored) == 16
    for row in table.itertuples(index=False):
        expect = np.array([getattr(row, c) for c in PHOT_COLUMNS], np.float32)
        np.testing.assert_array_equal(stored[row.APOGEE_ID], expect)  # NaN == NaN here
    absent = set(stored) - set(table.APOGEE_ID)
    assert len(absent) == 1 and np.isnan(stored[absent.pop()]).all()
    summary = read_manifest(str(phot_records))["photometry"]
    assert summary["source"] == str(path) and summary["columns"] == list(PHOT_COLUMNS)
    assert summary["records"] == 16 and summary["absent"] == 1
    values = np.array([stored[k] for k in sorted(stored)])
    missing = ~(np.isfinite(values) & (values < 98))
    assert summary["missing"] == dict(zip(("PLX", "G", "BP", "RP", "J", "H", "K"),
                                          missing.sum(axis=0).tolist()))
    assert summary["missing"]["G"] >= 2 and summary["missing"]["PLX"] >= 2
    # records made without photometry say so, and read as NaN
    assert not records_hold_photometry(read_manifest(str(small_records)))
    assert all(np.isnan(v).all() for v in _stored(small_records).values())


def test_make_records_photometry_keeps_complete_shards(phot_records, phot_table, small_survey):
    again = make_records([str(small_survey)], str(phot_records),
                         labels=str(small_survey / "labels.csv"), shards=1,
                         photometry=str(phot_table[0]))
    assert again.written_shards == [] and len(again.skipped_shards) == 3


@pytest.mark.parametrize("change, words", [
    (lambda t: t.drop(columns="H"), ["phot.csv", "H"]),
    (lambda t: t.assign(J=["abc"] + list(t.J[1:].astype(str))), ["phot.csv", "column J",
                                                                  "'abc'"]),
])
def test_a_bad_photometry_table_is_one_line_before_any_work(change, words, small_survey,
                                                            phot_table, tmp_path):
    bad = tmp_path / "phot.csv"
    change(phot_table[1]).to_csv(bad, index=False)
    res = cli("make-records", "--spectra", small_survey, "--photometry", bad, "--out",
              tmp_path / "rec")
    assert_one_line_error(res, *words)
    assert not (tmp_path / "rec").exists()


def test_fit_anet2_refuses_records_without_photometry(small_records, tmp_path):
    res = cli("fit", "--records", small_records, "--out", tmp_path / "run", "--arch", "anet2",
              "--stage", "pretrain", "--epochs", 1)
    assert_one_line_error(res, str(small_records), "--arch anet2", "make-records --photometry")
    assert not (tmp_path / "run").exists()
    assert_one_line_error(cli("fit", "--records", small_records, "--out", tmp_path / "run",
                              "--arch", "anet9"), "--arch", "apnet, anet2, anet3")


@pytest.fixture(scope="module")
def anet2_run(phot_records, tmp_path_factory):
    run = tmp_path_factory.mktemp("anet2_run")
    res = cli("fit", "--records", phot_records, "--out", run, "--arch", "anet2", "--stage",
              "pretrain", "--epochs", 2, "--batch-size", 4)
    assert res.exit_code == 0, res.output
    return run


def test_fit_anet2_trains_the_two_input_network(anet2_run, phot_records):
    import keras

    record = json.loads((anet2_run / "run.json").read_text())
    assert record["arch"] == "anet2" and record["stages"] == ["pretrain"]
    scaling = record["photometry"]
    # z-scores from the labelled train stars' photometry once filled with Net II's values
    raw = np.array([v for v in _train_photometry(phot_records)], np.float64)
    filled = np.where(np.isfinite(raw) & (raw < 98), raw, PHOT_FILL)
    np.testing.assert_allclose(scaling["mean"], filled.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(scaling["std"], filled.std(axis=0), rtol=1e-6)
    assert scaling["fill"] == list(PHOT_FILL) and scaling["columns"] == list(PHOT_COLUMNS)
    model = keras.models.load_model(anet2_run / "best.keras")
    assert [i.shape[-1] for i in model.inputs] == [8575, 7]
    layer = model.get_layer("photometry_scaling")
    assert layer.mean == scaling["mean"] and layer.std == scaling["std"]
    assert (anet2_run / "table3.csv").exists()
    # fine-tuning continues the pretrained network; another --arch is refused before any work
    assert_one_line_error(cli("fit", "--records", phot_records, "--out", anet2_run, "--stage",
                              "finetune", "--arch", "apnet"), "--arch anet2")


def _train_photometry(records):
    for ex, y in make_dataset(str(records), splits=["train"], labeled_only=True,
                              features=("photometry",)):
        yield from ex.numpy()


def test_photometry_changes_the_anet2_prediction(anet2_run, phot_records, phot_table,
                                                small_survey, tmp_path):
    """The trained two-input network reads the photometry: the same spectra with other stars'
    photometry, or with every magnitude 1 mag fainter, give other labels; a network that
    ignored its second input would give the same ones."""
    from apnet_tf.data.planning import plan_units
    from apnet_tf.data.readers import read_unit
    from apnet_tf.model.loading import load_model

    loaded = load_model(str(anet2_run))
    batches = [read_unit(unit)[0] for unit in plan_units([str(phot_records)]).units]
    flux = np.concatenate([b.flux for b in batches])
    phot = np.concatenate([b.photometry for b in batches])
    assert len(flux) == 16
    base = loaded.predict(flux, phot)
    swapped = loaded.predict(flux, phot[::-1])
    fainter = loaded.predict(flux, np.where(np.arange(7) > 0, phot + 1.0, phot))
    spread = np.asarray(json.loads((anet2_run / "normalization.json").read_text())["std"])
    # each label moves by more than a thousandth of its spread on some star whose input changed
    differ = ~np.all(np.isclose(phot, phot[::-1], equal_nan=True), axis=1)
    changed = np.isfinite(phot[:, 1:]).any(axis=1)
    assert differ.sum() >= 10 and changed.sum() >= 10
    assert (np.abs(swapped - base)[differ] / spread > 1e-3).any(axis=0).all()
    assert (np.abs(fainter - base)[changed] / spread > 1e-3).any(axis=0).all()
    # the same through infer --photometry: a table 1 mag fainter gives other Teff
    table = phot_table[1].copy()
    bands = [c for c in table.columns if c.endswith("_MAG") or c in ("J", "H", "K")]
    assert len(bands) >= 5, list(table.columns)
    table[bands] = table[bands] + 1.0
    table.to_csv(tmp_path / "fainter.csv", index=False)
    teff = {}
    for name, path in (("as given", phot_table[0]), ("fainter", tmp_path / "fainter.csv")):
        res = cli("infer", "--model", anet2_run, "--spectra", small_survey, "--photometry", path,
                  "--out", tmp_path / f"{name}.fits", "--mc", 0)
        assert res.exit_code == 0, res.output
        cat = Table.read(tmp_path / f"{name}.fits")
        cat.sort("APOGEE_ID")
        teff[name] = np.asarray(cat["TEFF"])
    assert (np.abs(teff["fainter"] - teff["as given"]) > 1e-3 * spread[0]).sum() >= 10


def test_infer_on_the_anet2_run(anet2_run, phot_records, phot_table, small_survey, tmp_path):
    res = cli("infer", "--model", anet2_run, "--spectra", phot_records, "--out",
              tmp_path / "rec.fits", "--mc", 2, "--seed", 1)
    assert res.exit_code == 0, res.output
    cat = Table.read(tmp_path / "rec.fits")
    assert len(cat) == 16
    for col in ("TEFF", "LOGG", "FE_H", "TEFF_ERR"):
        assert np.isfinite(cat[col]).all(), col
    absent = set(cat["APOGEE_ID"]) - set(phot_table[1].APOGEE_ID)
    assert list(cat["PHOT_FILLED"][cat["APOGEE_ID"] == absent.pop()]) == [127]
    # apStar files carry no photometry: refused before any work, unless --photometry gives it
    res = cli("infer", "--model", anet2_run, "--spectra", small_survey, "--out",
              tmp_path / "files.fits")
    assert_one_line_error(res, "photometry")
    res = cli("infer", "--model", anet2_run, "--spectra", small_survey, "--photometry",
              phot_table[0], "--out", tmp_path / "files.fits", "--mc", 0)
    assert res.exit_code == 0, res.output
    files = Table.read(tmp_path / "files.fits")
    plain = cli("infer", "--model", anet2_run, "--spectra", phot_records, "--out",
                tmp_path / "plain.fits", "--mc", 0)
    assert plain.exit_code == 0, plain.output
    rec = Table.read(tmp_path / "plain.fits")
    files.sort("APOGEE_ID")
    rec.sort("APOGEE_ID")
    np.testing.assert_allclose(files["TEFF"], rec["TEFF"], rtol=1e-5)


def test_export_of_the_anet2_run_takes_photometry(anet2_run, phot_records, tmp_path):
    from apnet_tf.data.planning import plan_units
    from apnet_tf.data.readers import read_unit
    from apnet_tf.model.loading import load_model

    res = cli("export", "--model", anet2_run, "--out", tmp_path / "exp", "--tflite", "")
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "exp" / "export_metadata.json").read_text())
    assert meta["inputs"]["photometry"] == [None, 7] and meta["conventions"] is None
    run = json.loads((anet2_run / "run.json").read_text())["photometry"]
    assert meta["photometry_scaling"]["mean"] == run["mean"]
    batch, _ = read_unit(plan_units([str(phot_records)]).units[0])
    keras_model, saved = load_model(str(anet2_run)), load_model(str(tmp_path / "exp"))
    assert saved.takes_photometry and saved.mc_style == "apnet"
    np.testing.assert_allclose(saved.predict(batch.flux, batch.photometry),
                               keras_model.predict(batch.flux, batch.photometry), rtol=1e-5)
    # MC dropout runs the two-input model too (dropout 0.1): its spread is there
    mc = keras_model.monte_carlo(batch.flux[:3], batch.err[:3], batch.bad[:3], 4,
                                 mc_dropout=True, seed=2, photometry=batch.photometry[:3])
    assert (mc["std_dropout"] > 0).all() and np.isfinite(mc["value"]).all()
