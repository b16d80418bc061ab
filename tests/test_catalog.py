"""Catalogs that carry their meaning: units, descriptions, provenance and each row's source."""

import importlib.metadata
import os
import warnings

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.table import Table

import apnet_tf
from apnet_tf.data.manifest import shard_paths
from apnet_tf.inference.predict import predict_catalog
from apnet_tf.io.catalog import write_catalog
from apnet_tf.io.catalog_schema import SCHEMA, column_info
from apnet_tf.model.loading import files_sha256, load_model, model_files


def _columns(header) -> dict[str, tuple]:
    return {header[f"TTYPE{i}"]: (header.get(f"TUNIT{i}"), header.get(f"TCOMM{i}"))
            for i in range(1, header["TFIELDS"] + 1)}


def test_fits_catalog_has_units_provenance_and_sources(records, trained_run, tmp_path):
    res = predict_catalog(load_model(str(trained_run)), [str(records)], mc=3, batch_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. astropy's "Card is too long, comment truncated"
        path = write_catalog(res.catalog, str(tmp_path / "catalog.fits"))
    with fits.open(path) as hdul:
        hdu = hdul["CATALOG"]
        header, data = hdu.header, hdu.data
        assert hdul.index_of("CATALOG") == 1
    cols = _columns(header)
    assert cols["TEFF"][0] == "K" and cols["TEFF_ERR"][0] == "K" and cols["TEFF_P84"][0] == "K"
    # FITS has no 'dex': it heads the description, so astropy reads the file without a warning
    assert cols["LOGG"][0] is None and cols["LOGG"][1].startswith("[dex] surface gravity")
    assert cols["FE_H_ERR"][0] is None and cols["FE_H_ERR"][1].startswith("[dex] ")
    assert cols["RA"][0] == "deg" and cols["DEC"][0] == "deg"
    assert cols["BAD"][0] is None and cols["SNR"][0] is None  # flags and ratios have no unit
    assert all(comment for _, comment in cols.values()), cols  # every column described
    assert header["APNETVER"] == apnet_tf.__version__
    assert header["TFVER"] == importlib.metadata.version("tensorflow")
    assert header["DATE"].startswith("20") and header["MC"] == 3
    assert header["MODEL"] == trained_run.name  # the run's name, not a path of this machine
    # the files infer loaded: best.keras, normalization.json, run.json, calibration.json
    assert header["MODELSHA"] == files_sha256(model_files(str(trained_run)))
    shards = set(data["FILE"])  # every row names the shard it came from, and all shards occur
    assert all(f.endswith(".tfrecord") and os.path.exists(f) for f in shards), shards
    assert shards == set(shard_paths(str(records)))
    # one schema: every column is in it, in its order, with its unit and description
    order = [c.name for c in SCHEMA]
    assert list(cols) == sorted(cols, key=order.index)
    assert cols == {c.name: (c.unit or None, c.description) if c.unit != "dex" else
                    (None, f"[dex] {c.description}") for c in SCHEMA if c.name in cols}
    csv = write_catalog(res.catalog, str(tmp_path / "catalog.csv"))
    ecsv = write_catalog(res.catalog, str(tmp_path / "catalog.ecsv"))
    for catalog, kwargs in ((path, {}), (ecsv, {}), (csv, {"format": "ascii.ecsv"})):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "UnitsWarning: 'dex' did not parse"
            back = Table.read(catalog, **kwargs)
        assert len(back) == len(res.catalog) and str(back["TEFF"].unit) == "K"
        assert str(back["LOGG"].unit) == ("dex" if catalog != path else "None")


def _table() -> Table:
    t = Table({"APOGEE_ID": ["2M1", "2M2"], "TEFF": np.array([4000.0, 5000.0]),
               "FE_H": np.array([0.1, -0.2]), "BAD": np.array([False, True]),
               "FILE": np.array(["a.fits", "b.fits"], dtype=object)})
    t.meta.update({"MODEL": "run1", "SIGMA": "calibrated", "SCALES": [0.7, 0.6, 0.5],
                   "MCSEED": None,
                   "SIGCAL": "raw MC sigma x factor per Kiel region and S/N bin, fitted on "
                             "300 dev stars (calibration.json)"})
    return t


def test_fits_header_renders_whatever_meta_holds(tmp_path):
    table = _table()
    table.meta["MODELSHA"] = "0123456789abcdef" * 4  # a sha256: no room for its comment
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = write_catalog(table, str(tmp_path / "c.fits"))
    header = fits.getheader(path, "CATALOG")
    assert header["SIGMA"] == "calibrated" and header["SCALES"] == "0.7,0.6,0.5"
    assert header["SIGCAL"].endswith("(calibration.json)") and header["MCSEED"] == "none"
    back = Table.read(path, unit_parse_strict="silent")
    assert list(back["FILE"]) == ["a.fits", "b.fits"] and list(back["BAD"]) == [False, True]


def test_csv_catalog_header_lines(tmp_path):
    path = write_catalog(_table(), str(tmp_path / "c.csv"))
    head = [line for line in open(path) if line.startswith("#")]
    text = "".join(head)
    assert "name: TEFF, unit: K" in text and "name: FE_H, unit: dex" in text
    assert "SIGMA: calibrated" in text
    assert "APNETVER" in text and "TFVER" in text and "MODEL: run1" in text
    df = pd.read_csv(path, comment="#")
    assert list(df.columns) == ["APOGEE_ID", "TEFF", "FE_H", "BAD", "FILE"]
    np.testing.assert_allclose(df["TEFF"], [4000.0, 5000.0])
    back = Table.read(path, format="ascii.ecsv")
    assert str(back["FE_H"].unit) == "dex" and back.meta["SIGMA"] == "calibrated"
    # YAML folds a long description over lines: read it back rather than search the raw text
    assert back["TEFF"].description == column_info()["TEFF"][1]
