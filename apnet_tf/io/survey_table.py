"""Inputs listed in an SDSS summary table (allStar or allField) in the SAS folder layout.

Each row names one apStar file: ``{root}/{TELESCOPE}/{FIELD}/{FILE}``, the layout of
``apogee/spectro/redux/<release>/stars/`` that APOGEE Net II's users already mirror. APOGEE_ID,
TELESCOPE and FIELD go into the catalog. Rows whose file is missing (``Listing.missing``) are
left out, counted in one line (``missing_note``) and listed in a file (``write_missing_list``),
one path relative to the root a line: the ``rsync --files-from`` format of ``write_file_list``,
so the list fetches what is missing. ``keep_rows_with_files`` cuts a table down to the rows whose
file is there. A file that several rows name is read once, with its first row's columns; the
later rows are named in a note (``Listing.notes``), so the catalog has one row per file. A table
with APOGEE Net II's photometry columns (``photometry.PHOT_COLUMNS``, as allStar and allField
have) gives them too, for a two-input model.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from apnet_tf.errors import ApnetError, first_line
from apnet_tf.io.files import atomic_path
from apnet_tf.io.photometry import PHOT_COLUMNS
from apnet_tf.wording import counted

__all__ = ["COLUMNS", "MISSING_SHOWN", "read_listing", "Listing", "MissingRow", "shown",
           "repeat_notes", "cell_text", "missing_note", "write_file_list", "write_missing_list",
           "is_missing_list", "keep_rows_with_files", "TableCut", "sas_paths"]

#: Table columns used; all are strings in allStar and allField.
COLUMNS = ("APOGEE_ID", "TELESCOPE", "FIELD", "FILE")
#: How many of the rows with no file the summary line names (the list file holds all).
MISSING_SHOWN = 3
#: The first line of a list of missing files: it says what the list is, and marks the file as
#: one the package wrote (a later job may replace it). rsync skips lines that start with #.
_LIST_HEAD = "# apnet-tf:"


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
            named = f"{tel}/{field}/{name}" if name and tel and field else ""
            missing.append(MissingRow(i + 1, cols["APOGEE_ID"][i], named))
        elif os.path.normpath(path) in first:
            repeats.append(f"row {i + 1} ({cols['APOGEE_ID'][i]}) repeats row "
                           f"{first[os.path.normpath(path)] + 1}")
        else:
            first[os.path.normpath(path)] = i
            paths.append(path)
            keep.append(i)
    names = COLUMNS[:3] + (PHOT_COLUMNS if PHOT_COLUMNS[0] in cols else ())
    return Listing(paths, {k: [cols[k][i] for i in keep] for k in names}, missing,
                   repeat_notes(table, repeats, "APOGEE_ID, TELESCOPE and FIELD"),
                   rows=len(cols["FILE"]))


def shown(items: list[str], most: int = 5) -> str:
    """The first ``most`` items joined by "; ", and "; ..." when there are more."""
    return "; ".join(items[:most]) + ("; ..." if len(items) > most else "")


def repeat_notes(table: str, repeats: list[str], kept: str = "") -> list[str]:
    """One note line for the rows that name a file an earlier row names, or none; ``kept``
    names the columns taken from a file's first row."""
    if not repeats:
        return []
    first = f", with its first row's {kept}" if kept else ""
    return [f"{table}: {counted(len(repeats), 'row')} name a file that an earlier row names "
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


@dataclasses.dataclass(frozen=True)
class MissingRow:
    """A table row whose file is not under the root."""

    row: int  # its number in the table, from 1
    star: str  # what the row is: its APOGEE_ID (a BOSS table: the file name it gives)
    path: str  # its file, relative to the root; "" for a row that names no file


@dataclasses.dataclass
class Listing:
    """Files named by an input table, the table's columns for them, its rows with no file, and
    notes (rows that repeat an earlier row's file, dropped); ``rows``: the table's rows."""

    paths: list[str]
    columns: dict[str, list[str]]
    missing: list[MissingRow]
    notes: list[str] = dataclasses.field(default_factory=list)
    rows: int = 0


def missing_note(table: str, root: str, listing: Listing, listed_in: str | None) -> str:
    """One line for the rows of ``table`` whose file is not under ``root``: how many of how
    many, the first ``MISSING_SHOWN`` stars, and the file ``listed_in`` that lists them all."""
    stars = [m.star or f"row {m.row}" for m in listing.missing]
    where = f"; all listed in {listed_in}" if listed_in else ""
    return (f"{table}: {len(listing.missing)} of {counted(listing.rows, 'row')} name no file "
            f"under {root} ({shown(stars, MISSING_SHOWN)}): left out of the catalog{where}")


def write_file_list(path: str, files: list[str], comments: list[str] = ()) -> str:
    """Write ``files`` (paths relative to a folder, e.g. ``TELESCOPE/FIELD/FILE``) one a line,
    after ``comments`` as ``#`` lines, atomically: the list ``rsync --files-from`` reads."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(f"# {c}\n" for c in comments)
        f.writelines(f"{name}\n" for name in files)
    return path


def write_missing_list(path: str, table: str, root: str, missing: list[MissingRow]) -> str:
    """The file of ``missing_note``: each missing row's file relative to ``root``, one a line
    (``write_file_list``), so that ``rsync --files-from=PATH`` from the SAS ``stars/`` folder
    fetches them; rows that name no file are ``#`` lines."""
    head = [f"{_LIST_HEAD[2:]} rows of {table} whose file is not under {root}, one path "
            "relative to it a line (rsync --files-from)"]
    head += [f"row {m.row} ({m.star}): names no file" for m in missing if not m.path]
    return write_file_list(path, [m.path for m in missing if m.path], head)


def is_missing_list(path: str) -> bool:
    """Whether ``path`` is a list that ``write_missing_list`` wrote (so a job may replace or
    remove it)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().startswith(_LIST_HEAD)
    except (OSError, UnicodeDecodeError):
        return False


def sas_paths(table: str, apogee_ids=None) -> list[str]:
    """``TELESCOPE/FIELD/FILE`` of each row of an allStar or allField ``table`` (of the rows of
    the stars ``apogee_ids`` only, when given), in table order: with ``write_file_list``, the
    ``rsync --files-from`` list of their apStar files under the SAS ``stars/`` folder."""
    cols = _columns(table)
    wanted = None if apogee_ids is None else {cell_text(i) for i in apogee_ids}
    return [f"{t}/{f}/{n}" for i, t, f, n in zip(cols["APOGEE_ID"], cols["TELESCOPE"],
                                                 cols["FIELD"], cols["FILE"])
            if n and t and f and (wanted is None or i in wanted)]


@dataclasses.dataclass(frozen=True)
class TableCut:
    """What ``keep_rows_with_files`` did."""

    table: str
    root: str
    out: str
    kept: int
    rows: int

    def __str__(self) -> str:
        return (f"kept {self.kept} of {counted(self.rows, 'row')} of {self.table} (those whose "
                f"file is under {self.root}): {self.out}")


def keep_rows_with_files(table: str, root: str, out: str) -> TableCut:
    """Write the rows of an allStar or allField ``table`` whose file is under ``root``
    (``{root}/{TELESCOPE}/{FIELD}/{FILE}``), every column kept, to the FITS table ``out``
    (atomically): the table cut to the stars you downloaded.

    Raises:
        ApnetError: as ``read_listing``, or ``out`` is not a .fits name or is the table itself.
    """
    from astropy.io import fits

    if not out.lower().endswith((".fits", ".fit")):
        raise ApnetError(f"{out}: the cut table is written as FITS; name it .fits")
    if os.path.abspath(out) == os.path.abspath(table):
        raise ApnetError(f"{out}: the same file as the table; write the cut elsewhere")
    listing = read_listing(table, root)
    gone = np.zeros(listing.rows, dtype=bool)
    gone[[m.row - 1 for m in listing.missing]] = True
    with fits.open(table, memmap=True) as hdul:
        hdu = fits.BinTableHDU(data=hdul[1].data[~gone], header=hdul[1].header)
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with atomic_path(out) as tmp:
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp)
    return TableCut(table, root, out, int((~gone).sum()), listing.rows)
