"""Reading apStar spectra with astropy.

An apStar file holds the flux in HDU1, its error in HDU2 and the pixel mask in HDU3. In a
multi-visit file each is an array of shape (NVISITS + 2, 8575) whose row 0 is the combined
spectrum; in a single-visit file each is a 1-D array of shape (8575,).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from apnet_tf.constants import BAD_ERROR_THRESHOLD, CDELT1, CRVAL1, N_PIXELS
from apnet_tf.errors import ApnetError, first_line
from apnet_tf.io import fastfits

__all__ = [
    "DEFAULT_MASK_BITS", "PRIMARY_KEYS", "GRID_KEYS", "SPECTRUM_PATTERNS", "Spectrum",
    "bad_pixels", "finite_spectrum", "header_float", "check_grid", "read_apstar",
    "check_truncation", "unreadable", "read_apogee_id", "id_from_name", "expand_paths",
    "iter_spectra"
]

#: apStar PIXMASK bits that make a pixel bad by default: BADPIX, CRPIX, SATPIX, UNFIXABLE,
#: BADDARK, BADFLAT, BADERR. The persistence, sky and telluric bits only flag a risk, so they
#: stay out of the default set; pass ``mask_bits`` to change it.
DEFAULT_MASK_BITS = (0, 1, 2, 3, 4, 5, 6)

#: Primary-header keywords a Spectrum uses, and the flux header's wavelength-grid keywords.
PRIMARY_KEYS = ("OBJID", "SNR", "RA", "DEC")
GRID_KEYS = ("CRVAL1", "CDELT1")

#: File name patterns that count as spectra when a folder is given.
SPECTRUM_PATTERNS = ("*.fits", "*.fits.gz", "*.fit")


@dataclasses.dataclass
class Spectrum:
    """One combined apStar spectrum.

    Attributes:
        apogee_id: the APOGEE ID (OBJID in the primary header).
        flux: float32 array, shape (8575,); non-finite values are set to 0.
        err: float32 array, shape (8575,); 1e10 at chip gaps in real files.
        bad: bool array, shape (8575,); True where the pixel must not be trusted.
        snr: the header's median S/N (NaN if absent).
        ra, dec: J2000 degrees (NaN if absent).
        path: the file it came from.
        raw_flux, raw_err: float32 (8575,), row 0 as the file holds it, NaN and infinities
            kept, where the row holds any (else None: flux and err are the file's values).
            The published networks clean them by their own rules
            (``model.network_inputs``).
    """

    apogee_id: str
    flux: np.ndarray
    err: np.ndarray
    bad: np.ndarray
    snr: float = float("nan")
    ra: float = float("nan")
    dec: float = float("nan")
    path: str = ""
    raw_flux: np.ndarray | None = None
    raw_err: np.ndarray | None = None


def bad_pixels(flux: np.ndarray, err: np.ndarray, mask: np.ndarray | None = None,
               mask_bits: Sequence[int] = DEFAULT_MASK_BITS) -> np.ndarray:
    """Boolean bad-pixel array: huge or non-finite error, non-finite flux, or a chosen mask bit.

    All arrays have the same shape; the result has that shape too.
    """
    bad = ~np.isfinite(flux) | ~np.isfinite(err) | (err >= BAD_ERROR_THRESHOLD)
    if mask is not None and len(mask_bits):
        bitmask = sum(1 << int(b) for b in mask_bits)
        bad |= (np.asarray(mask).astype(np.int64) & bitmask) != 0
    return bad


def finite_spectrum(flux: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``flux`` and ``err`` as float32 with what the network cannot take replaced: non-finite
    flux by 0, non-finite error by 1e10 (``bad_pixels`` marks both pixels bad first)."""
    flux = np.asarray(flux, np.float32)
    err = np.asarray(err, np.float32)
    return (np.where(np.isfinite(flux), flux, np.float32(0.0)).astype(np.float32),
            np.where(np.isfinite(err), err, np.float32(1e10)).astype(np.float32))


def header_float(header, key: str) -> float:
    """``header[key]`` as a float; NaN when it is absent or not a number."""
    try:
        return float(header[key])
    except (KeyError, TypeError, ValueError):
        return float("nan")


def _combined_row(data: np.ndarray | None, name: str, path: str) -> np.ndarray:
    if data is None:
        raise ApnetError(f"{path}: HDU {name} holds no data")
    if data.ndim != 1 or data.shape[0] != N_PIXELS:
        raise ApnetError(f"{path}: HDU {name} has shape {data.shape}, expected ({N_PIXELS},) "
                         f"or (NVISITS+2, {N_PIXELS})")
    return data


def check_grid(header, path: str) -> None:
    """Raise ApnetError if a flux header's wavelength grid differs from the apStar grid."""
    crval, cdelt = header.get("CRVAL1"), header.get("CDELT1")
    if crval is None or cdelt is None:
        return  # headers without a WCS are taken to be on the standard grid
    if abs(float(crval) - CRVAL1) > 1e-9 or abs(float(cdelt) - CDELT1) > 1e-12:
        raise ApnetError(f"{path}: wavelength grid CRVAL1={crval}, CDELT1={cdelt} differs from "
                         f"the apStar grid CRVAL1={CRVAL1}, CDELT1={CDELT1}")


def read_apstar(path: str | os.PathLike, mask_bits: Sequence[int] = DEFAULT_MASK_BITS) -> Spectrum:
    """Read the combined spectrum of one apStar file: row 0 of HDUs 1-3 and nothing else.

    Raises:
        ApnetError: the file is missing, not FITS, truncated, has a missing HDU, the wrong length
            or a different wavelength grid; or anything else goes wrong with it. The message
            names the file, so that a batch reports it and goes on with the others.
    """
    path = os.fspath(path)
    try:
        return _read_apstar(path, mask_bits)
    except ApnetError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever one file does, the batch goes on
        raise unreadable(path, exc) from None


def _read_apstar(path: str, mask_bits: Sequence[int]) -> Spectrum:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        header, rows, step = _read_rows(path)
    check_truncation(caught, path)
    check_grid(header, path)
    flux, err, mask = (_combined_row(r, name, path) for r, name in zip(rows, _HDU_NAMES))
    flux = flux.astype(np.float32)  # native byte order; values unchanged
    err = err.astype(np.float32)
    bad = bad_pixels(flux, err, mask, mask_bits)
    # the file's values go on only where they hold NaN or infinities: the clean rows are then
    # the file's, and a reader process sends no second copy of them
    raw_flux = None if np.isfinite(flux).all() else flux
    raw_err = None if np.isfinite(err).all() else err
    if step:
        # Scaled integers hold no exact 0: a chip gap's 0 reads as the nearest step (0.0035 for
        # BSCALE 0.017), which the flux scaling would take for flux. A pixel the file marks
        # bad (error 1e10 or a mask bit) within one step of 0 is a gap, and 0 again.
        flux = np.where(bad & (np.abs(flux) <= step), np.float32(0.0), flux)
    flux, err = finite_spectrum(flux, err)
    apogee_id = str(header.get("OBJID", "") or "").strip() or id_from_name(path)
    return Spectrum(apogee_id=apogee_id, flux=flux, err=err, bad=bad,
                    snr=header_float(header, "SNR"), ra=header_float(header, "RA"),
                    dec=header_float(header, "DEC"), path=path, raw_flux=raw_flux,
                    raw_err=raw_err)


_HDU_NAMES = ("1 (flux)", "2 (error)", "3 (mask)")


def _read_rows(path: str) -> tuple[dict, list[np.ndarray | None], float]:
    """The header values read_apstar needs, row 0 of HDUs 1-3 (the whole array if 1-D), and the
    flux's quantisation step (0 unless it is stored as scaled integers)."""
    try:
        return (*fastfits.read_rows(path, 3, PRIMARY_KEYS, GRID_KEYS), 0.0)
    except fastfits.Unsupported:
        pass  # compressed, scaled or unusual files: astropy reads them
    # imported here: reader processes start faster without astropy.io.fits (a second or more)
    from astropy.io import fits

    # memmap=False: scaled images (BSCALE/BZERO) cannot be memory-mapped; files that come here
    # are few, and an apStar HDU is small
    with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
        try:
            hdus = [hdul[k] for k in (1, 2, 3)]
        except IndexError:
            raise ApnetError(f"{path}: has {len(hdul)} HDUs, an apStar file needs flux, "
                             "error and mask in HDUs 1-3") from None
        for h, name in zip(hdus, _HDU_NAMES):
            if not h.is_image:
                raise ApnetError(f"{path}: HDU {name} is a {type(h).__name__}, not an image; "
                                 "not an apStar file")
        header = {k: hdul[0].header.get(k) for k in PRIMARY_KEYS}
        header.update({k: hdus[0].header.get(k) for k in GRID_KEYS})
        step = _integer_step(hdus[0].header)  # before .data: astropy then drops BSCALE
        rows = [None if h.data is None or h.data.size == 0 else
                np.array(h.data[0] if h.data.ndim == 2 else h.data) for h in hdus]
    return header, rows, step


def _integer_step(header) -> float:
    """One quantisation step of a scaled-integer image (|BSCALE|, widened by float32 rounding
    of BZERO + BSCALE * n), or 0 where 0 is exact (floating-point pixels, whole numbers)."""
    try:
        if int(header.get("BITPIX", -32)) < 0:
            return 0.0
        bscale, bzero = float(header.get("BSCALE", 1.0)), float(header.get("BZERO", 0.0))
    except (TypeError, ValueError):
        return 0.0
    if bscale == 1.0 and bzero.is_integer():
        return 0.0  # whole numbers: 0 is exact
    return abs(bscale) * 1.001 + 1e-6 * abs(bzero)


def check_truncation(caught: Sequence[warnings.WarningMessage], path: str,
                     kind: str = "apStar FITS file") -> None:
    """Raise ApnetError if astropy warned, while reading ``path``, that it is truncated; other
    warnings (a non-standard card, ...) do not make a file unreadable."""
    for w in caught:
        if "truncat" in str(w.message).lower():
            raise ApnetError(f"{path}: not a readable {kind} ({first_line(w.message)})")


def unreadable(path: str, exc: Exception, kind: str = "apStar FITS file") -> ApnetError:
    """The one-line error for a file that could not be read at all (``kind``: what it should
    have been)."""
    if isinstance(exc, FileNotFoundError):
        return ApnetError(f"{path}: no such file")
    return ApnetError(f"{path}: not a readable {kind} ({first_line(exc)})")


def read_apogee_id(path: str) -> str:
    """The APOGEE ID from a file's primary header (OBJID), without reading the data.

    Raises:
        ApnetError: the file is missing or not FITS.
    """
    try:
        from astropy.io import fits

        header = fits.getheader(path, 0)
    except Exception as exc:  # noqa: BLE001 - one file's problem, reported by the caller
        raise unreadable(path, exc) from None
    return str(header.get("OBJID", "")).strip() or id_from_name(path)


def id_from_name(path: str) -> str:
    """The APOGEE ID an apStar file's name holds: apStar-r6-2M00452143+1634446.fits ->
    2M00452143+1634446 (another name: its stem)."""
    stem = os.path.basename(path).split(".fits")[0]
    return stem.split("-", 2)[-1] if stem.startswith("apStar") else stem


def expand_paths(paths: Iterable[str | os.PathLike], missing: list[str] | None = None,
                 notes: list[str] | None = None) -> list[str]:
    """Files, folders (their FITS files) and glob patterns, as one sorted list in which each file
    is once: two paths to one file (a folder given with a link to it, a file given twice) count
    as one, the first given kept; a line appended to ``notes``, when given, says how many.

    Raises:
        ApnetError: a path matches nothing, unless ``missing`` is given: then a line naming it
            is appended there and the other paths go on.
    """
    found: list[str] = []
    for raw in paths:
        p = os.fspath(raw)
        if os.path.isdir(p):
            hits = sorted(f for pat in SPECTRUM_PATTERNS for f in glob.glob(os.path.join(p, pat)))
        elif os.path.exists(p):
            hits = [p]
        else:
            hits = sorted(glob.glob(p))
        if not hits:
            if missing is None:
                raise ApnetError(f"{p}: matches no file")
            missing.append(f"{p}: matches no file")
        if missing is not None:  # a link to nothing is a skipped file, not a stopped job
            dangling = [f for f in hits if not os.path.exists(f)]
            missing.extend(f"{os.path.normpath(f)}: a link to a missing file" for f in dangling)
            hits = [f for f in hits if os.path.exists(f)]
        found.extend(os.path.normpath(f) for f in hits)
    first: dict[str, str] = {}  # real path -> the first path given for it
    repeats: list[tuple[str, str]] = []
    for f in found:
        real = os.path.realpath(f)
        if real not in first:
            first[real] = f
        else:
            repeats.append((f, first[real]))
    if repeats and notes is not None:
        again, kept = repeats[0]
        example = f"{again} given twice" if again == kept else f"{again} is {kept}"
        notes.append(f"{len(repeats)} input file(s) reached through more than one path (a "
                     f"folder and a link to it, or a file given twice), e.g. {example}; each "
                     "file is read once")
    return sorted(first.values())


def iter_spectra(paths: Sequence[str], mask_bits: Sequence[int] = DEFAULT_MASK_BITS,
                 ) -> Iterator[tuple[str, Spectrum | None, str | None]]:
    """Yield (path, spectrum, None) for each readable file and (path, None, error) for the others.

    One bad file never stops the rest.
    """
    for path in paths:
        try:
            yield path, read_apstar(path, mask_bits), None
        except ApnetError as exc:
            yield path, None, str(exc)
