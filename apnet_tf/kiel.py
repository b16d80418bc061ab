"""The paper's science of the Kiel diagram (Teff, log g) that the catalog and the calibration
both use: the triangle that selects young stellar object candidates (paper 4.1) and the ages
that log g stands for inside it (paper 4.2). Plain numpy on arrays of N stars.

A base module, below ``io``, so that the catalog's flags (``io.catalog_flags``), the
calibration's Kiel regions (``model.calibration``) and everything above can use the one
triangle.
"""

from __future__ import annotations

import numpy as np

__all__ = ["YSO_TRIANGLE", "AGE_BIN_EDGES", "AGE_BIN_LABELS", "in_triangle", "age_bin"]

#: Paper 4.1: the (Teff, log g) triangle that selects YSO candidates.
YSO_TRIANGLE = ((2200.0, 4.4), (4500.0, 3.9), (3200.0, 1.7))
#: Paper 4.2: log g bin edges and the ages they stand for.
AGE_BIN_EDGES = (3.6, 3.8, 4.0, 4.2)
AGE_BIN_LABELS = ("<1 Myr", "1-2 Myr", "2-3 Myr", "3-5 Myr", ">5 Myr")


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
