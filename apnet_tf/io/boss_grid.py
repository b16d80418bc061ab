"""BOSS Net's wavelength grid and the rules that put a BOSS spectrum on it: plain numpy, for
the readers, the Monte Carlo and a serving client alike.

BOSS Net (Sizemore et al. 2024) reads a spectrum resampled onto 3,900 wavelengths. The rules
below are those of the authors' code, ``hutchresearch/BOSSNet`` (``dataset.py``,
``pipeline.py``) and ``sdss/astra`` (``pipelines/bossnet``), which made the DR19 catalogs:

* **Wavelengths** of the native pixels: ``10 ** loglam`` computed in float32 (``loglam`` is
  the spec file's float32 column), vacuum Angstrom.
* **The grid** (``boss_grid``): 3,900 float32 wavelengths from 3800 to 8900 A. Value i is
  ``3800 + s * i`` for i < 1950 and ``8900 - s * (3899 - i)`` from 1950 on, with
  ``s = float32(5100) / float32(3899)`` (1.308 A), each rounded once to float32: what
  ``torch.linspace(3800, 8900, 3900)`` gives on an x86-64 CPU, where the authors' code makes it.
  ``np.linspace(3800, 8900, 3900).astype(np.float32)`` differs from it by one float32 step
  (0.0005 A) at 344 of the 3,900 points, which changes the resampled flux by far less than its
  noise.
* **NaN flux** (``NAN_FLUX_RULES``): astra sets NaN flux to 0 before anything else
  (``np.nan_to_num``, which also turns +-inf into the largest float32), "zero", the default
  here; the repository's pipeline drops the NaN pixels from the interpolation, "drop". Pixels
  whose wavelength is NaN (padding) are always dropped.
* **Resampling** (``resample_boss``): linear interpolation, ``np.interp`` in float64 on the
  float32 values, rounded to float32. A grid point outside the spectrum takes its first or last
  value (BOSS covers 3,600 to 10,400 A; the SDSS-I/II spectrograph starts near 3,800 A).
* **Errors** (``ivar_to_error``): ``ivar ** -0.5`` in float32 after NaN ivar -> 0, clipped
  above at 5 x the median finite error; a negative ivar (NaN error) gets 5 x the median too,
  and a pixel with ivar 0 (infinite error) is clipped to it. When every error is infinite, all
  take ``fallback`` (the authors pass a tenth of the median flux).

BOSS Net itself then takes ln(max(flux, 1e-6)) clipped above at the spectrum's 95th percentile
+ 1: that step belongs to the model, not to this module. A Monte Carlo draw adds ``err x
N(0, 1)`` to the native flux (after the NaN rule) and resamples the draw again.

A serving client that feeds a BOSS Net SavedModel or TFLite file does, per spectrum::

    from apnet_tf.io.boss import read_boss
    from apnet_tf.io.boss_grid import resample_boss
    spec = read_boss("spec-015223-59265-4515432683.fits")
    flux = resample_boss(spec.flux, spec.wavelength)      # (3900,) float32, the model's input
"""

from __future__ import annotations

import functools

import numpy as np

from apnet_tf.constants import BOSS_N_PIXELS, BOSS_WAVE_MAX, BOSS_WAVE_MIN
from apnet_tf.errors import ApnetError

__all__ = ["NAN_FLUX_RULES", "ERROR_CLIP", "boss_grid", "native_flux", "ivar_to_error",
           "resample_boss"]

#: What happens to NaN flux: "zero" (astra: set to 0 before the noise and the interpolation)
#: or "drop" (hutchresearch/BOSSNet: the pixel is left out of the interpolation).
NAN_FLUX_RULES = ("zero", "drop")
#: Errors are clipped above at this many times the median finite error (both authors' codes).
ERROR_CLIP = 5


@functools.lru_cache(maxsize=1)
def _grid() -> np.ndarray:
    start, end = np.float32(BOSS_WAVE_MIN), np.float32(BOSS_WAVE_MAX)
    step = (end - start) / np.float32(BOSS_N_PIXELS - 1)  # float32 division, as torch's
    i = np.arange(BOSS_N_PIXELS, dtype=np.float64)
    half = BOSS_N_PIXELS // 2
    # In float64 the product and the sum are exact, so one rounding to float32 follows, as the
    # fused multiply-add of torch's CPU kernel does.
    exact = np.where(i < half, np.float64(start) + np.float64(step) * i,
                     np.float64(end) - np.float64(step) * (BOSS_N_PIXELS - 1 - i))
    out = exact.astype(np.float32)
    out.flags.writeable = False
    return out


def boss_grid() -> np.ndarray:
    """BOSS Net's input wavelengths in Angstrom: float32, shape (3900,), 3800 to 8900 (read
    only; see the module's doc for the rule)."""
    return _grid()


def native_flux(flux, nan_flux: str = "zero") -> np.ndarray:
    """The native flux as BOSS Net's preprocessing starts from it: float32, same shape, NaN set
    to 0 under "zero" (astra; +-inf become the largest float32), kept under "drop".

    Raises:
        ApnetError: ``nan_flux`` is not one of ``NAN_FLUX_RULES``.
    """
    if nan_flux not in NAN_FLUX_RULES:
        raise ApnetError(f"nan_flux: must be one of {', '.join(NAN_FLUX_RULES)}, "
                         f"got {nan_flux!r}")
    flux = np.asarray(flux, dtype=np.float32)
    return np.nan_to_num(flux, nan=0.0) if nan_flux == "zero" else flux


def ivar_to_error(ivar, fallback: float = float("nan")) -> np.ndarray:
    """Flux errors from inverse variances by the authors' rule (module doc): float32, same
    shape as ``ivar`` (N,).

    Args:
        fallback: the error of every pixel when no pixel has a finite error (every ivar 0 or
            NaN); the authors pass 0.1 x the median flux.
    """
    ivar = np.nan_to_num(np.asarray(ivar, dtype=np.float32))
    with np.errstate(all="ignore"):
        err = np.divide(1, ivar) ** 0.5
        if np.isinf(err).all():
            err = np.full(err.shape, fallback).astype(ivar.dtype)
        cap = ERROR_CLIP * np.nanmedian(err[err != np.inf])
        err = np.clip(err, None, cap)
    return np.where(np.isnan(err), cap, err).astype(np.float32)


def resample_boss(flux, wavelength, nan_flux: str = "zero") -> np.ndarray:
    """Flux on BOSS Net's grid (``boss_grid``) by linear interpolation (module doc).

    Args:
        flux: native flux, shape (N,), or (D, N) for D spectra or Monte Carlo draws.
        wavelength: vacuum Angstrom, increasing, shape (N,) (shared by every row) or (D, N);
            NaN marks padding, which is dropped.
        nan_flux: "zero" (astra, the default) or "drop" (the authors' repository).

    Returns:
        float32, shape (3900,) or (D, 3900); a row with no usable pixel is all NaN.
    """
    flux = native_flux(flux, nan_flux)
    rows = np.atleast_2d(flux)
    waves = np.broadcast_to(np.asarray(wavelength, dtype=np.float32), rows.shape)
    grid = boss_grid().astype(np.float64)
    out = np.full((rows.shape[0], BOSS_N_PIXELS), np.nan, dtype=np.float32)
    for k in range(rows.shape[0]):
        keep = ~np.isnan(rows[k]) & ~np.isnan(waves[k])
        if keep.any():
            out[k] = np.interp(grid, waves[k][keep].astype(np.float64),
                               rows[k][keep].astype(np.float64))
    return out if flux.ndim > 1 else out[0]
