"""Spectra in memory to the catalog that ``infer`` makes of files: the notebook API's
``Model.predict``.

The arrays become the batches a file reader would give (``readers.Batch``), cut as ``infer``
cuts its files (``settings.batch_size`` spectra each, numbered from 0), and go through the same
functions as the local engine (``parts.unit_part``, ``parts.catalog_from_parts``): the same
columns, flags and, for the same spectra, order, S/N, seed and settings, the same numbers.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from apnet_tf.constants import AUTO_PRECISION_PROBE, N_PIXELS
from apnet_tf.data.readers import Batch
from apnet_tf.errors import ApnetError
from apnet_tf.inference.parts import batch_photometry, catalog_from_parts, unit_part
from apnet_tf.inference.predict import InferenceResult, choose_precision, seeded_job
from apnet_tf.inference.screening import novelty_notes
from apnet_tf.inference.settings import InferenceSettings
from apnet_tf.inference.workdir import new_seed
from apnet_tf.io.catalog_flags import INPUT_GARBAGE, input_flags
from apnet_tf.io.photometry import PHOT_COLUMNS, check_matches
from apnet_tf.io.spectra import bad_pixels, finite_spectrum
from apnet_tf.model.calibration import sigma_settings
from apnet_tf.model.runtime import Runtime

__all__ = ["array_batch", "median_snr", "predict_arrays"]


def _rows(name: str, values, n: int, dtype) -> np.ndarray:
    """``values`` as n rows (a scalar for all of them), or ApnetError naming the argument."""
    arr = np.asarray(values, dtype=dtype)
    if arr.ndim == 0:
        arr = np.full(n, arr.item(), dtype=arr.dtype)
    if arr.shape != (n,):
        raise ApnetError(f"{name}: expected one value per spectrum ({n}), got shape {arr.shape}")
    return arr


def median_snr(flux: np.ndarray, err: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """(N,) median flux / error of each spectrum's good pixels (NaN with none): the S/N an
    apStar header's SNR gives, for spectra that come without one."""
    ratio = np.where(bad | (err <= 0), np.nan, flux / np.where(err > 0, err, 1.0))
    good = ~np.isnan(ratio).all(axis=1)
    out = np.full(len(flux), np.nan)
    out[good] = np.nanmedian(ratio[good], axis=1)
    return out


def array_batch(flux, err, bad=None, snr=None, apogee_id=None, ra=None, dec=None,
                photometry=None) -> Batch:
    """Spectra in memory as a ``readers.Batch``, checked and cleaned as the apStar reader
    cleans a file's (``spectra.bad_pixels``, ``spectra.finite_spectrum``).

    Args:
        flux, err: (N, 8575) or (8575,): apStar flux and its errors, raw.
        bad: (N, 8575) bool, pixels not to trust (apStar PIXMASK bits, ...), added to the
            non-finite and huge-error pixels.
        snr: (N,) or one S/N (the apStar header's SNR); None: ``median_snr``.
        apogee_id: (N,) names; None: the row numbers "0", "1", ...
        ra, dec: (N,) degrees; None: NaN.
        photometry: (N, 7) raw ``io.photometry.PHOT_COLUMNS`` for a two-input network.

    Raises:
        ApnetError: arrays of the wrong shape, or not numbers.
    """
    try:
        flux, err = np.asarray(flux, np.float64), np.asarray(err, np.float64)
        flux, err = np.atleast_2d(flux), np.atleast_2d(err)
        given_bad = None if bad is None else np.atleast_2d(np.asarray(bad, bool))
    except (TypeError, ValueError) as exc:
        raise ApnetError(f"flux, err, bad: not arrays of numbers ({exc})") from None
    if flux.ndim != 2 or flux.shape[1] != N_PIXELS or err.shape != flux.shape:
        raise ApnetError(f"flux and err: expected two arrays of shape (N, {N_PIXELS}) on the "
                         f"apStar grid, got {flux.shape} and {err.shape}")
    if given_bad is not None and given_bad.shape != flux.shape:
        raise ApnetError(f"bad: expected the shape of flux {flux.shape}, got {given_bad.shape}")
    n = len(flux)
    bad = bad_pixels(flux, err) | (False if given_bad is None else given_bad)
    flux, err = finite_spectrum(flux, err)
    snr = median_snr(flux, err, bad) if snr is None else _rows("snr", snr, n, float)
    ids = (np.array([str(i) for i in range(n)], dtype=object) if apogee_id is None
           else _rows("apogee_id", apogee_id, n, object).astype(str).astype(object))
    nan = np.full(n, np.nan)
    phot = None
    if photometry is not None:
        phot = np.asarray(photometry, np.float64)
        if phot.shape != (n, len(PHOT_COLUMNS)):
            raise ApnetError(f"photometry: expected shape ({n}, {len(PHOT_COLUMNS)}): "
                             f"{', '.join(PHOT_COLUMNS)}; got {phot.shape}")
    return Batch(ids, flux, err, bad, snr,
                 nan if ra is None else _rows("ra", ra, n, float),
                 nan if dec is None else _rows("dec", dec, n, float),
                 np.full(n, "", dtype=object), photometry=phot)


def _slice(batch: Batch, rows: slice) -> Batch:
    """The rows ``rows`` of ``batch`` (its per-star fields)."""
    return dataclasses.replace(batch, **{
        f.name: getattr(batch, f.name)[rows] for f in dataclasses.fields(Batch)
        if isinstance(getattr(batch, f.name), np.ndarray)})


def _probe(batch: Batch, model: Runtime, photometry) -> tuple | None:
    """Up to ``AUTO_PRECISION_PROBE`` usable spectra of ``batch`` as ``Runtime.predict``
    arguments, for precision "auto"; None when none is usable."""
    good = (input_flags(batch.flux, batch.err, batch.bad) & INPUT_GARBAGE) == 0
    rows = np.flatnonzero(good)[:AUTO_PRECISION_PROBE]
    if not len(rows):
        return None
    flux = batch.flux[rows]
    if not model.takes_photometry:
        return (flux,)
    return flux, batch_photometry(_slice(batch, rows), photometry)


def predict_arrays(model: Runtime, batch: Batch, settings: InferenceSettings,
                   ) -> InferenceResult:
    """The catalog of the spectra of ``batch`` (``array_batch``) under ``settings``, as the
    local engine makes it of files (``predict.predict_settings``).

    Returns:
        The catalog (no failures: every row is a spectrum), the note of a model without a
        novelty reference (``screening.novelty_notes``); for precision "auto", the line that
        says what it chose.

    Raises:
        ApnetError: a two-input model (APOGEE Net II) given no photometry, or a flux-only
            model given some; a dict of photometry that holds none of the stars; a bad
            setting.
    """
    given = batch.photometry is not None or settings.photometry is not None
    if model.takes_photometry and not given:
        raise ApnetError(f"{model.path}: APOGEE Net II takes photometry as well as flux; give "
                         f"photometry: (N, {len(PHOT_COLUMNS)}) raw {', '.join(PHOT_COLUMNS)}, "
                         "or a dict APOGEE_ID -> those 7 values")
    if given and not model.takes_photometry:
        raise ApnetError(f"photometry: {model.path} takes flux only (photometry goes to APOGEE "
                         "Net II models)")
    if settings.photometry is not None:  # a dict of other stars: refused, as infer does
        check_matches(settings.photometry, list(batch.apogee_id))
    settings = settings.for_model(model).check()
    calibrated, sigma_meta = sigma_settings(model, settings.mc, settings.calibrated,
                                            settings.mc_dropout, settings.seed)
    model, line = choose_precision(model, settings.precision,
                                   lambda: _probe(batch, model, settings.photometry))
    job = seeded_job(dataclasses.replace(settings, calibrated=calibrated,
                                         precision=model.precision),
                     new_seed(settings.seed), sigma_meta)
    parts = []
    for key, start in enumerate(range(0, len(batch.flux), settings.batch_size)):
        part = unit_part(model, _slice(batch, slice(start, start + settings.batch_size)), [],
                         job, key)
        part.pop("_failures")
        parts.append(part)
    return InferenceResult(catalog_from_parts(parts, [], model, settings.mc, sigma_meta), [],
                           notes=novelty_notes(model), precision=line)
