"""Inputs listed in an SDSS summary table (allStar or allField) in the SAS folder layout.

Each row names one apStar file: ``{root}/{TELESCOPE}/{FIELD}/{FILE}``, the layout of
``apogee/spectro/redux/<release>/stars/`` that APOGEE Net II's users already mirror. APOGEE_ID,
TELESCOPE and FIELD go into the catalog. Rows whose file is missing are counted and reported;
the rest go through. A file that several rows name is read once, with its first row's columns;
the later rows are named in a note (``Listing.notes``), so the catalog has one row per file.
A table with APOGEE Net II's photometry columns (``photometry.PHOT_COLUMNS``, as allStar and
allField have) gives them too, for a two-input model.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from apnet_tf.errors import ApnetError, first_line
from apnet_tf.io.photometry import PHOT_COLUMNS

__all__ = ["COLUMNS", "read_listing", "Listing", "shown", "repeat_notes", "cell_text"]

#: Table columns used; all are strings in allStar and allField.
COLUMNS = ("APOGEE_ID", "TELESCOPE", "FIELD", "FILE")


def read_listing(table: str, root: str) -> Listing:
    """The apStar files a summary table lists under ``root``, with their table columns.

    Raises:
        ApnetError: the table is unreadable or lacks one of ``COLUMNS``; ``root`` is no folder.
    """
    if not os.path.isdir(root):
        raise ApnetError(f"{root}: no such folder (--root, the folder holding TELESCOPE/FIELD/)")
    cols = _columns(table)
    paths, keep, missing = [], [], []
    first: dict[str, int] = {}  # normalised path -> its first row
    repeats: list[str] = []
    for i, (tel, field, name) in enumerate(zip(cols["TELESCOPE"], cols["FIELD"], cols["FILE"])):
        path = os.path.join(root, tel, field, name)
        if not (name and tel and field and os.path.isfile(path)):
            missing.append(f"{table} row {i + 1} ({cols['APOGEE_ID'][i]}): no file {path}")
        elif os.path.normpath(path) in first:
            repeats.append(f"row {i + 1} ({cols['APOGEE_ID'][i]}) repeats row "
                           f"{first[os.path.normpath(path)] + 1}")
        else:
            first[os.path.normpath(path)] = i
            paths.append(path)
            keep.append(i)
    names = COLUMNS[:3] + (PHOT_COLUMNS if PHOT_COLUMNS[0] in cols else ())
    return Listing(paths, {k: [cols[k][i] for i in keep] for k in names}, missing,
                   repeat_notes(table, repeats, "APOGEE_ID, TELESCOPE and FIELD"))


def shown(items: list[str], most: int = 5) -> str:
    """The first ``most`` items joined by "; ", and "; ..." when there are more."""
    return "; ".join(items[:most]) + ("; ..." if len(items) > most else "")


def repeat_notes(table: str, repeats: list[str], kept: str = "") -> list[str]:
    """One note line for the rows that name a file an earlier row names, or none; ``kept``
    names the columns taken from a file's first row."""
    if not repeats:
        return []
    first = f", with its first row's {kept}" if kept else ""
    return [f"{table}: {len(repeats)} row(s) name a file that an earlier row names "
            f"({shown(repeats)}); each file is read once{first}"]


def _columns(table: str) -> dict[str, list[str]]:
    from astropy.io import fits

    try:
        with fits.open(table, memmap=True) as hdul:
            if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
                raise ApnetError(f"{table}: HDU 1 is not a binary table; --table needs an "
                                 "allStar or allField FITS table")
            data = hdul[1].data
            names = [] if data is None else [n.upper() for n in data.columns.names]
            absent = [c for c in COLUMNS if c not in names]
            if absent:
                raise ApnetError(f"{table}: no column {', '.join(absent)} in HDU 1 (an allStar "
                                 f"or allField table has {', '.join(COLUMNS)})")
            out = {c: [cell_text(v) for v in np.asarray(data[c])] for c in COLUMNS}
            if all(c in names for c in PHOT_COLUMNS):
                out.update({c: [float(v) for v in np.asarray(data[c], dtype=np.float64)]
                            for c in PHOT_COLUMNS})
            return out
    except ApnetError:
        raise
    except Exception as exc:  # noqa: BLE001 - any problem of the table is one line naming it
        if isinstance(exc, FileNotFoundError):
            raise ApnetError(f"{table}: no such file") from None
        raise ApnetError(f"{table}: not a readable FITS table ({first_line(exc)})") from None


def cell_text(value) -> str:
    """A table cell as stripped text (bytes decoded as UTF-8)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip()


@dataclasses.dataclass
class Listing:
    """Files named by an input table, the table's columns for them, its rows with no file, and
    notes (rows that repeat an earlier row's file, dropped)."""

    paths: list[str]
    columns: dict[str, list[str]]
    missing: list[str]
    notes: list[str] = dataclasses.field(default_factory=list)
