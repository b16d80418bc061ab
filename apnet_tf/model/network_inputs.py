"""What each network is given: a batch of spectra (``data.readers.Batch``) turned into its
input by the rules of the code its weights came from, in one place for every runtime and both
engines (``inference.predict`` calls ``network_inputs`` for every batch).

The readers keep what a file holds (an apStar row's NaN and infinities, a BOSS spectrum's NaN
flux), so that each network can apply its own rule (``input_rule``):

* "apnet", the package's own networks: non-finite flux 0, non-finite error 1e10 (the reader's
  clean rows), and the reader's pixel mask: those pixels get no Monte Carlo noise.
* "anet1", APOGEE Net I (astra, 2020): a pixel whose flux or error is not finite takes the
  median of the row's flux (NaN left out) and the error 1e10.
* "anet2", APOGEE Net II (hutchresearch/ApogeeNet2): ``np.nan_to_num`` of flux and error (NaN
  0, infinities the largest float32).
* "astra" (APOGEE Net III / BOSS Net, SDSS astra): flux NaN -> 0 (infinities the largest
  float32); the error through ivar = err**-2 (not finite -> 0) and
  ``boss_grid.ivar_to_error`` (the authors' ``reverse_inverse_error``: 5 x the median clip)
  with 0.1 x the median flux as its fallback. BOSS: that flux resampled onto BOSS Net's grid.
* "hutchresearch" (APOGEE Net III / BOSS Net, the authors' repository): APOGEE, NaN and
  infinities 0 in flux and error (HDU 2 as is, no clip); BOSS, NaN flux left out of the
  resampling (and of each Monte Carlo draw's).

The Monte Carlo of APOGEE Net III and BOSS Net perturbs every native pixel, as the authors'
code does (``MC_BAD_PIXELS`` "noise"); "fill" keeps the pixels the file marks bad (flux or error
not finite, apStar error >= 1e9, BOSS ivar <= 0) at their fill value in every draw.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from apnet_tf.constants import BAD_ERROR_THRESHOLD
from apnet_tf.data.readers import Batch
from apnet_tf.errors import ApnetError
from apnet_tf.io.boss_grid import ivar_to_error, native_flux, resample_boss

__all__ = ["MC_BAD_PIXELS", "INPUT_RULES", "NetworkInputs", "input_rule", "network_inputs",
           "check_mc_bad_pixels"]

#: What APOGEE Net III's and BOSS Net's Monte Carlo does with a file's bad pixels: "noise" (the
#: authors': noise of the pixel's error like any other) or "fill" (no noise: the fill value in
#: every draw).
MC_BAD_PIXELS = ("noise", "fill")
#: The input rules (module doc), by name.
INPUT_RULES = ("apnet", "anet1", "anet2", "astra", "hutchresearch")
_BAD_ERROR = np.float32(1e10)


@dataclasses.dataclass
class NetworkInputs:
    """A batch as a network takes it. ``flux``: (B, n) the model's input (BOSS Net: on its
    grid); ``mc_flux``, ``err``: (B, L) what each Monte Carlo draw perturbs and by how much, on
    the native pixels; ``bad``: (B, L) pixels given no noise (None: none);
    ``wavelength``: (B, L) BOSS, the native pixels' wavelengths (NaN padding), else None."""

    flux: np.ndarray
    mc_flux: np.ndarray
    err: np.ndarray
    bad: np.ndarray | None
    wavelength: np.ndarray | None = None


def input_rule(conventions: dict | None) -> str:
    """The input rule (``INPUT_RULES``) of a network's conventions (None: the package's)."""
    if not conventions:
        return "apnet"
    if conventions.get("arch") in ("anet1", "anet2"):
        return conventions["arch"]
    return conventions.get("convention", "astra")


def check_mc_bad_pixels(mc_bad_pixels: str, conventions: dict | None = None) -> str:
    """``mc_bad_pixels`` if it is one of ``MC_BAD_PIXELS`` and the network takes it.

    Raises:
        ApnetError: an unknown value, or "fill" for a network other than APOGEE Net III and
            BOSS Net (the package's own Monte Carlo never perturbs bad pixels; Net I's and
            II's follow their code).
    """
    if mc_bad_pixels not in MC_BAD_PIXELS:
        raise ApnetError(f"--mc-bad-pixels {mc_bad_pixels}: choose one of "
                         f"{', '.join(MC_BAD_PIXELS)}")
    if mc_bad_pixels == "fill" and input_rule(conventions) not in ("astra", "hutchresearch"):
        raise ApnetError("--mc-bad-pixels fill: only APOGEE Net III and BOSS Net take it (the "
                         "package's own Monte Carlo never perturbs bad pixels; Net I and II "
                         "follow their authors' code)")
    return mc_bad_pixels


def network_inputs(conventions: dict | None, batch: Batch,
                   mc_bad_pixels: str = "noise") -> NetworkInputs:
    """``batch`` as the network of ``conventions`` takes it (the module's rules)."""
    rule = input_rule(conventions)
    if batch.wavelength is not None:
        return _boss(batch, rule, mc_bad_pixels)
    if rule == "apnet":
        return NetworkInputs(batch.flux, batch.flux, batch.err, batch.bad)
    flux = batch.flux if batch.raw_flux is None else batch.raw_flux
    err = batch.err if batch.raw_err is None else batch.raw_err
    with np.errstate(all="ignore"):
        flux, err = _APOGEE_RULES[rule](np.asarray(flux, np.float32), np.asarray(err, np.float32))
    if rule in ("anet1", "anet2"):  # their Monte Carlo has no pixel mask
        return NetworkInputs(flux, flux, err, batch.bad)
    return NetworkInputs(flux, flux, err, _fill_pixels(batch) if mc_bad_pixels == "fill"
                         else None)


def _anet1(flux, err):
    bad = ~np.isfinite(flux) | ~np.isfinite(err)
    median = np.nanmedian(flux, axis=1, keepdims=True).astype(np.float32)
    return np.where(bad, median, flux), np.where(bad, _BAD_ERROR, err)


def _anet2(flux, err):
    return np.nan_to_num(flux), np.nan_to_num(err)


def _astra(flux, err):
    flux = np.nan_to_num(flux, nan=0.0)
    ivar = err.astype(np.float32) ** -2
    ivar[~np.isfinite(ivar)] = 0
    median = np.median(flux, axis=1)
    return flux, np.stack([ivar_to_error(row, 0.1 * float(m)) for row, m in zip(ivar, median)])


def _hutchresearch(flux, err):
    return (np.nan_to_num(flux, nan=0.0, posinf=0.0, neginf=0.0),
            np.nan_to_num(err, nan=0.0, posinf=0.0, neginf=0.0))


_APOGEE_RULES = {"anet1": _anet1, "anet2": _anet2, "astra": _astra,
                 "hutchresearch": _hutchresearch}


def _fill_pixels(batch: Batch) -> np.ndarray:
    """The pixels an apStar file marks bad by their values: flux or error not finite, or an
    error of at least 1e9 (the chip gaps' 1e10)."""
    flux = batch.flux if batch.raw_flux is None else batch.raw_flux
    err = batch.err if batch.raw_err is None else batch.raw_err
    return ~np.isfinite(flux) | ~np.isfinite(err) | (err >= BAD_ERROR_THRESHOLD)


def _boss(batch: Batch, rule: str, mc_bad_pixels: str) -> NetworkInputs:
    """BOSS spectra: astra's NaN flux -> 0 or the repository's NaN pixels left out; the
    model's input resampled onto the grid, the Monte Carlo's on the native pixels."""
    if rule not in ("astra", "hutchresearch"):
        raise ApnetError("BOSS spec files go to BOSS Net (import-torch --arch bossnet); this "
                         "network reads apStar files")
    wave = batch.wavelength
    flux = np.asarray(batch.flux, np.float32)
    if rule == "astra":  # the padding stays NaN, so that no resampling takes it
        flux = np.where(np.isnan(wave), np.float32(np.nan), native_flux(flux, "zero"))
    grid = resample_boss(flux, wave, "zero" if rule == "astra" else "drop")
    bad = batch.bad & ~np.isnan(wave) if mc_bad_pixels == "fill" else None
    return NetworkInputs(grid.reshape(len(flux), -1), flux, batch.err, bad, wave)
