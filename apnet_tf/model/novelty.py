"""Novelty: how far a spectrum lies from the stars a model was trained (or calibrated) on.

A network answers every spectrum with a confident number, one unlike all its training stars
included; the label-range bit only sees the answer. This module describes the training spectra
themselves, in the space the package's networks read them in: the flux divided by its mean
absolute value, minus 1 (``network.FluxScaling``, "mean"), averaged over bins of ``BIN_PIXELS``
usable pixels (which keeps the noise small and the description small). On those binned spectra:

* a principal component analysis of the training stars: their mean and ``N_COMPONENTS``
  directions with their variances;
* ``m``, the Mahalanobis distance within those components, per component (about 1 for a
  training star);
* ``r``, what the components leave, per usable bin, in units of the bin's own noise (from the
  error array) and the training stars' leftover scatter in that bin (about 1 for a training
  star): a spectrum with lines, bands or a continuum no training star has stands out here even
  when its components look ordinary;
* ``p``, how peaked that leftover is: the mean of its largest ``PEAK_FRACTION`` of bins over its
  median bin. A few features no training star has (a hot star's broad hydrogen lines) stand out
  here where ``r``, an average over a thousand bins, hardly moves; a star that is merely noisier
  or fitted a little worse everywhere does not.

Each is divided by its own ``NOVEL_PERCENTILE``th percentile over the reference stars, so that
none of them sets the scale for the others, and the distance is the largest of the three; the
reference keeps that distance's distribution over the reference stars, and NOVELTY is the
distance in units of its ``NOVEL_PERCENTILE``th percentile (so > 1: beyond that percentile).
Plain numpy on (N, 8575) arrays: the same numbers for a run folder, a SavedModel and a TFLite
file, and for a published network, whatever runs the network.

The reference is saved as ``NOVELTY`` (JSON, ``NOVELTY_FORMAT``) in a run folder, and copied
beside an export's metadata.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from apnet_tf.constants import BAD_ERROR_THRESHOLD
from apnet_tf.errors import ApnetError
from apnet_tf.io.catalog_flags import NOVEL_PERCENTILE
from apnet_tf.io.files import read_json_object, write_json

__all__ = [
    "NOVELTY", "NOVELTY_FORMAT", "BIN_PIXELS", "N_COMPONENTS", "PEAK_FRACTION",
    "MAX_REFERENCE_STARS", "MIN_REFERENCE_STARS", "NoveltyReference", "binned", "fit_reference",
    "read_novelty",
]

#: The file name of a novelty reference in a run folder or beside an export's metadata.
NOVELTY = "novelty.json"
#: The format of novelty.json; a reader refuses any other.
NOVELTY_FORMAT = 1
#: Pixels per bin of the scaled flux.
BIN_PIXELS = 8
#: Principal components kept.
N_COMPONENTS = 10
#: The share of a spectrum's bins whose leftover makes its peak (``p``).
PEAK_FRACTION = 0.02
#: At most this many reference stars (a seeded choice beyond): a few thousand fix every number.
MAX_REFERENCE_STARS = 5000
#: Fewer stars than this describe nothing: no reference is made.
MIN_REFERENCE_STARS = 50
#: The percentiles of the reference stars' distances that the file records.
_PERCENTILES = (50.0, 90.0, 99.0, NOVEL_PERCENTILE, 100.0)


def binned(flux, err, bad) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scaled flux of (N, P) spectra averaged over bins of ``BIN_PIXELS`` usable pixels,
    the variance of each bin's mean (from the errors), and whether a bin has a usable pixel:
    three (N, ceil(P / BIN_PIXELS)) arrays (values NaN in an empty bin)."""
    flux = np.asarray(flux, np.float64)
    err = np.asarray(err, np.float64)
    usable = (~np.asarray(bad, bool) & np.isfinite(flux) & np.isfinite(err) & (flux != 0)
              & (err < BAD_ERROR_THRESHOLD))
    count = np.maximum(usable.sum(axis=1, keepdims=True), 1)
    scale = np.where(usable, np.abs(flux), 0.0).sum(axis=1, keepdims=True) / count
    scale = np.where(scale > 0, scale, 1.0)
    x = np.where(usable, flux / scale - 1.0, 0.0)
    e2 = np.where(usable, (err / scale) ** 2, 0.0)
    pad = (-flux.shape[1]) % BIN_PIXELS
    shape = (len(flux), -1, BIN_PIXELS)
    n = np.pad(usable, ((0, 0), (0, pad))).reshape(shape).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.pad(x, ((0, 0), (0, pad))).reshape(shape).sum(axis=2) / n
        var = np.pad(e2, ((0, 0), (0, pad))).reshape(shape).sum(axis=2) / n**2
    return mean, var, n > 0


@dataclasses.dataclass(frozen=True)
class NoveltyReference:
    """A description of the reference stars' binned spectra (module doc) and of their
    distances. ``threshold``: the ``NOVEL_PERCENTILE``th percentile of those distances."""

    mean: np.ndarray  # (K,) the reference stars' mean binned spectrum
    components: np.ndarray  # (C, K) orthonormal rows
    variances: np.ndarray  # (C,) the reference stars' variance along each
    floor: np.ndarray  # (K,) leftover variance per bin beyond the noise
    scales: np.ndarray  # (3,) each of m, r, p's NOVEL_PERCENTILEth percentile over the stars
    percentiles: dict  # {percentile: distance} over the reference stars
    stars: int  # how many reference stars
    source: str  # "training stars" or "calibration stars"

    @property
    def threshold(self) -> float:
        return float(self.percentiles[NOVEL_PERCENTILE])

    def parts(self, flux, err, bad) -> np.ndarray:
        """m, r and p of the module doc for (N, P) spectra: (N, 3), NaN where no bin is usable."""
        x, var, has = binned(flux, err, bad)
        if x.shape[1] != len(self.mean):
            raise ApnetError(f"novelty reference: made for {len(self.mean)} bins, the spectra "
                             f"give {x.shape[1]}")
        dev = np.where(has, x - self.mean, 0.0)
        z = dev @ self.components.T
        m = np.sqrt(np.mean(z**2 / self.variances, axis=1))
        chi2 = np.where(has, (dev - z @ self.components) ** 2 / (var + self.floor), -np.inf)
        ordered = -np.sort(-chi2, axis=1)  # largest first, the empty bins last
        n = has.sum(axis=1)
        rows = np.arange(len(n))
        total = np.cumsum(np.where(has.any(axis=1)[:, None] & np.isfinite(ordered), ordered,
                                   0.0), axis=1)
        k = np.maximum((PEAK_FRACTION * n).astype(int), 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.sqrt(total[rows, -1] / n)
            p = np.sqrt(total[rows, k - 1] / k / ordered[rows, np.maximum(n - 1, 0) // 2])
        return np.where((n > 0)[:, None], np.stack([m, r, p], axis=1), np.nan)

    def distance(self, flux, err, bad) -> np.ndarray:
        """The novelty distance of (N, P) spectra: the largest of m, r, p (module doc), each
        in units of its percentile over the reference stars, (N,)."""
        return np.max(self.parts(flux, err, bad) / self.scales, axis=1)

    def novelty(self, flux, err, bad) -> np.ndarray:
        """NOVELTY: the distance in units of ``threshold`` (> 1: beyond it), (N,)."""
        return self.distance(flux, err, bad) / self.threshold

    def to_dict(self) -> dict:
        return {"format": NOVELTY_FORMAT, "bin_pixels": BIN_PIXELS, "source": self.source,
                "stars": self.stars, "novel_percentile": NOVEL_PERCENTILE,
                "percentiles": {f"{p:g}": float(v) for p, v in self.percentiles.items()},
                "mean": self.mean.tolist(), "components": self.components.tolist(),
                "variances": self.variances.tolist(), "floor": self.floor.tolist(),
                "scales": self.scales.tolist()}

    def save(self, path: str) -> None:
        write_json(path, self.to_dict(), allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict, where: str) -> NoveltyReference:
        """The reference of a novelty.json's object; ApnetError naming ``where`` when it is of
        another format or inconsistent."""
        if d.get("format") != NOVELTY_FORMAT or d.get("bin_pixels") != BIN_PIXELS:
            raise ApnetError(f"{where}: novelty reference of format {d.get('format')!r} (bins "
                             f"of {d.get('bin_pixels')!r} pixels); this version reads format "
                             f"{NOVELTY_FORMAT} (bins of {BIN_PIXELS}): calibrate the model "
                             "again to remake it")
        try:
            ref = cls(np.asarray(d["mean"], float), np.asarray(d["components"], float),
                      np.asarray(d["variances"], float), np.asarray(d["floor"], float),
                      np.asarray(d["scales"], float),
                      {float(k): float(v) for k, v in d["percentiles"].items()},
                      int(d["stars"]), str(d["source"]))
            ok = (ref.components.shape == (len(ref.variances), len(ref.mean))
                  and ref.floor.shape == ref.mean.shape and (ref.variances > 0).all()
                  and ref.scales.shape == (3,) and (ref.scales > 0).all()
                  and math.isfinite(ref.threshold) and ref.threshold > 0)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ApnetError(f"{where}: not a novelty reference ({exc})") from None
        if not ok:
            raise ApnetError(f"{where}: not a novelty reference (inconsistent shapes or values)")
        return ref


def fit_reference(flux, err, bad, source: str, seed: int = 0) -> NoveltyReference | None:
    """The novelty reference of (N, P) reference spectra (at most ``MAX_REFERENCE_STARS`` of
    them, a seeded choice); None for fewer than ``MIN_REFERENCE_STARS`` usable ones."""
    flux, err, bad = np.asarray(flux), np.asarray(err), np.asarray(bad, bool)
    x, var, has = binned(flux, err, bad)
    keep = has.any(axis=1)
    if keep.sum() > MAX_REFERENCE_STARS:
        keep[np.random.default_rng(seed).permutation(np.flatnonzero(keep))[
            MAX_REFERENCE_STARS:]] = False
    x, var, has = x[keep], var[keep], has[keep]
    if len(x) < MIN_REFERENCE_STARS:
        return None
    mean = np.where(has, x, 0.0).sum(axis=0) / np.maximum(has.sum(axis=0), 1)
    dev = np.where(has, x - mean, 0.0)
    _, s, vt = np.linalg.svd(dev, full_matrices=False)
    c = min(N_COMPONENTS, len(s) - 1)
    components = vt[:c]
    variances = np.maximum(s[:c] ** 2 / (len(x) - 1), 1e-12)
    left = dev - (dev @ components.T) @ components
    used = np.maximum(has.sum(axis=0), 1)
    floor = np.maximum((np.where(has, left**2 - var, 0.0)).sum(axis=0) / used, 0.0) + 1e-9
    ref = NoveltyReference(mean, components, variances, floor, np.ones(3), {}, len(x), source)
    parts = ref.parts(flux[keep], err[keep], bad[keep])
    scales = np.maximum(np.nanpercentile(parts, NOVEL_PERCENTILE, axis=0), 1e-12)
    ref = dataclasses.replace(ref, scales=scales)
    dist = ref.distance(flux[keep], err[keep], bad[keep])
    pct = {p: float(np.percentile(dist[np.isfinite(dist)], p)) for p in _PERCENTILES}
    return dataclasses.replace(ref, percentiles=pct)


def read_novelty(folder: str) -> NoveltyReference | None:
    """The novelty reference in ``folder`` (a run folder, or an export's metadata folder);
    None when it has none (a model made before novelty references, or one never calibrated).

    Raises:
        ApnetError: a novelty.json that is not one this version reads.
    """
    path = os.path.join(folder, NOVELTY)
    d = read_json_object(path, "calibrate the model again to remake it")
    return None if d is None else NoveltyReference.from_dict(d, path)
