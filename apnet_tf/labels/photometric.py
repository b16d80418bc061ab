"""Training labels (paper section 2): the Payne rule, M-dwarf photometric labels, YSO labels.

* Payne labels (2.2) are adopted only for Teff > 4000 K or log g < 3.5.
* Low-mass main-sequence stars (2.3.1) are selected from 2MASS, Pan-STARRS and Gaia photometry and
  get [Fe/H] from Hejazi et al. (2015), Teff from Mann et al. (2015) and log g from
  Veyette et al. (2017). Stars outside a relation's stated validity range are flagged, not dropped.
* YSO labels come from a user table (the paper's photometric CNN is separate work).

A star claimed by several sources follows the precedence yso > mstar > payne. A star listed
twice in one source's table keeps that table's first row; such stars are counted
(``{source}_duplicates``, shown when not 0) and named in a note, never counted as overridden
by precedence.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os

import numpy as np
import pandas as pd
from astropy.table import Table

from apnet_tf.constants import (
    LABEL_COLUMNS,
    LABEL_RANGES,
    MAGNITUDE_RANGE,
    MISSING_VALUE,
    PARALLAX_LIMIT,
)
from apnet_tf.data.labels import numeric_column, read_table, require_columns
from apnet_tf.errors import ApnetError
from apnet_tf.io.files import atomic_path

__all__ = [
    "HEJAZI_A", "MANN_B", "MANN_TEFF_SCALE", "VEYETTE_C", "JK_RANGE", "GK_RANGE", "MK_RANGE",
    "MIN_PARALLAX_SNR", "DEFAULT_GK_MARGIN", "HEJAZI_VALID", "MANN_VALID", "VEYETTE_VALID",
    "DEFAULT_YSO_FIELDS", "PAYNE_TEFF_MIN", "PAYNE_LOGG_MAX", "PHOTOMETRY_COLUMNS",
    "PHOTOMETRY_VALID", "LABEL_SOURCES", "PRECEDENCE", "hejazi_feh", "mann_teff",
    "veyette_logg", "absolute_k", "standard_photometry", "in_yso_field", "mdwarf_labels",
    "payne_labels", "first_per_id", "drop_unphysical", "LabelAssembly", "assemble_labels",
    "make_labels"
]

#: Hejazi et al. (2015) eq. 1 coefficients A1..A6 (paper eq. 1).
HEJAZI_A = (-14.259, 0.0519, 29.5926, -0.0529, -17.6762, 0.7032)
#: Mann et al. (2015) coefficients B0..B6 (paper eq. 2); the polynomial gives Teff / 3500 K.
MANN_B = (2.151, -1.092, 0.3767, -0.06292, 0.003950, 0.1697, -0.03106)
MANN_TEFF_SCALE = 3500.0
#: Veyette et al. (2017) (paper eq. 3): log g = c0 + c1 [Fe/H] + c2 Teff + c3 Teff^2.
VEYETTE_C = (7.912, -0.1880, -1.334e-3, 1.313e-7)

#: Selection cuts of paper 2.3.1 (open intervals).
JK_RANGE = (0.7, 1.05)
GK_RANGE = (3.37, 8.46)
MK_RANGE = (5.0, 10.0)
MIN_PARALLAX_SNR = 3.0
#: "a modestly broader range of g - K colors, by a few hundredths of a magnitude" (2.3.1).
DEFAULT_GK_MARGIN = 0.03

#: Stated validity ranges of the relations (inclusive bounds where the paper uses <=).
HEJAZI_VALID = {"fe_h": (-0.73, 0.3), "g_k": (3.3, 8.46), "j_k": (0.71, 1.01)}
MANN_VALID = {"m_k": (4.6, 9.8), "teff": (2700.0, 4100.0), "fe_h": (-0.6, 0.5)}
VEYETTE_VALID = {"teff": (3200.0, 4100.0), "fe_h": (-0.7, 0.3)}

#: APOGEE fields of star-forming regions and young clusters (fnmatch patterns, case-insensitive):
#: the Orion Complex, Perseus (IC 348, NGC 1333), NGC 2264 and the Pleiades.
DEFAULT_YSO_FIELDS = ("ORION*", "LAMBDAORI*", "IC348*", "N1333*", "NGC1333*", "PERSEUS*",
                      "N2264*", "NGC2264*", "PLEIADES*")

PAYNE_TEFF_MIN = 4000.0
PAYNE_LOGG_MAX = 3.5

#: Accepted spellings of each photometry column (upper-cased), first one canonical.
PHOTOMETRY_COLUMNS = {
    "J": ("J", "JMAG", "J_MAG", "TMASS_J"),
    "H": ("H", "HMAG", "H_MAG", "TMASS_H"),
    "K": ("K", "KS", "KMAG", "K_MAG", "KS_MAG", "TMASS_K"),
    "G_PS1": ("G_PS1", "PS1_G", "GMAG_PS1", "GP1_MAG"),
    "R_PS1": ("R_PS1", "PS1_R", "RMAG_PS1", "RP1_MAG"),
    "PARALLAX": ("PARALLAX", "PLX"),
    "PARALLAX_ERROR": ("PARALLAX_ERROR", "PARALLAX_ERR", "E_PLX", "PLX_ERR"),
}
#: What a photometry value must lie in to be used; outside it is a placeholder (99.999, -999...).
PHOTOMETRY_VALID = {"J": MAGNITUDE_RANGE, "H": MAGNITUDE_RANGE, "K": MAGNITUDE_RANGE,
                    "G_PS1": MAGNITUDE_RANGE, "R_PS1": MAGNITUDE_RANGE,
                    "PARALLAX": (-PARALLAX_LIMIT, PARALLAX_LIMIT),
                    "PARALLAX_ERROR": (0.0, PARALLAX_LIMIT)}
LABEL_SOURCES = ("payne", "photometric", "yso_table")
PRECEDENCE = ("yso", "mstar", "payne")


def hejazi_feh(g_k, j_k):
    """[Fe/H] (dex) from g - K and J - K (Hejazi et al. 2015, paper eq. 1)."""
    a1, a2, a3, a4, a5, a6 = HEJAZI_A
    g_k, j_k = np.asarray(g_k, float), np.asarray(j_k, float)
    return a1 + a2 * g_k + a3 * j_k + a4 * g_k**2 + a5 * j_k**2 + a6 * g_k * j_k


def mann_teff(r_j, j_h):
    """Teff (K) from r - J and J - H (Mann et al. 2015, paper eq. 2, times 3500 K)."""
    b0, b1, b2, b3, b4, b5, b6 = MANN_B
    x, y = np.asarray(r_j, float), np.asarray(j_h, float)
    return MANN_TEFF_SCALE * (b0 + b1 * x + b2 * x**2 + b3 * x**3 + b4 * x**4 + b5 * y
                              + b6 * y**2)


def veyette_logg(fe_h, teff):
    """log g (dex) from [Fe/H] and Teff (Veyette et al. 2017, paper eq. 3)."""
    c0, c1, c2, c3 = VEYETTE_C
    fe_h, teff = np.asarray(fe_h, float), np.asarray(teff, float)
    return c0 + c1 * fe_h + c2 * teff + c3 * teff**2


def absolute_k(k, parallax_mas):
    """M_K from apparent K and a parallax in mas; NaN where the parallax is not positive."""
    plx = np.asarray(parallax_mas, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(plx > 0, np.asarray(k, float) + 5.0 * np.log10(plx) - 10.0, np.nan)


def _outside(values: dict[str, np.ndarray], ranges: dict[str, tuple[float, float]]) -> np.ndarray:
    out = np.zeros(len(next(iter(values.values()))), dtype=bool)
    for key, (lo, hi) in ranges.items():
        v = values[key]
        out |= ~((v >= lo) & (v <= hi))
    return out


def standard_photometry(df: pd.DataFrame, path: str) -> pd.DataFrame:
    """Rename a photometry table's columns to the canonical names.

    Placeholders (-9999, -999, 99.999 ...) and values outside ``PHOTOMETRY_VALID`` become NaN, so
    they never enter a colour; their counts per column are in ``out.attrs["rejected"]``.

    Raises:
        ApnetError: APOGEE_ID or a photometry column is missing, or a cell holds text (the message
            names it).
    """
    require_columns(df, ("APOGEE_ID",), path)
    out = pd.DataFrame({"APOGEE_ID": df["APOGEE_ID"].astype(str).str.strip()})
    rejected: dict[str, dict[str, int]] = {}
    for name, aliases in PHOTOMETRY_COLUMNS.items():
        found = next((a for a in aliases if a in df.columns), None)
        if found is None:
            raise ApnetError(f"{path}: missing required column {name} "
                             f"(also accepted: {', '.join(aliases[1:])})")
        out[name] = numeric_column(df, found, path, PHOTOMETRY_VALID[name], rejected)
    out["FIELD"] = df["FIELD"].fillna("").astype(str).str.strip() if "FIELD" in df.columns else ""
    out.attrs.update(rejected=rejected, path=path)
    return out


def in_yso_field(fields, patterns=DEFAULT_YSO_FIELDS) -> np.ndarray:
    """Bool per star: its APOGEE field matches a star-forming-region pattern."""
    pats = [p.upper() for p in patterns]
    return np.array([any(fnmatch.fnmatchcase(str(f).upper(), p) for p in pats) for f in fields],
                    dtype=bool)


def mdwarf_labels(phot: pd.DataFrame, gk_margin: float = DEFAULT_GK_MARGIN,
                  yso_fields=DEFAULT_YSO_FIELDS) -> pd.DataFrame:
    """Select low-mass main-sequence stars and derive their photometric labels (paper 2.3.1).

    Args:
        phot: canonical photometry (``standard_photometry``).

    Returns:
        One row per input star: APOGEE_ID, J_K, G_K, R_J, J_H, M_K, PLX_SNR, SELECTED (passes the
        cuts), YSO_FIELD (selected but in a star-forming field, so left to the YSO route), TEFF,
        LOGG, FE_H (NaN unless SELECTED and not YSO_FIELD), REASON (why a star was not selected),
        and FLAG_HEJAZI, FLAG_MANN, FLAG_VEYETTE (True outside the relation's validity range).
    """
    j, h, k = phot["J"].to_numpy(), phot["H"].to_numpy(), phot["K"].to_numpy()
    g, r = phot["G_PS1"].to_numpy(), phot["R_PS1"].to_numpy()
    plx, eplx = phot["PARALLAX"].to_numpy(), phot["PARALLAX_ERROR"].to_numpy()
    j_k, g_k, r_j, j_h = j - k, g - k, r - j, j - h
    m_k = absolute_k(k, plx)
    with np.errstate(divide="ignore", invalid="ignore"):
        plx_snr = np.where((plx > 0) & (eplx > 0), plx / eplx, np.nan)

    photometry_ok = np.isfinite(j_k) & np.isfinite(g_k) & np.isfinite(r_j) & np.isfinite(j_h)
    colour_ok = (j_k > JK_RANGE[0]) & (j_k < JK_RANGE[1]) \
        & (g_k > GK_RANGE[0] - gk_margin) & (g_k < GK_RANGE[1] + gk_margin)
    parallax_ok = np.isfinite(plx_snr) & (plx_snr > MIN_PARALLAX_SNR)
    mk_ok = (m_k > MK_RANGE[0]) & (m_k < MK_RANGE[1])
    selected = photometry_ok & colour_ok & parallax_ok & mk_ok
    reason = np.select(
        [~photometry_ok, ~colour_ok, ~(plx > 0), ~parallax_ok, ~mk_ok],
        ["missing photometry", "colours outside the M-dwarf cuts", "no positive parallax",
         f"parallax/error <= {MIN_PARALLAX_SNR:g}", "M_K outside 5-10"], default="")
    yso_field = selected & in_yso_field(phot["FIELD"], yso_fields)

    fe_h = hejazi_feh(g_k, j_k)
    teff = mann_teff(r_j, j_h)
    logg = veyette_logg(fe_h, teff)
    keep = selected & ~yso_field
    with np.errstate(invalid="ignore"):
        flags = {
            "FLAG_HEJAZI": _outside({"fe_h": fe_h, "g_k": g_k, "j_k": j_k}, HEJAZI_VALID),
            "FLAG_MANN": _outside({"m_k": m_k, "teff": teff, "fe_h": fe_h}, MANN_VALID),
            "FLAG_VEYETTE": _outside({"teff": teff, "fe_h": fe_h}, VEYETTE_VALID),
        }
    return pd.DataFrame({
        "APOGEE_ID": phot["APOGEE_ID"].to_numpy(), "J_K": j_k, "G_K": g_k, "R_J": r_j,
        "J_H": j_h, "M_K": m_k, "PLX_SNR": plx_snr, "SELECTED": selected,
        "YSO_FIELD": yso_field, "TEFF": np.where(keep, teff, np.nan),
        "LOGG": np.where(keep, logg, np.nan), "FE_H": np.where(keep, fe_h, np.nan),
        "REASON": np.where(yso_field, "in a star-forming field (YSO route)", reason),
        **{k_: v & keep for k_, v in flags.items()}})


def payne_labels(payne: pd.DataFrame) -> pd.DataFrame:
    """Payne stars whose labels are adopted: Teff > 4000 K or log g < 3.5 (paper 2.2)."""
    teff, logg = payne["TEFF"].to_numpy(), payne["LOGG"].to_numpy()
    with np.errstate(invalid="ignore"):
        keep = (teff > PAYNE_TEFF_MIN) | (logg < PAYNE_LOGG_MAX)
    return payne[keep]


def _label_frame(path: str) -> pd.DataFrame:
    raw = read_table(path)
    require_columns(raw, ("APOGEE_ID",) + LABEL_COLUMNS, path)
    out = pd.DataFrame({"APOGEE_ID": raw["APOGEE_ID"].astype(str).str.strip()})
    rejected: dict[str, dict[str, int]] = {}
    for col in LABEL_COLUMNS:
        out[col] = numeric_column(raw, col, path, LABEL_RANGES[col], rejected)
    out.attrs.update(rejected=rejected, path=path)
    return out


def first_per_id(frame: pd.DataFrame, source: str, counts: dict[str, int],
                 notes: list[str]) -> pd.DataFrame:
    """``frame`` with the first row of each APOGEE_ID only. Where some ID is listed more than
    once, their number goes to ``counts[f"{source}_duplicates"]`` (absent when none), and a
    note naming the table (its ``attrs["path"]``), how many of them disagree and which row was
    kept to ``notes``."""
    dup = frame["APOGEE_ID"].duplicated(keep="first")
    ids = frame.loc[dup, "APOGEE_ID"].drop_duplicates()
    if len(ids):
        counts[f"{source}_duplicates"] = len(ids)
        distinct = frame.drop_duplicates()["APOGEE_ID"]
        n_conflict = distinct[distinct.duplicated()].nunique()
        shown = ", ".join(ids.iloc[:5]) + (", ..." if len(ids) > 5 else "")
        name = frame.attrs.get("path", f"the {source} table")
        notes.append(f"{name}: {len(ids)} APOGEE_ID(s) listed in more than one row "
                     f"({n_conflict} with different values): {shown}; the first row of each "
                     "is used, the others are ignored")
    return frame[~dup]


def _rejected_counts(source: str, frame: pd.DataFrame | None) -> dict[str, int]:
    """``{source}_rejected_{column}``: placeholders plus out-of-range values read as missing."""
    if frame is None:
        return {}
    return {f"{source}_rejected_{col}": v["placeholder"] + v["out_of_range"]
            for col, v in frame.attrs.get("rejected", {}).items()}


def drop_unphysical(table: pd.DataFrame) -> int:
    """Set labels outside ``LABEL_RANGES`` to NaN in place (a relation used far outside its
    colours); returns how many were."""
    n = 0
    for col in LABEL_COLUMNS:
        lo, hi = LABEL_RANGES[col]
        with np.errstate(invalid="ignore"):
            bad = ~((table[col] >= lo) & (table[col] <= hi)) & table[col].notna()
        n += int(bad.sum())
        table.loc[bad, col] = np.nan
    return n


@dataclasses.dataclass
class LabelAssembly:
    """The assembled label table and what happened to each source."""

    table: pd.DataFrame  # APOGEE_ID, TEFF, LOGG, FE_H, CATEGORY, LABEL_SOURCE, flags
    counts: dict[str, int]
    mdwarfs: pd.DataFrame | None  # the full M-dwarf selection, for inspection
    notes: list[str] = dataclasses.field(default_factory=list)  # e.g. duplicate rows


def assemble_labels(payne: pd.DataFrame | None = None,
                    label_photometry: pd.DataFrame | None = None,
                    yso: pd.DataFrame | None = None, gk_margin: float = DEFAULT_GK_MARGIN,
                    yso_fields=DEFAULT_YSO_FIELDS) -> LabelAssembly:
    """Combine Payne, photometric M-dwarf and YSO labels with precedence yso > mstar > payne.

    Args:
        payne, yso: DataFrames with APOGEE_ID, TEFF, LOGG, FE_H (NaN for missing).
        label_photometry: canonical photometry (``standard_photometry``) of the M-dwarf
            candidates.
    """
    parts, counts, mdw, notes = [], {}, None, []
    if yso is not None:
        yso = first_per_id(yso, "yso", counts, notes)
        parts.append(yso.assign(CATEGORY="yso", LABEL_SOURCE="yso_table"))
        counts["yso"] = len(yso)
    if label_photometry is not None:
        phot = first_per_id(label_photometry, "photometry", counts, notes)
        mdw = mdwarf_labels(phot, gk_margin, yso_fields)
        chosen = mdw[mdw.SELECTED & ~mdw.YSO_FIELD]
        parts.append(chosen[["APOGEE_ID", "TEFF", "LOGG", "FE_H", "FLAG_HEJAZI", "FLAG_MANN",
                             "FLAG_VEYETTE"]].assign(CATEGORY="mstar",
                                                    LABEL_SOURCE="photometric"))
        counts["mstar_selected"] = int(mdw.SELECTED.sum())
        counts["mstar_in_yso_fields"] = int(mdw.YSO_FIELD.sum())
        counts["mstar"] = len(chosen)
        counts["mstar_outside_validity"] = int((chosen.FLAG_HEJAZI | chosen.FLAG_MANN
                                                | chosen.FLAG_VEYETTE).sum())
    if payne is not None:
        payne = first_per_id(payne, "payne", counts, notes)
        adopted = payne_labels(payne)
        parts.append(adopted.assign(CATEGORY="payne", LABEL_SOURCE="payne"))
        counts["payne"] = len(adopted)
        counts["payne_rejected_by_rule"] = len(payne) - len(adopted)
    if not parts:
        raise ApnetError("make-labels needs at least one of --payne, --label-photometry, --yso")
    allrows = pd.concat(parts, ignore_index=True)
    rank = allrows["CATEGORY"].map({c: i for i, c in enumerate(PRECEDENCE)})
    allrows = allrows.assign(_rank=rank).sort_values(["_rank"], kind="stable")
    dup = allrows.duplicated("APOGEE_ID", keep="first")
    counts["overridden_by_precedence"] = int(dup.sum())
    table = allrows[~dup].drop(columns="_rank").reset_index(drop=True)
    counts["labels_outside_physical_ranges"] = drop_unphysical(table)
    for flag in ("FLAG_HEJAZI", "FLAG_MANN", "FLAG_VEYETTE"):
        table[flag] = table[flag].fillna(False).astype(bool) if flag in table else False
    table = table[["APOGEE_ID", "TEFF", "LOGG", "FE_H", "CATEGORY", "LABEL_SOURCE",
                   "FLAG_HEJAZI", "FLAG_MANN", "FLAG_VEYETTE"]]
    counts["total"] = len(table)
    for cat in PRECEDENCE:
        counts[f"final_{cat}"] = int((table.CATEGORY == cat).sum())
    return LabelAssembly(table, counts, mdw, notes)


def make_labels(out: str, payne: str | None = None, label_photometry: str | None = None,
                yso: str | None = None, gk_margin: float = DEFAULT_GK_MARGIN,
                yso_fields=DEFAULT_YSO_FIELDS) -> LabelAssembly:
    """Read the source tables, assemble the labels and write ``out`` atomically: CSV for a
    ``.csv`` name, a FITS table for ``.fits``/``.fit``; any other name is refused before any
    table is read.

    Missing labels are written as -9999, the APOGEE convention that ``make-records`` reads.
    Placeholders and out-of-range values read as missing are counted in ``counts`` as
    ``{source}_rejected_{column}``.

    Raises:
        ApnetError: a bad argument (before anything is read), or a bad table.
    """
    if not (np.isfinite(gk_margin) and abs(gk_margin) < 1.0):
        raise ApnetError(f"--gk-margin: a few hundredths of a magnitude, not {gk_margin!r}")
    kind = _out_format(out)
    frames = {"payne": _label_frame(payne) if payne else None,
              "photometry": standard_photometry(read_table(label_photometry), label_photometry)
              if label_photometry else None,
              "yso": _label_frame(yso) if yso else None}
    result = assemble_labels(frames["payne"], frames["photometry"], frames["yso"], gk_margin,
                             yso_fields)
    for source, frame in frames.items():
        result.counts.update(_rejected_counts(source, frame))
    table = result.table.fillna({c: MISSING_VALUE for c in LABEL_COLUMNS})
    with atomic_path(out) as tmp:
        if kind == "csv":
            table.to_csv(tmp, index=False, float_format="%.6g")
        else:
            Table.from_pandas(table.astype({c: str for c in table.columns
                                            if table[c].dtype == object})).write(
                tmp, format="fits")
    return result


def _out_format(out: str) -> str:
    """"csv" or "fits", from the name of ``out``; ApnetError for a folder or another name."""
    if os.path.isdir(out):
        raise ApnetError(f"--out {out}: a folder; give a file name ending .csv or .fits")
    ext = os.path.splitext(out)[1].lower()
    if ext not in (".csv", ".fits", ".fit"):
        shown = ext or "a name without an extension"
        raise ApnetError(f"--out {out}: write a .csv or a .fits label table, not {shown}")
    return "csv" if ext == ".csv" else "fits"
