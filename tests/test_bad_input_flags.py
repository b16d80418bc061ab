"""Issue 21, item 4: APNET_FLAG, a quality bitmask with named bits (io.catalog_flags.FLAG_BITS),
set from the input spectrum and the predictions on every model path (Keras run, SavedModel,
TFLite; with and without Monte Carlo). Garbage spectra are BAD with a reason, never a star."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from cli_helpers import cli

from apnet_tf.io.catalog_flags import BAD_BITS, FLAG_BITS, flag_value

GARBAGE = {  # file stem -> (how the flux/err HDUs are changed, the bit that must be set)
    "zero": "FLUX_NOT_POSITIVE", "swapped": "FLUX_SCALE", "negative": "FLUX_NOT_POSITIVE",
    "zeroerr": "BAD_ERRORS", "nanflux": "NO_USABLE_PIXEL",
}


def _spoil(src, dst, how):
    with fits.open(src) as hdul:
        hdul = fits.HDUList([h.copy() for h in hdul])
    flux = np.array(hdul[1].data, dtype=">f4")
    if how == "zero":
        hdul[1].data = np.zeros_like(flux)
    elif how == "swapped":
        hdul[1].data = flux.view(flux.dtype.newbyteorder())  # the same bytes, read the other way
    elif how == "negative":
        hdul[1].data = -flux
    elif how == "zeroerr":
        hdul[2].data = np.zeros_like(np.asarray(hdul[2].data, ">f4"))
    elif how == "nanflux":
        hdul[1].data = np.full_like(flux, np.nan)
    hdul.writeto(dst)


@pytest.fixture(scope="module")
def garbage(small_survey, tmp_path_factory):
    folder = tmp_path_factory.mktemp("garbage")
    good = sorted(small_survey.glob("apStar-*.fits"))[0]
    shutil.copy(good, folder / "apStar-good.fits")
    for how in GARBAGE:
        _spoil(good, folder / f"apStar-{how}.fits", how)
    return folder


@pytest.fixture(scope="module")
def models(untrained_run, tmp_path_factory):
    from apnet_tf.export.model_export import export_model

    out = tmp_path_factory.mktemp("flag_export") / "net"
    export_model(str(untrained_run), str(out), tflite=["float32"], mc=4)
    return {"run": untrained_run, "saved_model": out / "1",
            "tflite": out / "net_float32.tflite"}


def test_the_bits_are_named_once_and_documented():
    names = [b.name for b in FLAG_BITS]
    assert len(set(names)) == len(names) and len({b.bit for b in FLAG_BITS}) == len(names)
    assert all(b.meaning for b in FLAG_BITS)
    assert {"FLUX_NOT_POSITIVE", "FLUX_SCALE", "BAD_ERRORS", "NO_USABLE_PIXEL",
            "OUTSIDE_LABEL_RANGE", "LOW_SNR", "TEFF_EDGE", "ZERO_SPREAD"} <= set(names)


@pytest.mark.parametrize("kind", ["run", "saved_model", "tflite"])
@pytest.mark.parametrize("mc", ["0", "3"])
def test_garbage_spectra_are_bad_with_a_reason_on_every_path(garbage, models, tmp_path, kind,
                                                             mc):
    out = tmp_path / "cat.csv"
    res = cli("infer", "--model", models[kind], "--spectra", garbage, "--out", out, "--mc", mc,
              "--raw-sigma", "--seed", "1")
    assert res.exit_code == 0, res.output
    cat = Table.read(out, format="ascii.ecsv")
    rows = {f.split("apStar-")[-1][:-5]: row for f, row in zip(cat["FILE"], cat)}
    for how, bit in GARBAGE.items():
        row = rows[how]
        assert row["BAD"], (how, kind, mc)
        assert int(row["APNET_FLAG"]) & flag_value(bit), (how, int(row["APNET_FLAG"]))
        assert int(row["APNET_FLAG"]) & BAD_BITS
        # garbage in: no number that looks like a star
        assert not np.isfinite(row["TEFF"]), (how, row["TEFF"])
    good = rows["good"]
    assert not int(good["APNET_FLAG"]) & (flag_value("FLUX_NOT_POSITIVE") | flag_value(
        "FLUX_SCALE") | flag_value("BAD_ERRORS") | flag_value("NO_USABLE_PIXEL"))
    assert bool(good["BAD"]) == bool(int(good["APNET_FLAG"]) & BAD_BITS)


def test_input_flags_on_arrays():
    from apnet_tf.io.catalog_flags import flag_names, input_flags

    rng = np.random.default_rng(0)
    good = rng.uniform(80, 120, 200)
    flux = np.stack([good, np.zeros(200), -good, good, good, good])
    err = np.stack([np.full(200, 2.0)] * 6)
    err[3] = 0.0
    flux[4] = good.astype("<f4").view(">f4").astype(float)
    bad = np.zeros_like(flux, bool)
    bad[5] = True
    got = [flag_names(v) for v in input_flags(flux, err, bad)]
    assert got[0] == []
    assert "FLUX_NOT_POSITIVE" in got[1] and "FLUX_NOT_POSITIVE" in got[2]
    assert got[3] == ["BAD_ERRORS"] and "FLUX_SCALE" in got[4]
    assert got[5] == ["NO_USABLE_PIXEL", "MANY_BAD_PIXELS"]


def test_fits_catalog_describes_the_bitmask(garbage, models, tmp_path):
    out = tmp_path / "cat.fits"
    res = cli("infer", "--model", models["run"], "--spectra", garbage, "--out", out, "--mc", "0")
    assert res.exit_code == 0, res.output
    with fits.open(out) as hdul:
        header, names = hdul["CATALOG"].header, hdul["CATALOG"].columns.names
        flag = str(header[f"TCOMM{names.index('APNET_FLAG') + 1}"])
        bad = str(header[f"TCOMM{names.index('BAD') + 1}"])
        assert hdul["CATALOG"].data["APNET_FLAG"].dtype.kind == "i"
    # every bit, by number and name, in the order of FLAG_BITS; BAD names the BAD bits only
    listed = flag.split("quality bitmask: ", 1)[1].split(" (", 1)[0].split(", ")
    assert listed == [f"{b.bit} {b.name}" for b in FLAG_BITS]
    assert bad.split(" is set: ", 1)[1].split(", ") == [b.name for b in FLAG_BITS if b.bad]


def test_the_guide_tabulates_every_bit():
    """docs/catalog.md holds the guide's directive, and the directive's table has a row for
    every bit: its number, value, name, whether it makes BAD, its test and its meaning
    (tests/test_docs.py checks the built page)."""
    import sys
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs"
    assert ".. apnet-tf-flag-bits::" in (docs / "catalog.md").read_text()
    sys.path.insert(0, str(docs / "_ext"))
    try:
        from catalog_columns import flag_rows
    finally:
        sys.path.remove(str(docs / "_ext"))
    assert flag_rows() == [[str(b.bit), str(2**b.bit), b.name, "yes" if b.bad else "no",
                            b.test or b.meaning, b.meaning] for b in FLAG_BITS]


def test_a_non_finite_prediction_is_bad_whatever_the_pixel_mask_says():
    """MANY_BAD_PIXELS is an input bit but not a BAD one: it must not hide NOT_FINITE (a NaN
    prediction of a heavily masked spectrum was once BAD false)."""
    from apnet_tf.io.catalog_flags import flags

    nan = np.array([np.nan])
    out = flags(nan, nan, nan, np.full((1, 3), np.nan), np.array([50.0]),
                [(3000.0, 7000.0), (0.0, 5.0), (-2.0, 0.5)],
                np.array([flag_value("MANY_BAD_PIXELS")]), np.full((1, 3), np.nan))
    assert out["APNET_FLAG"][0] & flag_value("NOT_FINITE") and out["BAD"][0]
