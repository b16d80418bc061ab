"""Label tables: reading, missing values, categories and deterministic train/dev/test splits.

A label table is a pandas DataFrame with the columns of ``COLUMNS``. Missing labels are NaN
(-9999 is accepted on input); a star with missing labels is kept, and its label mask says
which are present.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
import pandas as pd
from astropy.table import Table

from .constants import CATEGORIES, LABEL_COLUMNS, MISSING_VALUE, SPLIT_FRACTIONS, SPLITS
from .errors import ApnetError, first_line

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


def clean_missing(values) -> np.ndarray:
    """Float array with -9999 (and anything non-numeric) turned into NaN."""
    arr = np.array(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=np.float64)
    arr[np.isclose(arr, MISSING_VALUE)] = np.nan
    return arr


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
    for col in LABEL_COLUMNS:
        df[col] = clean_missing(raw[col])
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
        df[col] = clean_missing(raw[col]) if col in raw.columns else np.nan
    df["FILE"] = raw["FILE"].fillna("").astype(str).to_numpy() if "FILE" in raw.columns else ""
    df["SPLIT"] = [assign_split(i, c) for i, c in zip(df["APOGEE_ID"], df["CATEGORY"])]
    return df[list(COLUMNS)]


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
        missing = {k: v for k, v in self.missing_values.items() if v}
        if missing:
            out.append("missing label values: "
                       + ", ".join(f"{k} {v}" for k, v in missing.items()))
        return out


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
    )
