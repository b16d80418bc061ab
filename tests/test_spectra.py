import shutil

import numpy as np
import pytest
from astropy.io import fits

from apnet_tf.constants import CDELT1, CRVAL1, N_PIXELS, wavelength_grid
from apnet_tf.errors import ApnetError
from apnet_tf.io.spectra import bad_pixels, expand_paths, iter_spectra, read_apstar


def test_wavelength_grid_is_apstar_log_linear():
    wave = wavelength_grid()
    assert wave.shape == (N_PIXELS,)
    assert wave[0] == pytest.approx(10**4.179)
    assert np.log10(wave[1] / wave[0]) == pytest.approx(CDELT1)
    assert 15090 < wave[0] < 15110 and 16990 < wave[-1] < 17010


def test_all_real_apstar_files_read(apstar_files):
    assert len(apstar_files) == 24
    single_visit = negative = 0
    for path in apstar_files:
        spec = read_apstar(path)
        assert spec.flux.shape == spec.err.shape == spec.bad.shape == (N_PIXELS,)
        assert spec.flux.dtype == np.float32 and spec.bad.dtype == bool
        assert path.name == f"apStar-r6-{spec.apogee_id}.fits"
        assert np.isfinite(spec.flux).all()
        # about 840 chip-gap pixels carry error 1e10, and every one is flagged bad
        assert 780 < int((spec.err >= 1e9).sum()) < 950
        assert spec.bad[spec.err >= 1e9].all()
        assert np.isfinite([spec.snr, spec.ra, spec.dec]).all()
        with fits.open(path) as hdul:
            single_visit += hdul[1].data.ndim == 1
            row = hdul[1].data if hdul[1].data.ndim == 1 else hdul[1].data[0]
            np.testing.assert_array_equal(spec.flux, row)
        negative += bool((spec.flux < 0).any())
    assert single_visit == 1
    assert negative >= 1


def _write(path, flux, err=None, mask=None, n_hdus=4, crval=CRVAL1):
    err = np.ones_like(flux) if err is None else err
    mask = np.zeros(flux.shape, np.int16) if mask is None else mask
    prim = fits.PrimaryHDU()
    prim.header["OBJID"] = "2M00000000+0000000"
    hdus = [prim]
    for data in (flux, err, mask)[: n_hdus - 1]:
        h = fits.ImageHDU(data)
        h.header["CRVAL1"], h.header["CDELT1"] = crval, CDELT1
        hdus.append(h)
    fits.HDUList(hdus).writeto(path)
    return path


def _one_line_error(path, **kwargs):
    with pytest.raises(ApnetError) as info:
        read_apstar(path, **kwargs)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    return msg


def test_bad_files_get_one_line_errors(tmp_path, apstar_files):
    not_fits = tmp_path / "not.fits"
    not_fits.write_text("this is not FITS")
    _one_line_error(not_fits)

    truncated = tmp_path / "truncated.fits"
    data = apstar_files[0].read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    _one_line_error(truncated)

    short = _write(tmp_path / "short.fits", np.ones(8000, np.float32))
    assert "8575" in _one_line_error(short)

    missing = _write(tmp_path / "missing.fits", np.ones(N_PIXELS, np.float32), n_hdus=2)
    assert "HDU" in _one_line_error(missing)

    shifted = _write(tmp_path / "grid.fits", np.ones(N_PIXELS, np.float32), crval=4.2)
    assert "grid" in _one_line_error(shifted)

    _one_line_error(tmp_path / "absent.fits")


def test_bad_pixels_and_nonfinite_flux(tmp_path):
    flux = np.linspace(1, 2, N_PIXELS).astype(np.float32)
    err = np.full(N_PIXELS, 0.01, np.float32)
    mask = np.zeros(N_PIXELS, np.int16)
    flux[10], err[20], err[30], mask[40], mask[50] = np.nan, 1e10, np.inf, 1 << 0, 1 << 12
    spec = read_apstar(_write(tmp_path / "s.fits", flux, err, mask))
    assert spec.flux[10] == 0.0 and np.isfinite(spec.flux).all()
    assert set(np.flatnonzero(spec.bad)) == {10, 20, 30, 40}  # bit 12 (skyline) is not bad
    only_12 = bad_pixels(flux, err, mask, mask_bits=(12,))
    assert only_12[50] and not only_12[40]


def test_one_bad_file_does_not_stop_the_rest(tmp_path, apstar_files):
    shutil.copy(apstar_files[0], tmp_path / "a.fits")
    (tmp_path / "b.fits").write_text("garbage")
    shutil.copy(apstar_files[1], tmp_path / "c.fits")
    results = list(iter_spectra(expand_paths([tmp_path])))
    assert [r[1] is not None for r in results] == [True, False, True]
    assert "b.fits" in results[1][2]


def test_expand_paths_files_folders_globs(tmp_path, apstar_files):
    assert len(expand_paths([apstar_files[0].parent])) == 24
    assert len(expand_paths([str(apstar_files[0].parent / "apStar-r6-2M03*.fits")])) == 5
    with pytest.raises(ApnetError, match="matches no file"):
        expand_paths([tmp_path / "nothing*.fits"])


def test_fast_read_is_bit_identical_to_a_full_astropy_read(apstar_files):
    for path in apstar_files:
        spec = read_apstar(path)
        with fits.open(path, memmap=False) as hdul:
            rows = [h.data if h.data.ndim == 1 else h.data[0] for h in hdul[1:4]]
            header = hdul[0].header
            err = rows[1].astype(np.float32)
            err = np.where(np.isfinite(err), err, np.float32(1e10))
            assert spec.flux.tobytes() == rows[0].astype(np.float32).tobytes()
            assert spec.err.tobytes() == err.tobytes()
            assert (spec.bad == bad_pixels(rows[0], rows[1], rows[2])).all()
            assert (spec.apogee_id, spec.snr, spec.ra, spec.dec) == (
                header["OBJID"].strip(), header["SNR"], header["RA"], header["DEC"])


def _with_odd_cards(src, dst):
    """A copy of src whose primary header has two harmless non-standard cards astropy warns
    about: a non-ASCII comment (common in hand-edited files) and a value with no space after '='."""
    data = bytearray(src.read_bytes())
    for key, card in ((b"TELESCOP", b"TELESCOP= 'apo25m  '  / Universit\xe9 telescope"),
                      (b"FIELD   ", b"FIELD   ='M15'")):
        i = data.index(key + b"=")
        data[i:i + 80] = card.ljust(80)
    dst.write_bytes(bytes(data))
    return dst


def test_a_harmless_header_warning_does_not_make_a_file_unreadable(tmp_path, apstar_files):
    import gzip

    odd = _with_odd_cards(apstar_files[0], tmp_path / "odd.fits")
    with pytest.warns(UserWarning):  # astropy does warn about them
        fits.getheader(odd)
    zipped = tmp_path / "odd.fits.gz"
    zipped.write_bytes(gzip.compress(odd.read_bytes()))  # read through astropy, not the fast path
    want = read_apstar(apstar_files[0])
    for path in (odd, zipped):
        spec = read_apstar(path)
        assert spec.flux.tobytes() == want.flux.tobytes() and spec.apogee_id == want.apogee_id
    truncated = tmp_path / "cut.fits.gz"
    truncated.write_bytes(gzip.compress(odd.read_bytes()[:60000]))
    _one_line_error(truncated)
