"""BOSS spec files in: the reader (both name styles, lite and full), BOSS Net's grid and its
rules, one line for each bad file with the batch going on, and tables of BOSS files."""

from __future__ import annotations

import dataclasses
import gzip
import shutil

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from apnet_tf.errors import ApnetError
from apnet_tf.io.boss import read_boss, read_boss_batch, spec_name
from apnet_tf.io.boss_grid import boss_grid, ivar_to_error, resample_boss
from apnet_tf.io.boss_table import read_boss_listing


@pytest.fixture(scope="module")
def boss_surveys(tmp_path_factory):
    """{"lite": folder, "full": folder}: 8 stars, both name styles, one seed."""
    from apnet_tf.data.synth_boss import make_boss_survey

    out = {}
    for kind in ("lite", "full"):
        folder = tmp_path_factory.mktemp(f"boss_{kind}")
        make_boss_survey(str(folder), 8, seed=5, names="both", full=kind == "full")
        out[kind] = folder
    return out


@pytest.fixture(scope="module")
def labels(boss_surveys):
    ints = {c: "Int64" for c in ("MJD", "PLATE", "FIBERID", "FIELD", "CATALOGID")}
    return pd.read_csv(boss_surveys["lite"] / "labels.csv", dtype=ints)


def _coadd(path):
    """HDU 1's flux, loglam, ivar as astropy reads them (names in either case)."""
    with fits.open(path) as hdul:
        data = hdul["COADD"].data
        return {k: np.array(data[k]) for k in ("flux", "loglam", "ivar")}


def test_reads_both_name_styles_lite_and_full(boss_surveys, labels):
    assert set(len(f) > 4 for f in labels.SPEC_ID.str.split("-").str[-1]) == {True, False}
    for row in labels.itertuples():
        lite = read_boss(boss_surveys["lite"] / row.FILE)
        full = read_boss(boss_surveys["full"] / row.FILE)
        raw = _coadd(boss_surveys["lite"] / row.FILE)
        assert lite.spec_id == row.SPEC_ID == row.FILE[5:-5] and lite.mjd == row.MJD
        np.testing.assert_array_equal(lite.flux, raw["flux"])  # NaN where the file has NaN
        np.testing.assert_array_equal(lite.ivar, raw["ivar"])
        np.testing.assert_array_equal(lite.wavelength, 10 ** raw["loglam"].astype(np.float32))
        assert lite.wavelength.dtype == np.float32 and np.all(np.diff(lite.wavelength) > 0)
        if pd.isna(row.CATALOGID):  # SDSS-IV: plate, fiber; HDU 2's FIELD is the imaging one
            assert (lite.plate, lite.fiber, lite.field, lite.catalogid) == (
                row.PLATE, row.FIBERID, -1, -1)
            assert lite.object_id.startswith("1237") and lite.wresl is None
        else:  # SDSS-V: 17-digit CATALOGIDs exact
            assert (lite.field, lite.catalogid) == (row.FIELD, row.CATALOGID)
            assert lite.object_id == str(row.CATALOGID) and lite.wresl is not None
        assert lite.snr == pytest.approx(row.SNR, rel=1e-5)
        assert (lite.ra, lite.dec) == pytest.approx((row.RA, row.DEC), abs=1e-7)
        assert lite.and_mask.dtype == np.int32 and lite.sky is not None
        for name in ("flux", "ivar", "err", "bad", "wavelength", "and_mask"):
            np.testing.assert_array_equal(getattr(lite, name), getattr(full, name))
        with fits.open(boss_surveys["full"] / row.FILE) as hdul:
            assert len(hdul) > (5 if lite.catalogid >= 0 else 4)  # per-exposure HDUs


def _fields(spec):
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}


def _assert_same(a, b):
    for name, x in _fields(a).items():
        y = getattr(b, name)
        if name == "path":
            continue
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype, name
            np.testing.assert_array_equal(x, y, err_msg=name)
        else:
            assert x == y or (x != x and y != y), (name, x, y)


def test_fast_read_equals_astropy_read(boss_surveys, labels, monkeypatch, tmp_path):
    from apnet_tf.io import boss

    paths = [boss_surveys[k] / f for k in ("lite", "full") for f in labels.FILE]
    fast = [read_boss(p) for p in paths]

    def unsupported(*args, **kwargs):
        raise boss.Unsupported

    monkeypatch.setattr(boss, "read_tables", unsupported)
    for path, got in zip(paths, fast):
        _assert_same(got, read_boss(path))
    monkeypatch.undo()
    packed = tmp_path / (labels.FILE[0] + ".gz")  # compressed: astropy reads it
    packed.write_bytes(gzip.compress(paths[0].read_bytes()))
    gz = read_boss(packed)
    assert gz.path == str(packed)
    _assert_same(gz, fast[0])


def test_fast_read_of_a_wide_spall_hdu(tmp_path):
    """A SPALL HDU as wide as the real ones, with vector, scaled and logical columns."""
    cols = _good_columns()
    spall = [fits.Column(name=f"X{k}", format="5E", array=np.ones((1, 5))) for k in range(150)]
    spall += [fits.Column(name="SPECOBJID", format="K", array=np.array([2**63 + 5], np.uint64)),
              fits.Column(name="FLAG", format="L", array=np.array([True])),
              fits.Column(name="CATALOGID", format="K", array=[27021598150202075]),
              fits.Column(name="PLUG_RA", format="D", array=[150.5]),
              fits.Column(name="SN_MEDIAN_ALL", format="E", array=[17.5])]
    path = _write(tmp_path / "spec-112360-60000-27021598150202075.fits", _table(**cols),
                  spall=fits.BinTableHDU.from_columns(spall, name="SPALL"))
    from apnet_tf.io.fasttable import read_tables

    _, tables = read_tables(str(path), (), {1: ("FLUX",), 2: ("catalogid", "absent")}, {2: 1})
    assert list(tables[2]) == ["catalogid"]  # from the bytes, past vector and scaled columns
    spec = read_boss(path)
    assert spec.catalogid == 27021598150202075 and spec.object_id == "27021598150202075"
    assert (spec.ra, spec.snr, spec.field) == (150.5, 17.5, 112360)


def test_bad_pixels_and_errors_follow_ivar(boss_surveys, labels):
    spec = read_boss(boss_surveys["lite"] / labels.FILE[0])
    zero = spec.ivar == 0
    assert zero.any() and spec.bad[zero].all() and spec.bad[np.isnan(spec.flux)].all()
    good = ~spec.bad
    cap = 5 * np.median(spec.ivar[spec.ivar > 0] ** -0.5)
    np.testing.assert_allclose(spec.err[zero], cap, rtol=1e-6)
    expected = np.minimum(spec.ivar[good].astype(np.float64) ** -0.5, cap)
    np.testing.assert_allclose(spec.err[good], expected, rtol=1e-6)


def test_ivar_to_error_rule():
    ivar = np.array([4.0, 1.0, 0.25, 0.0, np.nan, -1.0, 1e-6], np.float32)
    err = ivar_to_error(ivar)
    finite = np.array([0.5, 1.0, 2.0, 1000.0])  # the errors of the positive ivar
    cap = 5 * np.median(finite)
    np.testing.assert_allclose(err, [0.5, 1.0, 2.0, cap, cap, cap, cap], rtol=1e-6)
    assert err.dtype == np.float32
    np.testing.assert_array_equal(ivar_to_error(np.zeros(3), fallback=0.7), np.full(3, 0.7,
                                                                                   np.float32))


def test_grid_is_boss_nets():
    grid = boss_grid()
    assert grid.shape == (3900,) and grid.dtype == np.float32
    assert grid[0] == 3800 and grid[-1] == 8900
    assert np.abs(grid - np.linspace(3800, 8900, 3900)).max() < 1e-3
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(grid, torch.linspace(3800, 8900, steps=3900).numpy())


def _reference(flux, wave, drop):
    """numpy.interp, written out: BOSS Net's grid as np.linspace gives it in float64, rounded
    to float32 like the authors' float32 grid; NaN flux dropped or zeroed."""
    grid = np.linspace(3800.0, 8900.0, 3900).astype(np.float32).astype(np.float64)
    flux = np.asarray(flux, np.float64)
    keep = ~np.isnan(flux) if drop else np.ones(flux.shape, bool)
    flux = flux if drop else np.nan_to_num(flux, nan=0.0)
    return np.interp(grid, np.asarray(wave, np.float64)[keep], flux[keep]), grid


def test_resample_matches_numpy_interp(boss_surveys, labels):
    spec = read_boss(boss_surveys["lite"] / labels.FILE[1])
    spec.flux[[1000, 2500]] = np.nan  # NaN pixels inside the grid's range
    for rule, drop in (("drop", True), ("zero", False)):
        got = resample_boss(spec.flux, spec.wavelength, rule)
        want, grid = _reference(spec.flux, spec.wavelength, drop)
        assert got.shape == (3900,) and got.dtype == np.float32
        exact = boss_grid() == grid.astype(np.float32)  # where the two grids agree, bit for bit
        assert exact.mean() > 0.9
        np.testing.assert_array_equal(got[exact], want[exact].astype(np.float32))
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.nanmax(np.abs(want)))
    near = np.abs(boss_grid() - spec.wavelength[1000]).argmin()
    zero = resample_boss(spec.flux, spec.wavelength, "zero")[near]
    drop = resample_boss(spec.flux, spec.wavelength, "drop")[near]
    assert abs(zero) < abs(drop)  # astra's 0 pulls the interpolated flux down; a drop does not


def test_resample_rows_and_padding():
    rng = np.random.default_rng(1)
    wave = np.sort(rng.uniform(3600, 10400, 500)).astype(np.float32)
    draws = rng.normal(10, 1, (3, 500)).astype(np.float32)
    rows = resample_boss(draws, wave)
    assert rows.shape == (3, 3900)
    for k in range(3):
        np.testing.assert_array_equal(rows[k], resample_boss(draws[k], wave))
    padded_flux = np.concatenate([draws[0], np.full(20, np.nan, np.float32)])
    padded_wave = np.concatenate([wave, np.full(20, np.nan, np.float32)])
    for rule in ("zero", "drop"):  # padding is dropped under either rule
        np.testing.assert_array_equal(resample_boss(padded_flux, padded_wave, rule), rows[0])
    assert np.isnan(resample_boss(np.full(500, np.nan), wave, "drop")).all()
    with pytest.raises(ApnetError, match="nan_flux"):
        resample_boss(draws[0], wave, "median")


def _write(path, coadd, primary=None, spall=None, extra_hdus=()):
    hdus = [fits.PrimaryHDU()]
    if coadd is not None:
        hdus.append(coadd)
    if spall is not None:
        hdus.append(spall)
    hdus.extend(extra_hdus)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def _table(**cols):
    return fits.BinTableHDU.from_columns(
        [fits.Column(name=k, format="E" if np.asarray(v).ndim == 1 else f"{np.shape(v)[1]}E",
                     array=np.asarray(v, np.float32)) for k, v in cols.items()], name="COADD")


def _good_columns(n=200):
    loglam = 3.58 + 1e-4 * np.arange(n) * 20
    return {"flux": np.full(n, 5.0), "loglam": loglam, "ivar": np.full(n, 4.0)}


BAD_FILES = {
    "not FITS": (lambda p: p.write_text("hello"), ["not a readable BOSS spec file"]),
    "apStar": (lambda p: _write(p, fits.ImageHDU(np.zeros(8575, np.float32))),
               ["HDU 1 is not a binary table (ImageHDU)", "COADD"]),
    "no HDU 1": (lambda p: _write(p, None), ["no HDU 1"]),
    "no ivar": (lambda p: _write(p, _table(**{k: v for k, v in _good_columns().items()
                                               if k != "ivar"})), ["no column ivar"]),
    "all-NaN flux": (lambda p: _write(p, _table(**{**_good_columns(),
                                                    "flux": np.full(200, np.nan)})),
                     ["flux is NaN", "every pixel"]),
    "ivar all zero": (lambda p: _write(p, _table(**{**_good_columns(), "ivar": np.zeros(200)})),
                      ["ivar is 0", "every pixel"]),
    "arrays in one row": (lambda p: _write(p, _table(**{k: v[None, :] for k, v in
                                                        _good_columns().items()})),
                          ["has shape (1, 200)", "one pixel per row"]),
    "one pixel": (lambda p: _write(p, _table(**{k: v[:1] for k, v in _good_columns().items()})),
                  ["holds 1 pixel"]),
    "wavelength in A": (lambda p: _write(p, _table(**{**_good_columns(), "loglam": 10 ** (
        _good_columns()["loglam"])})), ["not log10(wavelength / A)"]),
    "decreasing": (lambda p: _write(p, _table(**{**_good_columns(), "loglam": _good_columns()[
        "loglam"][::-1]})), ["does not increase"]),
    "infrared": (lambda p: _write(p, _table(**{**_good_columns(), "loglam": 4.18 + 1e-4 * (
        np.arange(200))})), ["none of BOSS Net's 3800 to 8900 A"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_each_bad_file_is_one_line_naming_it(tmp_path, case):
    make, words = BAD_FILES[case]
    path = tmp_path / "spec-1234-56789-0042.fits"
    make(path)
    with pytest.raises(ApnetError) as info:
        read_boss(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for word in words:
        assert word in message, message


def test_missing_and_truncated_files(boss_surveys, labels, tmp_path):
    with pytest.raises(ApnetError, match="no such file"):
        read_boss(tmp_path / "spec-0001-50000-0001.fits")
    cut = tmp_path / labels.FILE[0]
    data = (boss_surveys["lite"] / labels.FILE[0]).read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ApnetError, match=rf"^{cut}: not a readable BOSS spec file"):
        read_boss(cut)


def test_a_batch_with_a_bad_file_keeps_the_others(boss_surveys, labels, tmp_path):
    files = [boss_surveys["lite"] / f for f in labels.FILE[:4]]
    bad = tmp_path / "spec-0001-50000-0001.fits"
    BAD_FILES["ivar all zero"][0](bad)
    paths = [str(files[0]), str(bad)] + [str(f) for f in files[1:]]
    stack, failures = read_boss_batch(paths)
    assert len(failures) == 1 and failures[0].startswith(f"{bad}: ivar is 0")
    assert [s.path for s in stack.spectra] == [str(f) for f in files]
    assert stack.flux.shape == (4, 3900) and stack.flux.dtype == np.float32
    width = max(len(s.flux) for s in stack.spectra)
    assert stack.native_flux.shape == stack.err.shape == stack.bad.shape == (4, width)
    for k, spec in enumerate(stack.spectra):
        n = stack.n_pixels[k]
        assert n == len(spec.flux) and stack.bad[k, n:].all()
        assert np.isnan(stack.wavelength[k, n:]).all()
        np.testing.assert_array_equal(stack.flux[k], resample_boss(spec.flux, spec.wavelength))
        assert not np.isnan(stack.native_flux[k, :n]).any()  # astra's rule: NaN -> 0
    stack, failures = read_boss_batch([str(bad)])
    assert stack is None and len(failures) == 1
    with pytest.raises(ApnetError, match="nan_flux"):
        read_boss_batch(paths, nan_flux="nope")


def test_spec_names():
    assert spec_name(55182, plate=3606, fiber=679) == "spec-3606-55182-0679.fits"
    assert spec_name(59265, field=15223, catalogid=4515432683) == \
        "spec-015223-59265-4515432683.fits"
    assert spec_name(59265, field=15223, catalogid=1, pad_field=False) == "spec-15223-59265-1.fits"


def test_read_renamed_file_takes_identity_from_hdu2(boss_surveys, labels, tmp_path):
    row = labels[labels.CATALOGID.notna()].iloc[0]
    renamed = tmp_path / "my_star.fits"
    shutil.copy(boss_surveys["lite"] / row.FILE, renamed)
    spec = read_boss(renamed)
    assert spec.spec_id == row.SPEC_ID and spec.catalogid == row.CATALOGID


# ------------------------------------------------------------------ tables of BOSS files


def _sas_layout(boss_surveys, labels, root):
    """The lite survey's files under ``root`` in the SAS layouts: PLATE4/ and FIELD6/MJD/."""
    for row in labels.itertuples():
        sub = root / (f"{row.PLATE:04d}" if pd.isna(row.CATALOGID) else
                      f"{row.FIELD:06d}/{row.MJD}")
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(boss_surveys["lite"] / row.FILE, sub / row.FILE)


def test_fits_table_by_ids_in_sas_layout(boss_surveys, labels, tmp_path):
    root = tmp_path / "sas"
    _sas_layout(boss_surveys, labels, root)
    rows = labels[["PLATE", "MJD", "FIBERID", "FIELD", "CATALOGID"]].fillna(-1).astype(np.int64)
    table = tmp_path / "spAll.fits"
    cols = [fits.Column(name=c, format="K", array=np.append(rows[c].to_numpy(), v))
            for c, v in zip(rows.columns, (-1, 55555, -1, 12345, 27021599999999999))]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="SPALL")]).writeto(
        table)
    listing = read_boss_listing(str(table), str(root))
    found = [p.split("/")[-1] for p in listing.paths]
    assert found == list(labels.FILE) and listing.columns == {}
    from apnet_tf.io.survey_table import MissingRow, missing_note

    name = "spec-012345-55555-27021599999999999.fits"
    assert listing.missing == [MissingRow(9, name, name)] and listing.rows == 9
    note = missing_note(str(table), str(root), listing, None)
    assert f"1 of 9 rows name no file under {root} ({name})" in note


def test_csv_table_with_a_file_column_and_repeats(boss_surveys, labels, tmp_path):
    table = tmp_path / "files.csv"
    pd.concat([labels[["FILE"]], labels[["FILE"]].head(2)]).to_csv(table, index=False)
    listing = read_boss_listing(str(table), str(boss_surveys["lite"]))
    assert [p.split("/")[-1] for p in listing.paths] == list(labels.FILE)
    assert listing.missing == [] and len(listing.notes) == 1
    assert "2 rows name a file that an earlier row names" in listing.notes[0]
    # labels.csv of a synthetic survey is such a table, its 17-digit CATALOGIDs exact
    listing = read_boss_listing(str(boss_surveys["lite"] / "labels.csv"),
                                str(boss_surveys["lite"]))
    assert len(listing.paths) == len(labels)


@pytest.mark.parametrize("content,words", [
    ("RA,DEC\n1,2\n", ["names no spec file", "FILE or SPEC_FILE", "PLATE, MJD, FIBERID"]),
    (None, ["no such file"]),
])
def test_bad_tables(tmp_path, content, words):
    table = tmp_path / "t.csv"
    if content is not None:
        table.write_text(content)
    with pytest.raises(ApnetError) as info:
        read_boss_listing(str(table), str(tmp_path))
    assert str(info.value).startswith(str(table)) and all(w in str(info.value) for w in words)
    with pytest.raises(ApnetError, match="no such folder"):
        read_boss_listing(str(table), str(tmp_path / "nowhere"))


def test_catalog_schema_has_the_radial_velocity(tmp_path):
    from astropy.table import Table

    from apnet_tf.io.catalog import write_catalog
    from apnet_tf.io.catalog_schema import SCHEMA, schema_column

    names = [c.name for c in SCHEMA]
    assert names.index("FE_H_ERR") + 1 == names.index("RV") == names.index("RV_ERR") - 1
    for name in ("RV", "RV_ERR", "RV_P16", "RV_P50", "RV_P84"):
        assert schema_column(name).unit == "km/s" and schema_column(name).source == "model"
    assert schema_column("SPEC_ID").source == "header"
    table = Table({"SPEC_ID": ["3606-55182-0679"], "TEFF": [5000.0], "RV": [-12.5],
                   "RV_ERR": [1.5]})
    back = Table.read(write_catalog(table, str(tmp_path / "c.fits")))
    assert str(back["RV"].unit) == "km / s" and back["RV"][0] == -12.5
    assert back.colnames == ["SPEC_ID", "TEFF", "RV", "RV_ERR"]
