"""Photometry for APOGEE Net II: the seven values per star, read from a table and joined on
APOGEE_ID, and the catalog flag that says which of them the network filled in.

The columns are those of the DR17 allStar and allField tables, in the order the network takes
them: Gaia EDR3 parallax (mas), G, BP, RP, then 2MASS J, H, K. A value >= 98 (99.999 is the
usual placeholder) or not finite is replaced by the network's fill value (``model.published``);
``filled_bits`` records which. The package's other placeholders (``constants.SENTINELS``:
-9999 ...), magnitudes outside ``MAGNITUDE_RANGE`` and parallaxes beyond ``PARALLAX_LIMIT`` are
read as missing, so they are filled and marked too, never given to the network as values.

Stars are joined on APOGEE_ID compared without case and white space (``star_key``); a star
listed twice keeps its first row, as make-labels does, with a note.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from apnet_tf.constants import MAGNITUDE_RANGE, PARALLAX_LIMIT, SENTINELS
from apnet_tf.errors import ApnetError, first_line

__all__ = ["PHOT_COLUMNS", "PHOT_BANDS", "FILL_LIMIT", "read_photometry", "filled_bits",
           "lookup", "describe_bits", "fingerprint", "star_key", "placeholders", "matched",
           "check_matches", "PhotometryTable"]

#: Table columns, in the network's order.
PHOT_COLUMNS = ("GAIAEDR3_PARALLAX", "GAIAEDR3_PHOT_G_MEAN_MAG", "GAIAEDR3_PHOT_BP_MEAN_MAG",
                "GAIAEDR3_PHOT_RP_MEAN_MAG", "J", "H", "K")
#: Short names of the bands, bit i of PHOT_FILLED being band i.
PHOT_BANDS = ("PLX", "G", "BP", "RP", "J", "H", "K")
#: Values at or above this are placeholders.
FILL_LIMIT = 98.0


class PhotometryTable(dict):
    """``star_key(APOGEE_ID)`` -> (7,) raw photometry, and the table it was read from
    (``path``, for messages). ``rows``, a mapping APOGEE_ID -> (7,) (the notebook API's), are
    keyed by ``star_key``."""

    def __init__(self, rows=(), path: str = "--photometry"):
        super().__init__((star_key(k), v) for k, v in dict(rows).items())
        self.path = path


def filled_bits(photometry: np.ndarray) -> np.ndarray:
    """(B, 7) raw photometry -> (B,) int16: bit i set where band i is >= 98 or not finite."""
    x = np.asarray(photometry, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        filled = ~(np.isfinite(x) & (x < FILL_LIMIT))
    return (filled * (1 << np.arange(len(PHOT_COLUMNS)))).sum(axis=1).astype(np.int16)


def describe_bits() -> str:
    return ", ".join(f"{1 << i}={b}" for i, b in enumerate(PHOT_BANDS))


def read_photometry(path: str, notes: list[str] | None = None) -> PhotometryTable:
    """``star_key(APOGEE_ID)`` -> (7,) float64 photometry from a FITS (HDU 1) or CSV table.

    An empty cell is missing; a placeholder (``placeholders``) is read as missing; a star listed
    in several rows keeps its first. Both are said in a line appended to ``notes`` when given.

    Raises:
        ApnetError: the file is missing or unreadable, or lacks APOGEE_ID or a column of
            ``PHOT_COLUMNS``, or a column holds text that is not a number (the message names
            the file, the column and the row).
    """
    table, names = _table(path)
    values = np.full((len(table), len(PHOT_COLUMNS)), np.nan)
    for j, col in enumerate(PHOT_COLUMNS):
        column = table[names[col]]
        values[:, j] = np.ma.filled(np.ma.asarray(column, dtype=np.float64), np.nan) \
            if column.dtype.kind in "biuf" else _floats(column, path, col)
    dropped = placeholders(values)
    values[dropped] = np.nan
    keys = [star_key(v) for v in table[names["APOGEE_ID"]]]
    out = PhotometryTable(path=path)
    repeats: dict[str, bool] = {}  # key -> whether a later row differs from the first
    for key, row in zip(keys, values):
        if not key:
            continue
        if key in out:
            repeats[key] = repeats.get(key, False) or not np.array_equal(out[key], row,
                                                                         equal_nan=True)
        else:
            out[key] = row
    if notes is not None:
        notes.extend(_notes(path, dropped, repeats))
    return out


def _table(path: str):
    """(astropy table, upper-case column name -> its name) of a photometry table, checked."""
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
    return table, names


def placeholders(values: np.ndarray) -> np.ndarray:
    """(N, 7) raw photometry -> (N, 7) bool: the package's placeholders (``SENTINELS``), a
    parallax beyond ±``PARALLAX_LIMIT`` mas, a magnitude outside ``MAGNITUDE_RANGE`` other than
    Net II's own >= 98 (which the network fills in any case)."""
    x = np.asarray(values, np.float64)
    with np.errstate(invalid="ignore"):
        out = np.isin(x, SENTINELS)
        out[:, 0] |= np.abs(x[:, 0]) > PARALLAX_LIMIT
        mags = x[:, 1:]
        out[:, 1:] |= (mags < MAGNITUDE_RANGE[0]) | ((mags > MAGNITUDE_RANGE[1])
                                                     & (mags < FILL_LIMIT))
    return out


def _notes(path: str, dropped: np.ndarray, repeats: dict[str, bool]) -> list[str]:
    out = []
    counts = {c: int(n) for c, n in zip(PHOT_COLUMNS, dropped.sum(axis=0)) if n}
    if counts:
        out.append(f"{path}: placeholder values (-9999, a parallax beyond {PARALLAX_LIMIT:g} "
                   f"mas, a magnitude outside {MAGNITUDE_RANGE[0]:g} to {MAGNITUDE_RANGE[1]:g}) "
                   "read as missing, filled and marked in PHOT_FILLED: "
                   + ", ".join(f"{c} {n}" for c, n in counts.items()))
    if repeats:
        shown = ", ".join(list(repeats)[:5]) + (", ..." if len(repeats) > 5 else "")
        out.append(f"{path}: {len(repeats)} APOGEE_ID(s) listed in more than one row "
                   f"({sum(repeats.values())} with different values): {shown}; the first row "
                   "of each is used, the others are ignored")
    return out


def _floats(column, path: str, name: str) -> np.ndarray:
    """A text column as floats: NaN for an empty or masked cell; text that is no number is an
    ApnetError naming the file, the column and the row."""
    out = np.full(len(column), np.nan)
    for i, v in enumerate(np.ma.filled(np.ma.asarray(column), "")):
        text = _text(v)
        try:
            out[i] = float(text)
        except ValueError:
            if text:
                raise ApnetError(f"{path}: column {name} holds {text!r} (row {i + 1}), not a "
                                 "number; give magnitudes and parallaxes as numbers (99.999, "
                                 "NaN or an empty cell for a missing one)") from None
    return out


def _text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip()


def star_key(apogee_id) -> str:
    """The form two APOGEE_IDs are compared in: no white space, upper case ("2m00452143
    +1634446 " and "2M00452143+1634446" are one star)."""
    return "".join(_text(apogee_id).split()).upper()


def lookup(table: dict[str, np.ndarray], apogee_ids) -> np.ndarray:
    """(B, 7) photometry of the stars ``apogee_ids``; NaN (to be filled) for a star not in it."""
    missing = np.full(len(PHOT_COLUMNS), np.nan)
    return np.array([table.get(star_key(i), missing) for i in apogee_ids],
                    dtype=np.float64).reshape(-1, len(PHOT_COLUMNS))


def matched(table: dict[str, np.ndarray], apogee_ids) -> np.ndarray:
    """(B,) bool: which of ``apogee_ids`` the table holds."""
    return np.array([star_key(i) in table for i in apogee_ids], dtype=bool)


def check_matches(table: dict[str, np.ndarray], apogee_ids, path: str | None = None) -> int:
    """How many of ``apogee_ids`` the table lacks; ``path`` names it (default: a
    ``PhotometryTable``'s own).

    Raises:
        ApnetError: it holds none of them (a table of other stars, or of other IDs), naming
            the column and two IDs of each side.
    """
    path = path or getattr(table, "path", "--photometry")
    found = matched(table, apogee_ids)
    ids = [_text(i) for i in apogee_ids]
    if ids and not found.any():
        theirs = ", ".join(list(table)[:2]) or "none"
        raise ApnetError(f"{path}: no APOGEE_ID matches a star of the job (the table has "
                         f"{theirs}, ...; the spectra {', '.join(ids[:2])}, ...); the stars "
                         "are joined on the APOGEE_ID column, compared without case and spaces")
    return int((~found).sum())


def fingerprint(table: dict[str, np.ndarray]) -> str:
    """sha256 of a photometry table's stars and values (what a resumed job must match)."""
    h = hashlib.sha256()
    for key in sorted(table):
        h.update(key.encode("utf-8", "surrogateescape"))
        h.update(np.asarray(table[key], np.float64).tobytes())
    return h.hexdigest()
