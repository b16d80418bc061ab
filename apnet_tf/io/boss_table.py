"""BOSS spectra listed in a table (spAll, or any FITS or CSV table in its spelling).

Each row names one spec file, by one of (column names in any case):

* a file column, ``FILE`` or ``SPEC_FILE`` (spAll's): a name or a path relative to the root;
* ``PLATE``, ``MJD``, ``FIBERID`` (SDSS-IV): ``spec-PLATE4-MJD5-FIBER4.fits``;
* ``FIELD``, ``MJD``, ``CATALOGID`` (SDSS-V): ``spec-FIELD6-MJD-CATALOGID.fits`` (or with the
  field unpadded, as the v6_0_1 to v6_0_4 reductions wrote it).

A file is looked for under the root (``--root``) itself and in the SAS layouts below it:
``PLATE4/`` (SDSS-IV ``spectra/lite``) and ``FIELD6/MJD/`` (SDSS-V ``spectra/lite`` and
``spectra/full``). Rows whose file is found nowhere are left out (``Listing.missing``, said in
one line by ``survey_table.missing_note``) and the others go through; a file that several rows
name is read once, with a note (``Listing.notes``).
"""

from __future__ import annotations

import os

import numpy as np

from apnet_tf.errors import ApnetError
from apnet_tf.io.boss import spec_name
from apnet_tf.io.spectra import unreadable
from apnet_tf.io.survey_table import Listing, MissingRow, cell_text, repeat_notes

__all__ = ["FILE_COLUMNS", "SDSS4_COLUMNS", "SDSS5_COLUMNS", "read_boss_listing",
           "candidate_paths"]

#: The ways a row names its file, in the order they are tried.
FILE_COLUMNS = ("FILE", "SPEC_FILE")
SDSS4_COLUMNS = ("PLATE", "MJD", "FIBERID")
SDSS5_COLUMNS = ("FIELD", "MJD", "CATALOGID")
_ALL = FILE_COLUMNS + SDSS4_COLUMNS + SDSS5_COLUMNS


def read_boss_listing(table: str, root: str) -> Listing:
    """The BOSS spec files a table lists under ``root`` (``Listing``: paths in table order, no
    columns, the rows with no file, notes on repeated files).

    Raises:
        ApnetError: ``root`` is no folder; the table is unreadable or has none of the ways to
            name a file (the module's doc).
    """
    if not os.path.isdir(root):
        raise ApnetError(f"{root}: no such folder (--root, the folder holding the spec files)")
    cols = _columns(table)
    paths, lost, repeats = [], [], []
    first: dict[str, int] = {}
    for i in range(len(next(iter(cols.values())))):
        row = {k: v[i] for k, v in cols.items()}
        names, folders = _names(row), _folders(row)
        label = names[0] if names else "no file named"
        found = next((p for p in candidate_paths(root, names, folders) if os.path.isfile(p)),
                     None)
        if found is None:
            lost.append(MissingRow(i + 1, label, names[0] if names else ""))
        elif os.path.normpath(found) in first:
            repeats.append(f"row {i + 1} ({label}) repeats row {first[os.path.normpath(found)]}")
        else:
            first[os.path.normpath(found)] = i + 1
            paths.append(found)
    return Listing(paths, {}, lost, repeat_notes(table, repeats),
                   rows=len(next(iter(cols.values()))))


def candidate_paths(root: str, names: list[str], folders: list[str]) -> list[str]:
    """Where a row's file may be: each name under ``root`` and under each SAS folder."""
    return [os.path.join(root, sub, name) for sub in [""] + folders for name in names]


def _names(row: dict) -> list[str]:
    """The file names a row gives, most likely first."""
    for key in FILE_COLUMNS:
        if row.get(key):
            return [row[key]]
    plate, mjd, fiber, field, catalogid = (_whole(row.get(k)) for k in (
        "PLATE", "MJD", "FIBERID", "FIELD", "CATALOGID"))
    if mjd is None:
        return []
    if field is not None and catalogid is not None:
        return [spec_name(mjd, field=field, catalogid=catalogid),
                spec_name(mjd, field=field, catalogid=catalogid, pad_field=False)]
    if plate is not None and fiber is not None:
        return [spec_name(mjd, plate=plate, fiber=fiber)]
    return []


def _folders(row: dict) -> list[str]:
    """The SAS sub-folders a row's file may sit in: PLATE4/ and FIELD6/MJD/."""
    plate, mjd, field, catalogid = (_whole(row.get(k)) for k in (
        "PLATE", "MJD", "FIELD", "CATALOGID"))
    out = []
    if plate is not None:
        out.append(f"{plate:04d}")
    if field is not None and mjd is not None and catalogid is not None:
        out += [os.path.join(f"{field:06d}", str(mjd)), os.path.join(str(field), str(mjd))]
    return out


def _whole(value) -> int | None:
    """A table cell as an identifier: a whole number >= 0 (exact for 17-digit CATALOGIDs);
    None for an empty cell, text, or a negative placeholder (-1 where a row has no such id)."""
    text = "" if value is None else str(value).strip()
    try:
        number = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return None
        if not (np.isfinite(number) and number == int(number)):
            return None
        number = int(number)
    return number if number >= 0 else None


def _columns(table: str) -> dict[str, list[str]]:
    """The table's columns of ``_ALL`` (upper-case names), as text; CSV or FITS."""
    try:
        raw = _read_csv(table) if table.lower().endswith((".csv", ".ecsv", ".txt")) else \
            _read_fits(table)
    except ApnetError:
        raise
    except Exception as exc:  # noqa: BLE001 - any problem of the table is one line naming it
        raise unreadable(table, exc, "table") from None
    has_file = any(k in raw for k in FILE_COLUMNS)
    if not (has_file or all(k in raw for k in SDSS4_COLUMNS)
            or all(k in raw for k in SDSS5_COLUMNS)):
        raise ApnetError(f"{table}: names no spec file: a BOSS table needs a column "
                         f"{' or '.join(FILE_COLUMNS)}, or {', '.join(SDSS4_COLUMNS)}, or "
                         f"{', '.join(SDSS5_COLUMNS)}")
    return raw


def _read_csv(table: str) -> dict[str, list[str]]:
    import pandas as pd

    # text, so that 17-digit CATALOGIDs stay exact
    frame = pd.read_csv(table, comment="#", dtype=str, keep_default_na=False)
    return {c.upper(): [v.strip() for v in frame[c]] for c in frame.columns
            if c.upper() in _ALL}


def _read_fits(table: str) -> dict[str, list[str]]:
    from astropy.io import fits

    with fits.open(table, memmap=True) as hdul:
        tables = [h for h in hdul if isinstance(h, fits.BinTableHDU)]
        named = [h for h in tables if h.name == "SPALL"]
        if not tables:
            raise ApnetError(f"{table}: holds no binary table; a BOSS table is a FITS binary "
                             "table (spAll) or a CSV file")
        hdu = (named or tables)[0]
        names = {n.upper(): n for n in hdu.columns.names}
        data = hdu.data
        return {k: [cell_text(v) for v in np.asarray(data[names[k]])] for k in _ALL if k in names}
