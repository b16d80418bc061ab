"""apStar files stored as scaled integers (BSCALE/BZERO): a chip gap's 0 comes back as the
nearest quantisation step, and must be read as a gap again (BAD_INPUT.md, "Scaled integers")."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from cli_helpers import cli


def _int16_copy(src, dst, hdus=(1,)):
    """``src`` with the images ``hdus`` stored as int16 with astropy's min-max BSCALE/BZERO."""
    with fits.open(src) as hdul:
        for k in hdus:
            hdul[k].scale("int16", "minmax")
        hdul.writeto(dst)
    return dst


@pytest.mark.parametrize("hdus", [(1,), (1, 2)])
def test_chip_gaps_of_a_scaled_integer_file_are_zero(apstar_files, tmp_path, hdus):
    """Fails on the old code: the gaps read as 0.0035, not 0."""
    from apnet_tf.io.spectra import read_apstar

    src = apstar_files[0]
    want = read_apstar(src)
    got = read_apstar(_int16_copy(src, tmp_path / src.name, hdus))
    gaps = want.flux == 0
    assert 500 < gaps.sum() < 1500  # the chip gaps of a real DR13 file
    assert (got.flux[gaps] == 0).all(), np.unique(got.flux[gaps])[:5]
    np.testing.assert_array_equal(got.bad, want.bad)
    # every other pixel keeps its value to the file's precision, masked ones included
    step = float(fits.getheader(tmp_path / src.name, 1)["BSCALE"])
    np.testing.assert_allclose(got.flux[~gaps], want.flux[~gaps], rtol=0, atol=step)
    assert (got.flux[~gaps] != 0).all()


def test_a_float_file_is_read_as_it_is(apstar_files):
    """Only scaled integers change: a float file's masked pixels keep their flux."""
    from apnet_tf.io.spectra import read_apstar

    with fits.open(apstar_files[0]) as hdul:
        flux = np.asarray(hdul[1].data[0] if hdul[1].data.ndim == 2 else hdul[1].data)
    got = read_apstar(apstar_files[0])
    np.testing.assert_array_equal(got.flux, np.nan_to_num(flux.astype(np.float32)))


def test_infer_gives_a_scaled_integer_file_the_float_files_numbers(apstar_files, untrained_run,
                                                                  tmp_path):
    """Fails on the old code: the flux scaling turned the gaps into -1, not 0 (Teff 4419 K
    instead of 4526 K with a trained network)."""
    src = apstar_files[0]
    (tmp_path / "float").mkdir()
    (tmp_path / "int").mkdir()
    (tmp_path / "float" / src.name).write_bytes(src.read_bytes())
    _int16_copy(src, tmp_path / "int" / src.name)
    teff = {}
    for kind in ("float", "int"):
        res = cli("infer", "--model", untrained_run, "--spectra", tmp_path / kind, "--out",
                  tmp_path / f"{kind}.csv", "--mc", 0)
        assert res.exit_code == 0, res.output
        teff[kind] = float(Table.read(tmp_path / f"{kind}.csv", format="ascii.ecsv")["TEFF"][0])
    assert abs(teff["int"] - teff["float"]) < 1.0, teff
