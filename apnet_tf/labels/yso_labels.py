"""YSO labels from cluster members' photometry with the photometric network (paper 2.3).

The member table gives Gaia G, BP, RP and parallax, 2MASS J, H, K and WISE W1, W2, W3, and
optionally Gaia DR2's FLAME radius and luminosity. Every value is checked where it enters:
placeholders (-9999, 99.999) and anything non-finite or outside -2..30 mag
are missing; text in a number column is an error. A missing or too faint
band is set to its detection limit, as in training (the network then reads a missing band as
"fainter than the limit"; MISSING_BANDS names them per star); r* and L missing or below the Gaia DR2
reporting limits are set to those limits. A star without G or a positive parallax is skipped
and reported. The written table is what ``make-labels --yso`` reads: APOGEE_ID, TEFF, LOGG,
FE_H = 0 (the network's isochrones are solar), plus AGE (Myr), MASS (Msun), AV (mag).

FLAG_EXTRAPOLATED marks a star whose labels the network extrapolated, so never a good label:
an input outside what it was trained on (distance outside 50-1000 pc; G fainter than its limit;
r*, log L or the absolute magnitude of a measured band outside the training sample's range,
``yso.json``'s ``training_ranges``) or an output outside it (age outside 1-100 Myr, mass
outside 0.08-3 Msun, A_V outside 0-20 mag, the training draws' ranges; Teff or log g outside
the training sample's; anything not finite). A network saved before ``training_ranges``
existed checks r* and log L within 5 standard deviations of its training mean instead.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from apnet_tf.constants import MAGNITUDE_RANGE, PARALLAX_LIMIT
from apnet_tf.data.labels import numeric_column, read_table, require_columns
from apnet_tf.errors import ApnetError
from apnet_tf.io.files import atomic_path
from apnet_tf.labels.isochrones import (
    BANDS,
    DETECTION_LIMITS,
    LOGL_LIMIT,
    PAPER_RANGES,
    RSTAR_LIMIT,
    distance_modulus,
)
from apnet_tf.labels.yso import FEATURES, OUTPUTS, load_network, predict, scaling_ranges

__all__ = [
    "MEMBER_COLUMNS", "VALID_RANGES", "LABEL_TABLE_COLUMNS", "RANGE_TOLERANCE", "MemberInputs",
    "member_inputs", "inputs_beyond_training", "outputs_beyond_training", "YsoLabelResult",
    "label_table", "yso_labels"
]

#: Accepted (upper-cased) column names; Gaia archive, 2MASS PSC and AllWISE names included.
MEMBER_COLUMNS = {
    "G": ("G", "GMAG", "PHOT_G_MEAN_MAG"),
    "BP": ("BP", "BPMAG", "G_BP", "PHOT_BP_MEAN_MAG"),
    "RP": ("RP", "RPMAG", "G_RP", "PHOT_RP_MEAN_MAG"),
    "J": ("J", "JMAG", "J_M", "TMASS_J"),
    "H": ("H", "HMAG", "H_M", "TMASS_H"),
    "K": ("K", "KS", "KMAG", "KSMAG", "K_M", "KS_M", "TMASS_K"),
    "W1": ("W1", "W1MAG", "W1MPRO"),
    "W2": ("W2", "W2MAG", "W2MPRO"),
    "W3": ("W3", "W3MAG", "W3MPRO"),
    "PARALLAX": ("PARALLAX", "PLX"),
    "RSTAR": ("RSTAR", "RADIUS", "RADIUS_VAL"),
    "LUM": ("LUM", "LUM_VAL"),
    "LOGL": ("LOGL",),
}
#: Values outside these ranges are placeholders (99.999, -9999) or junk, so missing.
VALID_RANGES = {**{b: MAGNITUDE_RANGE for b in BANDS},
                "PARALLAX": (-PARALLAX_LIMIT, PARALLAX_LIMIT)}
#: Slack on each training range's ends (mag, dex, Rsun, Myr in log10), for rounding only.
RANGE_TOLERANCE = 1e-4
#: Columns of the written label table, in order.
LABEL_TABLE_COLUMNS = ("APOGEE_ID", "TEFF", "LOGG", "FE_H", "AGE", "MASS", "AV", "CATEGORY",
                       "FLAG_EXTRAPOLATED", "MISSING_BANDS")


@dataclasses.dataclass
class MemberInputs:
    """Network inputs for the usable members and what happened to the others."""

    ids: list[str]
    x: np.ndarray                 # (N, 12) in FEATURES order
    extrapolated: np.ndarray      # (N,) bool: an input outside what the network was trained on
    missing_bands: list[str]      # per star: bands not measured, set to their limits ("W3 J")
    skipped: list[tuple[str, str]]  # (APOGEE_ID, reason)
    absent_columns: list[str]     # bands with no column at all (set to their limits)


def _column(df: pd.DataFrame, name: str, path: str) -> np.ndarray | None:
    """The first accepted spelling of ``name`` as float (N,), NaN where missing or invalid."""
    found = next((a for a in MEMBER_COLUMNS[name] if a in df.columns), None)
    return None if found is None else numeric_column(df, found, path, VALID_RANGES.get(name))


def _magnitudes(df: pd.DataFrame, path: str) -> tuple[dict, list[str]]:
    mags, absent = {}, []
    for band in BANDS:
        m = _column(df, band, path)
        if m is None:
            absent.append(band)
            m = np.full(len(df), np.nan)
        mags[band] = m
    return mags, absent


def _radius_luminosity(df: pd.DataFrame, path: str) -> tuple[np.ndarray, np.ndarray]:
    """r* (Rsun) and log L as Gaia DR2 gave them, at the reporting limits where absent."""
    n = len(df)
    r = _column(df, "RSTAR", path)
    r = np.full(n, np.nan) if r is None else r
    logl = _column(df, "LOGL", path)
    if logl is None:
        lum = _column(df, "LUM", path)
        with np.errstate(invalid="ignore", divide="ignore"):
            logl = np.full(n, np.nan) if lum is None else np.where(lum > 0, np.log10(lum), np.nan)
    with np.errstate(invalid="ignore"):
        ok = (r > RSTAR_LIMIT) & (logl > LOGL_LIMIT) & np.isfinite(r) & np.isfinite(logl)
    return np.where(ok, r, RSTAR_LIMIT), np.where(ok, logl, LOGL_LIMIT)


def member_inputs(df: pd.DataFrame, path: str, limits=None, ranges=None) -> MemberInputs:
    """Check a member table and turn it into network inputs.

    ``extrapolated`` is set outside 50-1000 pc, for G fainter than its limit and, with
    ``ranges`` (``yso.training_ranges``), outside them (``inputs_beyond_training``).

    Raises:
        ApnetError: APOGEE_ID, G or PARALLAX has no column (the message names it).
    """
    limits = DETECTION_LIMITS if limits is None else limits
    require_columns(df, ("APOGEE_ID",), path)
    for name in ("G", "PARALLAX"):
        if not any(a in df.columns for a in MEMBER_COLUMNS[name]):
            raise ApnetError(f"{path}: missing required column {name} "
                             f"(also accepted: {', '.join(MEMBER_COLUMNS[name][1:])})")
    ids = df["APOGEE_ID"].astype(str).str.strip().to_numpy()
    mags, absent = _magnitudes(df, path)
    plx = _column(df, "PARALLAX", path)
    with np.errstate(invalid="ignore", divide="ignore"):
        good_plx = np.isfinite(plx) & (plx > 0)
        dist = np.where(good_plx, 1000.0 / plx, np.nan)
    reason = np.select([~np.isfinite(mags["G"]), ~good_plx, pd.Series(ids).duplicated()],
                       ["no usable G magnitude", "no positive parallax", "duplicate APOGEE_ID"],
                       default="")
    keep = reason == ""
    rstar, logl = _radius_luminosity(df, path)
    g_faint = mags["G"] >= limits["G"]
    lo, hi = PAPER_RANGES["distance_pc"]
    with np.errstate(invalid="ignore"):
        columns = {b: np.where(np.isfinite(m) & (m < limits[b]), m, limits[b])
                   for b, m in mags.items()}
        outside = g_faint | (dist < lo) | (dist > hi)
    outside |= inputs_beyond_training(mags, dist, rstar, logl, ranges, limits)
    columns.update(RSTAR=rstar, LOGL_OBS=logl, DIST=dist)
    x = np.stack([columns[f] for f in FEATURES], axis=1)[keep].astype(np.float32)
    skipped = [(i, r) for i, r in zip(ids, reason) if r]
    missing = [" ".join(b for b in BANDS if not np.isfinite(mags[b][k]))
               for k in np.flatnonzero(keep)]
    return MemberInputs(list(ids[keep]), x, outside[keep], missing, skipped, absent)


def _beyond(values: dict[str, np.ndarray], ranges: dict) -> np.ndarray:
    """Bool per star: some value lies outside its [min, max] (NaN: no check)."""
    out = np.zeros(len(next(iter(values.values()))), dtype=bool)
    for name, v in values.items():
        if name in ranges:
            lo, hi = ranges[name]
            with np.errstate(invalid="ignore"):
                out |= (v < lo - RANGE_TOLERANCE) | (v > hi + RANGE_TOLERANCE)
    return out


def inputs_beyond_training(mags: dict, dist, rstar, logl, ranges, limits=None) -> np.ndarray:
    """Bool per star: r* or log L as the network takes them, or the absolute magnitude (minus
    the distance modulus) of a band measured brighter than its limit, outside the training
    sample's ``ranges`` (``yso.training_ranges``; None: no check)."""
    limits = DETECTION_LIMITS if limits is None else limits
    values = {"RSTAR": np.asarray(rstar, float), "LOGL_OBS": np.asarray(logl, float)}
    if not ranges:
        return np.zeros(len(values["RSTAR"]), dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = distance_modulus(np.asarray(dist, float))
        for band in BANDS:
            m = np.asarray(mags[band], float)
            values[f"M_{band}"] = np.where(m < limits[band], m - mu, np.nan)
    return _beyond(values, ranges)


def outputs_beyond_training(outputs: np.ndarray, ranges=None) -> np.ndarray:
    """Bool per star: a network output (N, 5) in ``OUTPUTS`` order outside what it was trained
    on: age outside 1-100 Myr, mass outside 0.08-3 Msun, A_V outside 0-20 mag (the training
    draws, ``PAPER_RANGES``), LOGTE or LOGG outside ``ranges`` (the training sample's, when
    known), or any output not finite."""
    outputs = np.asarray(outputs, np.float64)
    col = {name: outputs[:, j] for j, name in enumerate(OUTPUTS)}
    limits = {"LOG_AGE": np.log10(np.asarray(PAPER_RANGES["age_myr"]) * 1e6),
              "LOG_MASS": np.log10(PAPER_RANGES["mass"]), "AV": PAPER_RANGES["av"],
              **{k: v for k, v in (ranges or {}).items() if k in ("LOGTE", "LOGG")}}
    return _beyond(col, limits) | ~np.isfinite(outputs).all(axis=1)


@dataclasses.dataclass
class YsoLabelResult:
    table: pd.DataFrame
    skipped: list[tuple[str, str]]
    absent_columns: list[str]


def label_table(ids, outputs: np.ndarray, extrapolated, missing_bands=None) -> pd.DataFrame:
    """Network outputs (N, 5) in ``OUTPUTS`` order -> the YSO label table."""
    col = {name: outputs[:, j].astype(np.float64) for j, name in enumerate(OUTPUTS)}
    return pd.DataFrame({
        "APOGEE_ID": list(ids), "TEFF": 10.0 ** col["LOGTE"], "LOGG": col["LOGG"],
        "FE_H": 0.0, "AGE": 10.0 ** col["LOG_AGE"] / 1e6, "MASS": 10.0 ** col["LOG_MASS"],
        "AV": col["AV"], "CATEGORY": "yso", "FLAG_EXTRAPOLATED": np.asarray(extrapolated, bool),
        "MISSING_BANDS": [""] * len(ids) if missing_bands is None else list(missing_bands)},
        columns=list(LABEL_TABLE_COLUMNS))


def yso_labels(model_path: str, members: str, out: str) -> YsoLabelResult:
    """Label a member photometry table with a trained network and write ``out`` (CSV,
    atomically).

    Raises:
        ApnetError: the network or the table cannot be read, a required column is missing, or
            no star is usable.
    """
    model, info = load_network(model_path)
    ranges = info.get("training_ranges") or scaling_ranges(model)
    inputs = member_inputs(read_table(members), members, info.get("detection_limits"),
                           ranges)
    if not inputs.ids:
        raise ApnetError(f"{members}: no star has both a G magnitude and a positive "
                         f"parallax ({len(inputs.skipped)} skipped)")
    outputs = predict(model, inputs.x)
    table = label_table(inputs.ids, outputs,
                        inputs.extrapolated | outputs_beyond_training(outputs, ranges),
                        inputs.missing_bands)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return YsoLabelResult(table, inputs.skipped, inputs.absent_columns)
