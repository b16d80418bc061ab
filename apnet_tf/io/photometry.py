"""Photometry for APOGEE Net II: the seven values per star, read from a table and joined on
APOGEE_ID, and the catalog flag that says which of them the network filled in.

The columns are those of the DR17 allStar and allField tables, in the order the network takes
them: Gaia EDR3 parallax (mas), G, BP, RP, then 2MASS J, H, K. A value >= 98 (99.999 is the
usual placeholder) or not finite is replaced by the network's fill value (``model.published``);
``filled_bits`` records which.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from apnet_tf.errors import ApnetError, first_line

__all__ = ["PHOT_COLUMNS", "PHOT_BANDS", "FILL_LIMIT", "read_photometry", "filled_bits",
           "lookup", "describe_bits", "fingerprint"]

#: Table columns, in the network's order.
PHOT_COLUMNS = ("GAIAEDR3_PARALLAX", "GAIAEDR3_PHOT_G_MEAN_MAG", "GAIAEDR3_PHOT_BP_MEAN_MAG",
                "GAIAEDR3_PHOT_RP_MEAN_MAG", "J", "H", "K")
#: Short names of the bands, bit i of PHOT_FILLED being band i.
PHOT_BANDS = ("PLX", "G", "BP", "RP", "J", "H", "K")
#: Values at or above this are placeholders.
FILL_LIMIT = 98.0


def filled_bits(photometry: np.ndarray) -> np.ndarray:
    """(B, 7) raw photometry -> (B,) int16: bit i set where band i is >= 98 or not finite."""
    x = np.asarray(photometry, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        filled = ~(np.isfinite(x) & (x < FILL_LIMIT))
    return (filled * (1 << np.arange(len(PHOT_COLUMNS)))).sum(axis=1).astype(np.int16)


def describe_bits() -> str:
    return ", ".join(f"{1 << i}={b}" for i, b in enumerate(PHOT_BANDS))


def read_photometry(path: str, strict: bool = False) -> dict[str, np.ndarray]:
    """APOGEE_ID -> (7,) float64 photometry from a FITS (HDU 1) or CSV table; a star listed
    twice keeps its first row.

    Text that is not a number becomes NaN (filled by the network), or with ``strict``
    (make-records, which stores the values) an error; an empty cell is missing either way.

    Raises:
        ApnetError: the file is missing or unreadable, or lacks APOGEE_ID or a column of
            ``PHOT_COLUMNS``, or (``strict``) a column holds text that is not a number (the
            message names the file and the column).
    """
    if not os.path.isfile(path):
        raise ApnetError(f"{path}: no such file (--photometry)")
    from astropy.table import Table

    try:
        fmt = "ascii.csv" if path.lower().endswith((".csv", ".csv.gz")) else None
        table = Table.read(path, format=fmt) if fmt else Table.read(path, hdu=1)
    except Exception as exc:  # astropy raises many types for a bad table
        raise ApnetError(f"{path}: not a readable FITS or CSV table ({first_line(exc)})") from None
    names = {n.upper(): n for n in table.colnames}
    absent = [c for c in ("APOGEE_ID",) + PHOT_COLUMNS if c not in names]
    if absent:
        raise ApnetError(f"{path}: no column {', '.join(absent)} (--photometry needs APOGEE_ID "
                         f"and {', '.join(PHOT_COLUMNS)})")
    values = np.full((len(table), len(PHOT_COLUMNS)), np.nan)
    for j, col in enumerate(PHOT_COLUMNS):
        column = table[names[col]]
        data = np.ma.filled(np.ma.asarray(column, dtype=np.float64), np.nan) \
            if column.dtype.kind in "biuf" else _floats(column, path, col, strict)
        values[:, j] = data
    out: dict[str, np.ndarray] = {}
    for star, row in zip(table[names["APOGEE_ID"]], values):
        key = _text(star)
        if key and key not in out:
            out[key] = row
    return out


def _floats(column, path: str, name: str, strict: bool) -> np.ndarray:
    """A text column as floats: NaN for an empty or masked cell; text that is no number is
    NaN too, or with ``strict`` an ApnetError naming the file, the column and the row."""
    out = np.full(len(column), np.nan)
    for i, v in enumerate(np.ma.filled(np.ma.asarray(column), "")):
        text = _text(v)
        try:
            out[i] = float(text)
        except ValueError:
            if strict and text:
                raise ApnetError(f"{path}: column {name} holds {text!r} (row {i + 1}), not a "
                                 "number; give magnitudes and parallaxes as numbers (99.999, "
                                 "NaN or an empty cell for a missing one)") from None
    return out


def _text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip()


def lookup(table: dict[str, np.ndarray], apogee_ids) -> np.ndarray:
    """(B, 7) photometry of the stars ``apogee_ids``; NaN (to be filled) for a star not in it."""
    missing = np.full(len(PHOT_COLUMNS), np.nan)
    return np.array([table.get(_text(i), missing) for i in apogee_ids],
                    dtype=np.float64).reshape(-1, len(PHOT_COLUMNS))


def fingerprint(table: dict[str, np.ndarray]) -> str:
    """sha256 of a photometry table's stars and values (what a resumed job must match)."""
    h = hashlib.sha256()
    for key in sorted(table):
        h.update(key.encode("utf-8", "surrogateescape"))
        h.update(np.asarray(table[key], np.float64).tobytes())
    return h.hexdigest()
