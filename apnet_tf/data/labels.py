"""Label tables: reading, missing values, categories and deterministic train/dev/test splits.

A label table is a pandas DataFrame with the columns of ``COLUMNS``. Missing labels are NaN
(-9999 is accepted on input); a star with missing labels is kept, and its label mask says
which are present.

Every number is checked where it enters (``numeric_column``): text in a number column is an
error naming the column and row; placeholders (``constants.SENTINELS``) and labels outside their
physical ranges (``constants.LABEL_RANGES``) are read as missing, counted per column in
``df.attrs["rejected"]`` and reported, so they are never trained on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
import pandas as pd
from astropy.table import Table

from apnet_tf.constants import (
    CATEGORIES,
    LABEL_COLUMNS,
    LABEL_RANGES,
    SENTINELS,
    SPLIT_FRACTIONS,
    SPLITS,
)
from apnet_tf.errors import ApnetError, first_line
from apnet_tf.wording import counted

__all__ = [
    "REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "COLUMNS", "DEFAULT_CATEGORY", "read_table",
    "require_columns", "numeric_column", "rejected_lines", "hash_fraction", "assign_split",
    "load_labels", "label_mask", "missing_counts", "MatchReport", "match_report"
]

REQUIRED_COLUMNS = ("APOGEE_ID",) + LABEL_COLUMNS
OPTIONAL_COLUMNS = ("CATEGORY", "SNR", "RA", "DEC", "FILE")
#: Columns of a loaded label table, in this order.
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS + ("SPLIT",)
DEFAULT_CATEGORY = "payne"


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV or FITS table into a DataFrame with upper-case column names.

    Raises:
        ApnetError: the file is missing or cannot be parsed.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ApnetError(f"{path}: no such file")
    try:
        if path.lower().endswith((".fits", ".fit", ".fits.gz")):
            table = Table.read(path)
            names = [n for n in table.colnames if len(table[n].shape) <= 1]
            df = table[names].to_pandas()
        else:
            df = pd.read_csv(path, dtype={"APOGEE_ID": str, "apogee_id": str})
    except Exception as exc:  # pandas and astropy raise many types for one meaning
        raise ApnetError(f"{path}: cannot read table ({first_line(exc)})") from None
    df.columns = [str(c).strip().upper() for c in df.columns]
    dup = df.columns[df.columns.duplicated()]
    if len(dup):
        raise ApnetError(f"{path}: two columns are both named {dup[0]} once upper-cased; "
                         "column names are read without regard to case: rename or drop one")
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].map(lambda v: v.decode().strip() if isinstance(v, bytes)
                                  else v.strip() if isinstance(v, str) else v)
    return df


def require_columns(df: pd.DataFrame, columns, path: str) -> None:
    """Raise ApnetError naming the first missing column."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ApnetError(f"{path}: missing required column {missing[0]}"
                         + (f" (and {', '.join(missing[1:])})" if len(missing) > 1 else ""))


def numeric_column(df: pd.DataFrame, col: str, path: str,
                   valid: tuple[float, float] | None = None,
                   rejected: dict[str, dict[str, int]] | None = None) -> np.ndarray:
    """Column ``col`` of ``df`` as float64 (N,), checked at the door.

    Blank cells and NaN are missing. Placeholders (``SENTINELS``), infinities and, when ``valid``
    is given, values outside [lo, hi] become NaN; their numbers are added to
    ``rejected[col]["placeholder"]`` and ``rejected[col]["out_of_range"]``.

    Raises:
        ApnetError: a cell holds text that is not a number (names the column and the data row,
            counted from 1 after the header).
    """
    values = df[col]
    num = pd.to_numeric(values, errors="coerce")
    text = num.isna().to_numpy() & values.notna().to_numpy()
    text &= values.astype(str).str.strip().ne("").to_numpy()
    if text.any():
        row = int(np.flatnonzero(text)[0])
        raise ApnetError(f"{path}: column {col} holds {values.iloc[row]!r} in data row {row + 1}, "
                         f"not a number ({counted(int(text.sum()), 'such row')})")
    arr = num.to_numpy(dtype=np.float64, na_value=np.nan).copy()
    placeholder = np.isclose(arr[:, None], np.array(SENTINELS)[None, :], rtol=0,
                             atol=1e-3).any(axis=1)
    bad = ~placeholder & ~np.isfinite(arr) & ~np.isnan(arr)
    if valid is not None:
        with np.errstate(invalid="ignore"):
            bad |= ~placeholder & np.isfinite(arr) & ((arr < valid[0]) | (arr > valid[1]))
    arr[placeholder | bad] = np.nan
    if rejected is not None and (placeholder.any() or bad.any()):
        entry = rejected.setdefault(col, {"placeholder": 0, "out_of_range": 0})
        entry["placeholder"] += int(placeholder.sum())
        entry["out_of_range"] += int(bad.sum())
    return arr


def rejected_lines(rejected: dict[str, dict[str, int]]) -> list[str]:
    """One line per kind of rejected value, naming the columns and counts."""
    out = []
    placeholders = {c: v["placeholder"] for c, v in rejected.items() if v["placeholder"]}
    if placeholders:
        out.append("placeholder values (" + ", ".join(f"{v:g}" for v in SENTINELS)
                   + ") read as missing: " + ", ".join(f"{c} {n}" for c, n in
                                                      placeholders.items()))
    ranged = {c: v["out_of_range"] for c, v in rejected.items() if v["out_of_range"]}
    if ranged:
        out.append("values outside the physical range read as missing, not trained on: "
                   + ", ".join(f"{c} {n}" + (" (allowed {:g} to {:g})".format(*LABEL_RANGES[c])
                                             if c in LABEL_RANGES else "")
                               for c, n in ranged.items()))
    return out


def hash_fraction(apogee_id: str) -> float:
    """A stable number in [0, 1) from an APOGEE ID: the same on every machine and in every run."""
    digest = hashlib.sha256(apogee_id.strip().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(apogee_id: str, category: str) -> str:
    """train, dev or test for a star, from the hash of its ID and its category's fractions."""
    train, dev, _ = SPLIT_FRACTIONS[category]
    u = hash_fraction(apogee_id)
    return SPLITS[0] if u < train else SPLITS[1] if u < train + dev else SPLITS[2]


def load_labels(path: str | os.PathLike) -> pd.DataFrame:
    """Load a label table (CSV or FITS) into the standard columns ``COLUMNS``.

    TEFF, LOGG and FE_H are float with NaN for missing; CATEGORY defaults to ``payne``; SPLIT comes
    from ``assign_split``.

    Raises:
        ApnetError: a required column is missing or a category is unknown.
    """
    path = os.fspath(path)
    raw = read_table(path)
    require_columns(raw, REQUIRED_COLUMNS, path)
    df = pd.DataFrame({"APOGEE_ID": raw["APOGEE_ID"].astype(str).str.strip()})
    rejected: dict[str, dict[str, int]] = {}
    for col in LABEL_COLUMNS:
        df[col] = numeric_column(raw, col, path, LABEL_RANGES[col], rejected)
    if "CATEGORY" in raw.columns:
        cats = raw["CATEGORY"].fillna(DEFAULT_CATEGORY).astype(str).str.strip().str.lower()
        cats = cats.replace("", DEFAULT_CATEGORY)
    else:
        cats = pd.Series([DEFAULT_CATEGORY] * len(raw))
    unknown = sorted(set(cats) - set(CATEGORIES))
    if unknown:
        raise ApnetError(f"{path}: unknown CATEGORY {unknown[0]!r}; expected one of "
                         f"{', '.join(CATEGORIES)}")
    df["CATEGORY"] = cats.to_numpy()
    for col in ("SNR", "RA", "DEC"):
        df[col] = numeric_column(raw, col, path, rejected=rejected) if col in raw.columns \
            else np.nan
    df["FILE"] = raw["FILE"].fillna("").astype(str).to_numpy() if "FILE" in raw.columns else ""
    df["SPLIT"] = [assign_split(i, c) for i, c in zip(df["APOGEE_ID"], df["CATEGORY"])]
    df = df[list(COLUMNS)]
    df.attrs["rejected"] = rejected
    return df


def label_mask(df: pd.DataFrame) -> np.ndarray:
    """Bool array of shape (N, 3): True where TEFF, LOGG, FE_H is present."""
    return np.isfinite(df[list(LABEL_COLUMNS)].to_numpy(dtype=np.float64))


def missing_counts(df: pd.DataFrame) -> dict[str, int]:
    """Number of missing values per label column."""
    return {c: int(df[c].isna().sum()) for c in LABEL_COLUMNS}


@dataclasses.dataclass
class MatchReport:
    """How a label table and a set of spectra line up. Nothing in it is fatal."""

    labels_without_spectrum: list[str]
    spectra_without_label: list[str]
    duplicate_label_ids: list[str]
    duplicate_spectrum_ids: list[str]
    missing_values: dict[str, int]
    rejected: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)

    def lines(self) -> list[str]:
        """One human-readable line per finding that has a non-zero count."""
        out = []
        for name, items in (("labels without a spectrum", self.labels_without_spectrum),
                            ("spectra without a label", self.spectra_without_label),
                            ("duplicate IDs in the label table", self.duplicate_label_ids),
                            ("duplicate IDs among the spectra", self.duplicate_spectrum_ids)):
            if items:
                shown = ", ".join(items[:5]) + (", ..." if len(items) > 5 else "")
                out.append(f"{len(items)} {name} ({shown})")
        # rejected values are missing too; each cause gets its own line, so no count repeats
        given = {k: v - sum(self.rejected.get(k, {}).values())
                 for k, v in self.missing_values.items()}
        empty = {k: v for k, v in given.items() if v > 0}
        if empty:
            out.append("label values empty or NaN, missing: "
                       + ", ".join(f"{k} {v}" for k, v in empty.items()))
        return out + rejected_lines(self.rejected)


def match_report(labels: pd.DataFrame | None, spectrum_ids: list[str]) -> MatchReport:
    """Compare label-table IDs with the IDs of the spectra that were read."""
    ids = pd.Series(spectrum_ids, dtype=object)
    dup_spec = sorted(set(ids[ids.duplicated()]))
    if labels is None:
        # Without a label table every spectrum is unlabelled by choice: nothing to report.
        return MatchReport([], [], [], dup_spec, {c: 0 for c in LABEL_COLUMNS})
    lab_ids = labels["APOGEE_ID"]
    have = set(spectrum_ids)
    known = set(lab_ids)
    return MatchReport(
        labels_without_spectrum=sorted(known - have),
        spectra_without_label=sorted(have - known),
        duplicate_label_ids=sorted(set(lab_ids[lab_ids.duplicated()])),
        duplicate_spectrum_ids=dup_spec,
        missing_values=missing_counts(labels),
        rejected=labels.attrs.get("rejected", {}),
    )
