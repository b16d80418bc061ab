"""The catalog's flags (paper 3.5, 3.6, 4.1, 4.2): YSO candidates, age bins, grid edge, low S/N,
BAD. Plain numpy on arrays of N stars."""

from __future__ import annotations

import numpy as np

__all__ = [
    "YSO_TRIANGLE", "AGE_BIN_EDGES", "AGE_BIN_LABELS", "TEFF_EDGE_K", "LOW_SNR",
    "BAD_RANGE_MARGIN", "in_triangle", "age_bin", "flags"
]

#: Paper 4.1: the (Teff, log g) triangle that selects YSO candidates.
YSO_TRIANGLE = ((2200.0, 4.4), (4500.0, 3.9), (3200.0, 1.7))
#: Paper 4.2: log g bin edges and the ages they stand for.
AGE_BIN_EDGES = (3.6, 3.8, 4.0, 4.2)
AGE_BIN_LABELS = ("<1 Myr", "1-2 Myr", "2-3 Myr", "3-5 Myr", ">5 Myr")
#: Paper 3.5: predictions above this Teff sit at the grid edge.
TEFF_EDGE_K = 6700.0
#: Paper 3.6: below this S/N the uncertainties are not reliable.
LOW_SNR = 20.0
#: How far outside the training label range (as a fraction of its width) counts as "far".
BAD_RANGE_MARGIN = 0.2


def in_triangle(teff, logg, triangle=YSO_TRIANGLE) -> np.ndarray:
    """Bool: (teff, logg) inside the triangle (paper 4.1); NaN gives False."""
    (x1, y1), (x2, y2), (x3, y3) = triangle
    x, y = np.asarray(teff, float), np.asarray(logg, float)

    def side(ax, ay, bx, by):
        return (x - bx) * (ay - by) - (ax - bx) * (y - by)

    d1, d2, d3 = side(x1, y1, x2, y2), side(x2, y2, x3, y3), side(x3, y3, x1, y1)
    neg = (d1 < 0) | (d2 < 0) | (d3 < 0)
    pos = (d1 > 0) | (d2 > 0) | (d3 > 0)
    return ~(neg & pos) & np.isfinite(x) & np.isfinite(y)


def age_bin(logg, candidate) -> np.ndarray:
    """Paper 4.2 age bin of each YSO candidate from log g; "" for other stars."""
    idx = np.digitize(np.asarray(logg, float), AGE_BIN_EDGES)
    labels = np.array(AGE_BIN_LABELS, dtype=object)[np.clip(idx, 0, 4)]
    return np.where(np.asarray(candidate, bool), labels, "")


def flags(teff, logg, fe_h, sigma, snr, label_range) -> dict[str, np.ndarray]:
    """YSO_CANDIDATE, AGE_BIN, TEFF_EDGE, LOW_SNR and BAD for a catalog. sigma: (N, 3)."""
    values = np.stack([teff, logg, fe_h], axis=1)
    finite = np.isfinite(values).all(axis=1) & (np.isfinite(sigma).all(axis=1) | np.isnan(
        sigma).all(axis=1))
    far = np.zeros(len(values), dtype=bool)
    for k, (lo, hi) in enumerate(label_range):
        margin = BAD_RANGE_MARGIN * (hi - lo)
        with np.errstate(invalid="ignore"):
            far |= (values[:, k] < lo - margin) | (values[:, k] > hi + margin)
    yso = in_triangle(teff, logg)
    with np.errstate(invalid="ignore"):
        return {"YSO_CANDIDATE": yso, "AGE_BIN": age_bin(logg, yso),
                "TEFF_EDGE": np.asarray(teff) > TEFF_EDGE_K,
                "LOW_SNR": np.asarray(snr, float) < LOW_SNR, "BAD": ~finite | far}
