"""Reading SDSS BOSS spectra: ``spec-*.fits`` files, lite and full, SDSS-IV and SDSS-V.

A BOSS spec file is named ``spec-PLATE-MJD-FIBER.fits`` (SDSS-IV, e.g.
``spec-3606-55182-0679.fits``) or ``spec-FIELD-MJD-CATALOGID.fits`` (SDSS-V, e.g.
``spec-015223-59265-4515432683.fits``). Its HDUs (the SDSS data model, "spec" and "specLite"):

* HDU 0: header only. PLUG_RA and PLUG_DEC are the target's position; RA and DEC there are the
  telescope's boresight, never used for the star.
* HDU 1 (COADD): the coadded spectrum, a binary table with one row per pixel: ``flux``
  (1e-17 erg/s/cm^2/A), ``loglam`` (log10 of the vacuum wavelength in A), ``ivar`` (inverse
  variance of flux), and where present ``and_mask``, ``or_mask``, ``wdisp``, ``sky``,
  ``model`` and (SDSS-V) ``wresl``. Column names are read in either case (DR17 lower, DR16 and
  DR19 upper).
* HDU 2 (SPALL): the spAll row of the spectrum: PLATE, MJD, FIBERID (SDSS-IV) or FIELD, MJD,
  CATALOGID (SDSS-V), PLUG_RA, PLUG_DEC, OBJID, SN_MEDIAN_ALL, ...
* HDU 3 and on: line fits, and in full files one HDU per exposure and camera; never read, so a
  full file reads as fast as a lite one.

``read_boss`` returns the native spectrum (``BossSpectrum``); ``io.boss_grid`` puts it on BOSS
Net's grid. A file that is not a usable BOSS spectrum raises ApnetError with one line naming
the file and the problem, so a batch reports it and goes on with the others
(``iter_boss``, ``read_boss_batch``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections.abc import Iterator, Sequence

import numpy as np

from apnet_tf.constants import BOSS_WAVE_MAX, BOSS_WAVE_MIN
from apnet_tf.errors import ApnetError
from apnet_tf.io.boss_grid import ivar_to_error, native_flux, resample_boss
from apnet_tf.io.fastfits import Unsupported
from apnet_tf.io.fasttable import read_tables
from apnet_tf.io.spectra import bad_pixels, check_truncation, header_float, unreadable

__all__ = [
    "KIND", "COLUMNS", "OPTIONAL_COLUMNS", "SPALL_KEYS", "SPEC_NAME", "LOGLAM_RANGE",
    "BossSpectrum", "BossStack", "spec_name", "read_boss", "iter_boss", "stack_boss",
    "read_boss_batch",
]

#: What a BOSS file is called in messages.
KIND = "BOSS spec file"
#: HDU 1 (COADD) columns a spectrum needs, and those read where present.
COLUMNS = ("flux", "loglam", "ivar")
OPTIONAL_COLUMNS = ("and_mask", "or_mask", "wdisp", "sky", "model", "wresl")
#: HDU 2 (SPALL) and primary-header values used.
SPALL_KEYS = ("PLATE", "FIELD", "MJD", "FIBERID", "CATALOGID", "OBJID", "PLUG_RA", "PLUG_DEC",
              "SN_MEDIAN_ALL")
_PRIMARY_KEYS = ("PLUG_RA", "PLUG_DEC", "MJD")
#: spec-A-B-C.fits: plate-mjd-fiber when C has at most 4 digits (fibers 1-1000), else
#: field-mjd-catalogid.
SPEC_NAME = re.compile(r"spec-(\d+)-(\d+)-(\d+)\.fits?(?:\.gz)?")
#: log10(wavelength / A) outside this range is not a wavelength of an optical spectrum
#: (1,000 to 100,000 A): a file with wavelengths in A or nm under loglam, say.
LOGLAM_RANGE = (3.0, 5.0)


@dataclasses.dataclass
class BossSpectrum:
    """One BOSS spectrum as its spec file holds it. Pixel arrays have the file's N pixels
    (about 4,600), in increasing wavelength.

    Attributes:
        spec_id: PLATE-MJD-FIBER or FIELD-MJD-CATALOGID, as in the file's name.
        object_id: the CATALOGID (SDSS-V), else the OBJID (SDSS-IV imaging), else spec_id.
        wavelength: float32 (N,), vacuum Angstrom, ``10 ** loglam`` in float32.
        flux: float32 (N,), 1e-17 erg/s/cm^2/A, as in the file (NaN kept: ``io.boss_grid``
            applies a NaN rule).
        ivar: float32 (N,), as in the file.
        err: float32 (N,), ``boss_grid.ivar_to_error(ivar)``: what the Monte Carlo draws with.
        bad: bool (N,): flux or ivar not finite, ivar <= 0, or a chosen ``and_mask`` bit.
        and_mask, or_mask: int32 (N,); wdisp, sky, model, wresl: float32 (N,); None if absent.
        snr: SN_MEDIAN_ALL of HDU 2; else the median flux * sqrt(ivar) of the good pixels.
        ra, dec: PLUG_RA, PLUG_DEC (deg) of HDU 2, else of the primary header; else NaN.
        plate, fiber (SDSS-IV) or field, catalogid (SDSS-V), and mjd: -1 where unknown.
    """

    path: str
    spec_id: str
    object_id: str
    wavelength: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    err: np.ndarray
    bad: np.ndarray
    snr: float = float("nan")
    ra: float = float("nan")
    dec: float = float("nan")
    mjd: int = -1
    plate: int = -1
    fiber: int = -1
    field: int = -1
    catalogid: int = -1
    and_mask: np.ndarray | None = None
    or_mask: np.ndarray | None = None
    wdisp: np.ndarray | None = None
    sky: np.ndarray | None = None
    model: np.ndarray | None = None
    wresl: np.ndarray | None = None


def spec_name(mjd: int, *, plate: int | None = None, fiber: int | None = None,
              field: int | None = None, catalogid: int | None = None,
              pad_field: bool = True) -> str:
    """The file name of a spectrum: ``spec-PLATE4-MJD5-FIBER4.fits`` (SDSS-IV) or
    ``spec-FIELD6-MJD-CATALOGID.fits`` (SDSS-V; ``pad_field=False`` for the v6_0_1 to v6_0_4
    reductions, which did not zero-pad the field)."""
    if catalogid is not None and field is not None:
        return f"spec-{field:06d}-{mjd}-{catalogid}.fits" if pad_field else \
            f"spec-{field}-{mjd}-{catalogid}.fits"
    if plate is None or fiber is None:
        raise ApnetError("spec_name: give plate and fiber, or field and catalogid")
    return f"spec-{plate:04d}-{mjd:05d}-{fiber:04d}.fits"


def read_boss(path: str | os.PathLike, mask_bits: Sequence[int] = ()) -> BossSpectrum:
    """Read the coadded spectrum of one BOSS spec file, and its identity, position and S/N.

    Args:
        mask_bits: ``and_mask`` bits that make a pixel bad (none by default: BOSS Net uses no
            mask).

    Raises:
        ApnetError: the file is missing or not FITS; HDU 1 is not a binary table; a column of
            ``COLUMNS`` is missing or holds arrays; the wavelengths are not log10 of increasing
            wavelengths in A, or miss BOSS Net's 3800-8900 A; the flux is NaN everywhere; no
            pixel has ivar > 0; or anything else goes wrong with the file. The message names
            the file.
    """
    path = os.fspath(path)
    try:
        return _read_boss(path, tuple(mask_bits))
    except ApnetError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever one file does, the batch goes on
        raise unreadable(path, exc, KIND) from None


def _read_boss(path: str, mask_bits: tuple[int, ...]) -> BossSpectrum:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cols, info = _read_hdus(path)
    check_truncation(caught, path, KIND)
    wavelength = _checked(cols, path)
    flux, ivar = cols["flux"], cols["ivar"]
    with np.errstate(all="ignore"):
        raw_err = ivar.astype(np.float64) ** -0.5  # inf or NaN where ivar <= 0: bad pixels
        fallback = 0.1 * float(np.median(native_flux(flux)))
    spec = BossSpectrum(
        path=path, wavelength=wavelength, flux=flux, ivar=ivar,
        err=ivar_to_error(ivar, fallback),
        bad=bad_pixels(flux, raw_err, cols.get("and_mask"), mask_bits),
        **{c: cols.get(c) for c in OPTIONAL_COLUMNS}, **_identity(path, info))
    snr = header_float(info, "SN_MEDIAN_ALL")
    if not np.isfinite(snr):
        good = ~spec.bad
        snr = float(np.median(flux[good] * np.sqrt(ivar[good]))) if good.any() else np.nan
    spec.snr = snr
    for name, key in (("ra", "PLUG_RA"), ("dec", "PLUG_DEC")):
        setattr(spec, name, header_float(info, key))
    return spec


def _read_hdus(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """The COADD columns (lower-case names, native byte order) and the SPALL row's and primary
    header's values (SPALL's win): straight from the bytes where ``fasttable`` can, else with
    astropy."""
    try:
        primary, tables = read_tables(path, _PRIMARY_KEYS, {1: COLUMNS + OPTIONAL_COLUMNS,
                                                            2: SPALL_KEYS}, {2: 1})
    except Unsupported:
        return _read_hdus_astropy(path)
    _require(tables[1], path)
    info = dict(primary)
    info.update({k.upper(): v[0] for k, v in tables.get(2, {}).items() if len(v)})
    return tables[1], info


def _require(names, path: str) -> None:
    absent = [c for c in COLUMNS if c not in names]
    if absent:
        raise ApnetError(f"{path}: HDU 1 (COADD) has no column {', '.join(absent)}; a "
                         f"{KIND} has {', '.join(COLUMNS)}")


def _read_hdus_astropy(path: str) -> tuple[dict[str, np.ndarray], dict]:
    # imported here: a reader process that never meets a BOSS file does not pay for it
    from astropy.io import fits

    with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
        try:
            coadd = hdul[1]
        except IndexError:
            raise ApnetError(f"{path}: has no HDU 1; a {KIND} holds its coadded spectrum in "
                             "HDU 1 (COADD)") from None
        if not isinstance(coadd, fits.BinTableHDU):
            raise ApnetError(f"{path}: HDU 1 is not a binary table ({type(coadd).__name__}); "
                             f"a {KIND} holds its coadded spectrum there (COADD)")
        names = {n.lower(): n for n in coadd.columns.names}
        _require(names, path)
        data = coadd.data
        cols = {c: np.array(data[names[c]]) for c in COLUMNS + OPTIONAL_COLUMNS if c in names}
        info = {k: hdul[0].header.get(k) for k in _PRIMARY_KEYS}
        info.update(_spall_row(hdul, fits))
    return cols, info


def _spall_row(hdul, fits) -> dict:
    """SPALL_KEYS of HDU 2's first row; {} when there is no such table."""
    try:
        hdu = hdul[2]
    except IndexError:
        return {}
    if not isinstance(hdu, fits.BinTableHDU) or hdu.data is None or len(hdu.data) == 0:
        return {}
    names = {n.upper(): n for n in hdu.columns.names}
    row = hdu.data[0]
    return {k: row[names[k]] for k in SPALL_KEYS if k in names}


def _checked(cols: dict[str, np.ndarray], path: str) -> np.ndarray:
    """Check the COADD columns (in place: float32 pixel arrays, native byte order); return the
    wavelengths, float32 (N,)."""
    for name, values in cols.items():
        if values.ndim != 1:
            raise ApnetError(f"{path}: COADD column {name} has shape {values.shape}; a {KIND} "
                             "holds one pixel per row")
        kind = np.int32 if name.endswith("mask") else np.float32
        cols[name] = values.astype(kind)
    n = len(cols["flux"])
    if n < 2:
        raise ApnetError(f"{path}: HDU 1 (COADD) holds {n} pixel(s); a spectrum needs more")
    loglam = cols["loglam"]
    if not np.isfinite(loglam).all():
        raise ApnetError(f"{path}: loglam holds {int((~np.isfinite(loglam)).sum())} NaN or "
                         "infinite value(s)")
    lo, hi = LOGLAM_RANGE
    if loglam.min() < lo or loglam.max() > hi:
        raise ApnetError(f"{path}: loglam holds {loglam.min():g} to {loglam.max():g}, not "
                         f"log10(wavelength / A) of an optical spectrum ({lo:g} to {hi:g})")
    steps = np.diff(loglam)
    if (steps <= 0).any():
        raise ApnetError(f"{path}: loglam does not increase at pixel {int(np.argmax(steps <= 0))}"
                         "; the wavelengths must increase")
    wavelength = (10 ** loglam).astype(np.float32)  # in float32, as the authors compute it
    if wavelength[-1] < BOSS_WAVE_MIN or wavelength[0] > BOSS_WAVE_MAX:
        raise ApnetError(f"{path}: covers {wavelength[0]:.0f} to {wavelength[-1]:.0f} A, none "
                         f"of BOSS Net's {BOSS_WAVE_MIN:.0f} to {BOSS_WAVE_MAX:.0f} A")
    if not np.isfinite(cols["flux"]).any():
        raise ApnetError(f"{path}: flux is NaN or infinite at every pixel")
    ivar = cols["ivar"]
    if not (np.isfinite(ivar) & (ivar > 0)).any():
        raise ApnetError(f"{path}: ivar is 0, negative or NaN at every pixel: no pixel has a "
                         "usable error")
    return wavelength


def _whole(info: dict, key: str) -> int:
    """A whole number of ``info`` (exact: CATALOGIDs have 17 digits); -1 when it has none."""
    value = info.get(key)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    number = header_float(info, key)
    return int(number) if np.isfinite(number) and number == int(number) else -1


def _identity(path: str, info: dict) -> dict:
    """spec_id, object_id, mjd and plate/fiber or field/catalogid, from HDU 2 where it says,
    else from the file's name."""
    ids = {k.lower(): _whole(info, k) for k in ("PLATE", "MJD", "CATALOGID")}
    ids["fiber"] = _whole(info, "FIBERID")
    ids["field"] = _whole(info, "FIELD") if ids["catalogid"] >= 0 else -1  # SDSS-IV: imaging
    match = SPEC_NAME.fullmatch(os.path.basename(path))
    if match:
        a, b, c = match.groups()
        sdss5 = len(c) > 4
        keys = ("field", "mjd", "catalogid") if sdss5 else ("plate", "mjd", "fiber")
        for key, text in zip(keys, (a, b, c)):
            ids[key] = ids[key] if ids[key] >= 0 else int(text)
        spec_id = f"{a}-{b}-{c}"
    elif ids["catalogid"] >= 0 and ids["field"] >= 0:
        spec_id = spec_name(ids["mjd"], field=ids["field"], catalogid=ids["catalogid"])[5:-5]
    elif ids["plate"] >= 0 and ids["fiber"] >= 0:
        spec_id = spec_name(ids["mjd"], plate=ids["plate"], fiber=ids["fiber"])[5:-5]
    else:
        spec_id = os.path.basename(path).split(".fit")[0]
    objid = info.get("OBJID", "") or ""
    objid = (objid.decode("ascii", "replace") if isinstance(objid, bytes) else str(objid)).strip()
    object_id = (str(ids["catalogid"]) if ids["catalogid"] >= 0 else
                 objid if objid.strip("0") else spec_id)
    return {"spec_id": spec_id, "object_id": object_id, **ids}


def iter_boss(paths: Sequence[str], mask_bits: Sequence[int] = (),
              ) -> Iterator[tuple[str, BossSpectrum | None, str | None]]:
    """Yield (path, spectrum, None) for each readable file and (path, None, error) for the
    others; one bad file never stops the rest."""
    for path in paths:
        try:
            yield path, read_boss(path, mask_bits), None
        except ApnetError as exc:
            yield path, None, str(exc)


@dataclasses.dataclass
class BossStack:
    """B BOSS spectra as arrays: on BOSS Net's grid, and native (padded to the longest, L).

    Attributes:
        flux: float32 (B, 3900): the model's input (``resample_boss`` under the NaN rule).
        native_flux: float32 (B, L): the NaN rule applied; NaN after each row's pixels.
        err: float32 (B, L): ``BossSpectrum.err``; NaN padding.
        wavelength: float32 (B, L): NaN padding (``resample_boss`` drops it).
        bad: bool (B, L): ``BossSpectrum.bad``; True on the padding.
        n_pixels: int (B,); spectra: the B records, in order.
    """

    flux: np.ndarray
    native_flux: np.ndarray
    err: np.ndarray
    wavelength: np.ndarray
    bad: np.ndarray
    n_pixels: np.ndarray
    spectra: list[BossSpectrum]


def stack_boss(spectra: Sequence[BossSpectrum], nan_flux: str = "zero") -> BossStack:
    """The arrays of a batch of spectra (``BossStack``); ``nan_flux`` as in ``io.boss_grid``."""
    n = np.array([len(s.flux) for s in spectra], dtype=np.int64)
    width = int(n.max()) if len(n) else 0

    def padded(arrays, fill, dtype):
        out = np.full((len(arrays), width), fill, dtype=dtype)
        for row, values in zip(out, arrays):
            row[:len(values)] = values
        return out

    flux = padded([native_flux(s.flux, nan_flux) for s in spectra], np.nan, np.float32)
    wave = padded([s.wavelength for s in spectra], np.nan, np.float32)
    return BossStack(resample_boss(flux, wave, nan_flux).reshape(len(spectra), -1), flux,
                     padded([s.err for s in spectra], np.nan, np.float32), wave,
                     padded([s.bad for s in spectra], True, bool), n, list(spectra))


def read_boss_batch(paths: Sequence[str], nan_flux: str = "zero", mask_bits: Sequence[int] = (),
                    ) -> tuple[BossStack | None, list[str]]:
    """Read BOSS files into one ``BossStack`` (None when none could be read) and one line per
    bad file, in ``paths`` order."""
    native_flux([], nan_flux)  # an unknown rule is an error before any file is read
    spectra, failures = [], []
    for _, spec, error in iter_boss(paths, mask_bits):
        if spec is None:
            failures.append(error)
        else:
            spectra.append(spec)
    return (stack_boss(spectra, nan_flux) if spectra else None), failures
