"""Spikes: unmasked single-pixel outliers (cosmic rays, hot pixels, bad sky subtraction) that
the reader's pixel mask missed. Plain numpy on (N, P) arrays of N spectra.

A pixel is a spike when it stands out from the running median of its usable neighbours (up to
``SPIKE_HALF_WINDOW`` on each side, the pixel itself left out, so that the spike cannot drag
its own reference) by more than ``SPIKE_SIGMA`` times its error *and* by more than
``SPIKE_FRACTION`` of that median (upwards; ``SPIKE_DIP_FRACTION`` downwards). The error test
alone would find the tops between deep lines of a bright star; the fraction test alone, the
noise of a faint one. A real line is never one pixel wide (the APOGEE line spread function is
about 3 apStar pixels), so a line does not stand out from the median of eight neighbours the
way a single hot pixel does. On synthetic spectra (noise as the error array says) they find
nothing; one pixel of a real DR13 file raised to 2 times the star's median flux is found in
most cases, to 5 times or more in nearly all (``bench/spikes.py``).
Real apStar files do hold such pixels that their mask missed: the 26 DR13/DR14/DR17 files of
the test data give 118, in 14 of them, mostly in faint stars (up to 15 times the flux level
above, 11 below, the median), which is why a published network is not given them masked
(``inference.screening``).

``mask_spikes`` marks them as an apStar file marks its bad pixels (flux 0, error 1e10, bad), so
the package's own networks treat a spike as they treat any masked pixel.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from apnet_tf.constants import BAD_ERROR_THRESHOLD

__all__ = [
    "SPIKE_HALF_WINDOW", "SPIKE_SIGMA", "SPIKE_FRACTION", "SPIKE_DIP_FRACTION",
    "SPIKE_SHARPNESS", "SPIKE_MIN_NEIGHBOURS", "running_median", "find_spikes", "mask_spikes",
]

#: Usable neighbours on each side of a pixel that its reference median is taken over.
SPIKE_HALF_WINDOW = 4
#: A spike stands this many times its own error above (or below) the running median...
SPIKE_SIGMA = 8.0
#: ... and more than this fraction of the median above it ...
SPIKE_FRACTION = 0.5
#: ... or, downwards, more than this fraction below it (a line's core never reaches it alone:
#: it is flanked by its own wings, which pull the median down with it).
SPIKE_DIP_FRACTION = 0.8
#: ... and it stands alone: it rises above the higher of its two nearest neighbours (or falls
#: below the lower) by at least this fraction of its jump from the median. A line, or a gap
#: between two lines, is as wide as the line spread function, so its neighbours follow it.
SPIKE_SHARPNESS = 0.7
#: A pixel with fewer usable neighbours than this (a chip edge) is never called a spike.
SPIKE_MIN_NEIGHBOURS = 4
#: Rows per step, so that the (rows, P, window) work array stays small.
_CHUNK = 64


def running_median(flux, usable, half: int = SPIKE_HALF_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """The median of each pixel's usable neighbours within ``half`` pixels on either side (the
    pixel itself left out), and how many there were: two (N, P) arrays (NaN where none).
    flux: (N, P) float; usable: (N, P) bool."""
    vals = np.where(usable, np.asarray(flux, np.float64), np.nan)
    padded = np.pad(vals, ((0, 0), (half, half)), constant_values=np.nan)
    window = sliding_window_view(padded, 2 * half + 1, axis=1)
    neighbours = np.concatenate([window[..., :half], window[..., half + 1:]], axis=-1)
    ordered = np.sort(neighbours, axis=-1)  # NaN sorts last
    count = np.isfinite(ordered).sum(axis=-1)
    lo = np.maximum((count - 1) // 2, 0)
    hi = np.maximum(count // 2, 0)
    median = 0.5 * (np.take_along_axis(ordered, lo[..., None], -1)[..., 0]
                    + np.take_along_axis(ordered, hi[..., None], -1)[..., 0])
    return np.where(count > 0, median, np.nan), count


def find_spikes(flux, err, bad) -> np.ndarray:
    """Bool (N, P): the unmasked pixels of (N, P) spectra that are spikes (module doc).
    ``bad``: the reader's pixel mask; a pixel with zero flux or an error of 1e9 or more counts
    as masked too."""
    flux = np.asarray(flux, np.float64)
    err = np.asarray(err, np.float64)
    usable = (~np.asarray(bad, bool) & np.isfinite(flux) & np.isfinite(err) & (flux != 0)
              & (err < BAD_ERROR_THRESHOLD) & (err > 0))
    out = np.zeros(flux.shape, bool)
    for i in range(0, len(flux), _CHUNK):
        rows = slice(i, i + _CHUNK)
        out[rows] = _spikes(flux[rows], err[rows], usable[rows])
    return out


def _spikes(flux, err, usable) -> np.ndarray:
    """``find_spikes`` of a few rows, their pixels already judged usable."""
    median, count = running_median(flux, usable)
    left, right = _nearest_neighbours(flux, usable)
    level = np.array([np.median(np.abs(f[u])) if u.any() else np.nan
                      for f, u in zip(flux, usable)])[:, None]
    with np.errstate(invalid="ignore"):
        jump = flux - median
        noise = SPIKE_SIGMA * err
        up = ((jump > noise) & (jump > SPIKE_FRACTION * level)
              & (flux - np.fmax(left, right) > SPIKE_SHARPNESS * jump))
        down = ((-jump > noise) & (-jump > SPIKE_DIP_FRACTION * level)
                & (np.fmin(left, right) - flux > -SPIKE_SHARPNESS * jump))
    return usable & (count >= SPIKE_MIN_NEIGHBOURS) & (up | down)


def _nearest_neighbours(flux, usable, half: int = SPIKE_HALF_WINDOW,
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's nearest usable neighbour's flux on its left and on its right, two (N, P)
    arrays; NaN where there is none within ``half`` pixels."""
    n, p = flux.shape
    idx = np.broadcast_to(np.arange(p), (n, p))
    out = []
    for step in (1, -1):  # left neighbours, then right ones (the reversed spectrum's left)
        last = np.maximum.accumulate(np.where(usable[:, ::step], idx, -1), axis=1)
        before = np.pad(last[:, :-1], ((0, 0), (1, 0)), constant_values=-1)
        values = np.take_along_axis(flux[:, ::step], np.maximum(before, 0), axis=1)
        out.append(np.where((before >= 0) & (idx - before <= half), values, np.nan)[:, ::step])
    return out[0], out[1]


def mask_spikes(flux, err, bad, spikes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flux, err, bad) with the ``spikes`` pixels masked as an apStar file masks a bad pixel:
    flux 0, error 1e10, bad. New arrays; the inputs are left as they are."""
    spikes = np.asarray(spikes, bool)
    flux = np.where(spikes, np.float32(0.0), flux).astype(np.asarray(flux).dtype)
    err = np.where(spikes, np.float32(1e10), err).astype(np.asarray(err).dtype)
    return flux, err, np.asarray(bad, bool) | spikes
