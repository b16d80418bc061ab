"""Isochrone tables and the synthetic stars drawn from them (paper section 2.3, YSOs).

An isochrone table is what the PARSEC CMD web form writes (http://stev.oapd.inaf.it/cgi-bin/cmd):
comment lines start with ``#``, one line holds the column names (in CMD output it is itself a
comment line, ``# Zini MH logAge Mini ...``), the rest are whitespace-separated numbers, several
ages one after another. A CSV with the same column names is read too. Several files (a Gaia
request and a 2MASS+WISE request for the same ages) are joined on (logAge, Mini).

Magnitudes in the table are absolute. A synthetic star gets its apparent magnitudes from the
absolute ones plus the distance modulus plus A_V times the band's A_band/A_V, then the paper's
detection limits; r* comes from L and Teff through Stefan-Boltzmann.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from apnet_tf.data.labels import numeric_column, read_table
from apnet_tf.errors import ApnetError

__all__ = [
    "BANDS", "BAND_COLUMNS", "PARSEC_NAMES", "PHYSICAL_COLUMNS", "DETECTION_LIMITS",
    "RSTAR_LIMIT", "LOGL_LIMIT", "MG_LIMIT", "WANG_CHEN_2019", "PAPER_RANGES", "SOLAR_TEFF",
    "read_isochrones", "IsochroneGrid", "stellar_radius", "distance_modulus", "redden",
    "apply_detection_limits", "gaia_flame_rule", "draw_stars", "extinction_coefficients",
    "coverage_note", "LOG_AGE_RANGE", "grid_problem"
]

#: The nine bands of the paper, in the order the network sees them.
BANDS = ("G", "BP", "RP", "J", "H", "K", "W1", "W2", "W3")
#: Accepted (upper-cased) column names per band: PARSEC CMD names first (Gaia EDR3/DR3 "G_BPmag",
#: Gaia DR2 "G_BPftmag" for the faint-star BP passband, 2MASS "Ksmag", WISE "W1mag").
BAND_COLUMNS = {
    "G": ("GMAG", "G"), "BP": ("G_BPMAG", "G_BPFTMAG", "G_BPBRMAG", "BPMAG", "BP"),
    "RP": ("G_RPMAG", "RPMAG", "RP"), "J": ("JMAG", "J"), "H": ("HMAG", "H"),
    "K": ("KSMAG", "KMAG", "KS", "K"), "W1": ("W1MAG", "W1"), "W2": ("W2MAG", "W2"),
    "W3": ("W3MAG", "W3"),
}
#: PARSEC CMD's own spelling of the nine bands (Gaia EDR3 + 2MASS + WISE requests).
PARSEC_NAMES = {"G": "Gmag", "BP": "G_BPmag", "RP": "G_RPmag", "J": "Jmag", "H": "Hmag",
                "K": "Ksmag", "W1": "W1mag", "W2": "W2mag", "W3": "W3mag"}
#: Physical columns every isochrone table needs (PARSEC names, upper-cased).
PHYSICAL_COLUMNS = ("LOGAGE", "MINI", "LOGTE", "LOGG", "LOGL")

#: Detection limits of paper 2.3 (mag): a fainter value is set to the limit; G is required.
DETECTION_LIMITS = {"G": 19.0, "BP": 20.5, "RP": 17.5, "J": 17.0, "H": 16.0, "K": 16.0,
                    "W1": 16.0, "W2": 16.0, "W3": 13.5}
#: Gaia DR2 reported r* and L only for r* > 0.5 Rsun, log L > -1.54 and M_G < 10 (paper 2.3);
#: otherwise they are set to these limits.
RSTAR_LIMIT = 0.5
LOGL_LIMIT = -1.54
MG_LIMIT = 10.0

#: A_band / A_V of Wang & Chen (2019, ApJ 877, 116, Table 3: "The Optical to Mid-infrared
#: Extinction Law Based on the APOGEE, Gaia DR2, Pan-STARRS1, SDSS, APASS, 2MASS, and WISE
#: Surveys"), an average Milky Way law with R_V = 3.16 measured in exactly these nine bands.
WANG_CHEN_2019 = {"G": 0.789, "BP": 1.002, "RP": 0.589, "J": 0.243, "H": 0.131, "K": 0.078,
                  "W1": 0.039, "W2": 0.026, "W3": 0.040}

#: Paper 2.3: uniform masses 0.08-3 Msun, ages 1-100 Myr, A_V 0-20 mag, distances 50-1000 pc.
PAPER_RANGES = {"mass": (0.08, 3.0), "age_myr": (1.0, 100.0), "av": (0.0, 20.0),
                "distance_pc": (50.0, 1000.0)}
SOLAR_TEFF = 5772.0  # K, IAU 2015 nominal
LOG_AGE_RANGE = (4.0, 10.5)  # log10(age / yr) of any star: outside it logAge holds linear ages


def _parse_text(path: str) -> pd.DataFrame:
    """Whitespace-separated table whose header is the last name line before the numbers."""
    header, rows = None, []
    with open(path, errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            tokens = line.lstrip("#").split()
            if not tokens:
                continue
            if line.lstrip().startswith("#") or not _numeric(tokens[0]):
                if {"MINI", "LOGAGE"} <= {t.upper() for t in tokens}:
                    header = [t.upper() for t in tokens]
                continue
            if header is None:
                raise ApnetError(f"{path}: line {lineno}: numbers before a header line with "
                                 "Mini and logAge")
            if len(tokens) != len(header):
                raise ApnetError(f"{path}: line {lineno}: {len(tokens)} values for "
                                 f"{len(header)} columns")
            rows.append(tokens)
    if header is None:
        raise ApnetError(f"{path}: no header line with Mini and logAge (not a PARSEC table)")
    return pd.DataFrame(rows, columns=header)  # text: _standard_columns reads the numbers


def _numeric(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _standard_columns(raw: pd.DataFrame, path: str, need_bands: bool) -> pd.DataFrame:
    missing = [c for c in PHYSICAL_COLUMNS if c not in raw.columns]
    if missing:
        raise ApnetError(f"{path}: missing required column {missing[0]}"
                         + (f" (and {', '.join(missing[1:])})" if len(missing) > 1 else ""))
    out = pd.DataFrame({c: numeric_column(raw, c, path) for c in PHYSICAL_COLUMNS})
    for band, aliases in BAND_COLUMNS.items():
        found = next((a for a in aliases if a in raw.columns), None)
        if found is not None:
            out[band] = numeric_column(raw, found, path)
    if need_bands:
        absent = [b for b in BANDS if b not in out.columns]
        if absent:
            raise ApnetError(f"{path}: missing band column {absent[0]} ({PARSEC_NAMES[absent[0]]}"
                             f" in PARSEC's naming)" + (f"; also {', '.join(absent[1:])}"
                                                         if len(absent) > 1 else ""))
    return out


def read_isochrones(paths) -> pd.DataFrame:
    """Read one or more isochrone tables into LOGAGE, MINI, LOGTE, LOGG, LOGL and the nine bands.

    Args:
        paths: a path or a list of paths: PARSEC CMD text output or CSV/FITS with the same
            column names. Several files are joined on (logAge, Mini); together they must hold
            all nine bands.

    Returns:
        DataFrame sorted by LOGAGE then MINI, absolute magnitudes in the band columns.

    Raises:
        ApnetError: a file is missing or unreadable, or a column is missing (named).
    """
    paths = [os.fspath(paths)] if isinstance(paths, (str, os.PathLike)) else list(paths)
    tables = []
    for path in paths:
        if not os.path.exists(path):
            raise ApnetError(f"{path}: no such file")
        tabular = path.lower().endswith((".csv", ".fits", ".fit"))
        raw = read_table(path) if tabular else _parse_text(path)
        tables.append(_standard_columns(raw, path, need_bands=len(paths) == 1))
    table = tables[0]
    for other in tables[1:]:
        table = _join(table, other)
    absent = [b for b in BANDS if b not in table.columns]
    if absent:
        raise ApnetError(f"{', '.join(paths)}: no file has band {absent[0]} "
                         f"({PARSEC_NAMES[absent[0]]} in PARSEC's naming)")
    table = table[np.isfinite(table[list(PHYSICAL_COLUMNS) + list(BANDS)]).all(axis=1)]
    if table.empty:
        raise ApnetError(f"{', '.join(paths)}: no isochrone rows")
    _check_values(table, ", ".join(paths))
    return table.sort_values(["LOGAGE", "MINI"], kind="stable").reset_index(drop=True)


def _check_values(table: pd.DataFrame, where: str) -> None:
    """Initial masses positive and log ages those of stars, or an ApnetError naming the files."""
    bad_mass = table["MINI"] <= 0
    if bad_mass.any():
        first = table["MINI"][bad_mass].iloc[0]
        raise ApnetError(f"{where}: Mini holds {int(bad_mass.sum())} negative or zero masses "
                         f"(e.g. {first:g}); initial masses are positive, in Msun")
    lo, hi = float(table["LOGAGE"].min()), float(table["LOGAGE"].max())
    if lo < LOG_AGE_RANGE[0] or hi > LOG_AGE_RANGE[1]:
        raise ApnetError(f"{where}: logAge holds {lo:g} to {hi:g}, not log10(age / yr) "
                         f"({LOG_AGE_RANGE[0]:g} to {LOG_AGE_RANGE[1]:g} for stars; 6 to 8 for "
                         "1-100 Myr); give log10 of the age in years, not the age itself")


def grid_problem(grid: IsochroneGrid, ranges=None) -> str | None:
    """Why ``draw_stars`` cannot draw stars from ``grid`` in ``ranges``, or None."""
    ranges = {**PAPER_RANGES, **(ranges or {})}
    (y_lo, y_hi), (a_lo, a_hi) = ranges["age_myr"], np.log10(np.asarray(ranges["age_myr"]) * 1e6)
    if len(grid.ages) < 2:
        return (f"holds one age only (logAge {grid.ages[0]:g}); drawing ages of {y_lo:g}-"
                f"{y_hi:g} Myr needs isochrones of several ages across them")
    if grid.ages[-1] < a_lo or grid.ages[0] > a_hi:
        return (f"ages logAge {grid.ages[0]:g} to {grid.ages[-1]:g} lie outside the drawing "
                f"range {y_lo:g}-{y_hi:g} Myr (logAge {a_lo:.3g} to {a_hi:.3g})")
    (m_lo, m_hi), (r_lo, r_hi) = grid.mass_range, ranges["mass"]
    if m_hi < r_lo or m_lo > r_hi or m_lo > m_hi:
        return (f"no initial masses common to every age within the drawing range "
                f"{r_lo:g}-{r_hi:g} Msun (the ages share {m_lo:g}-{m_hi:g} Msun)")
    return None


def _join(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
    """Rows of two CMD requests for the same ages matched on (logAge, Mini) to 1e-6."""
    keys = ["_AGE", "_MINI"]

    def tag(df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(_AGE=df.LOGAGE.round(4), _MINI=df.MINI.round(6))

    extra = [c for c in right.columns if c not in left.columns]
    merged = tag(left).merge(tag(right)[keys + extra], on=keys, how="inner")
    return merged.drop(columns=keys)


class IsochroneGrid:
    """Linear interpolation of an isochrone table in initial mass and then in log age.

    Each isochrone is interpolated in mass at the stars' masses; the two isochrones that
    bracket a star's log age are then mixed linearly. Stars outside the grid get NaN.
    """

    QUANTITIES = ("LOGTE", "LOGG", "LOGL") + BANDS

    def __init__(self, table: pd.DataFrame):
        self.ages = np.unique(table["LOGAGE"].to_numpy())
        self.tracks = []
        for age in self.ages:
            iso = table[table["LOGAGE"] == age]
            mass, first = np.unique(iso["MINI"].to_numpy(), return_index=True)
            self.tracks.append((mass, iso[list(self.QUANTITIES)].to_numpy()[first]))

    @property
    def mass_range(self) -> tuple[float, float]:
        return (max(m[0] for m, _ in self.tracks), min(m[-1] for m, _ in self.tracks))

    def _at_age(self, k: int, mass: np.ndarray) -> np.ndarray:
        grid_mass, values = self.tracks[k]
        return np.stack([np.interp(mass, grid_mass, values[:, j], left=np.nan, right=np.nan)
                         for j in range(values.shape[1])], axis=1)

    def interpolate(self, mass, log_age) -> pd.DataFrame:
        """Quantities at (mass Msun, log10 age/yr), each shape (N,): LOGTE, LOGG, LOGL, bands."""
        mass, log_age = np.asarray(mass, float), np.asarray(log_age, float)
        out = np.full((len(mass), len(self.QUANTITIES)), np.nan)
        if len(self.ages) == 1:
            inside = np.isclose(log_age, self.ages[0])
            out[inside] = self._at_age(0, mass[inside])
            return pd.DataFrame(out, columns=self.QUANTITIES)
        hi = np.clip(np.searchsorted(self.ages, log_age, side="right"), 1, len(self.ages) - 1)
        inside = (log_age >= self.ages[0]) & (log_age <= self.ages[-1])
        for k in np.unique(hi[inside]):
            sel = inside & (hi == k)
            w = (log_age[sel] - self.ages[k - 1]) / (self.ages[k] - self.ages[k - 1])
            lo_v, hi_v = self._at_age(k - 1, mass[sel]), self._at_age(k, mass[sel])
            out[sel] = lo_v * (1 - w)[:, None] + hi_v * w[:, None]
        return pd.DataFrame(out, columns=self.QUANTITIES)


def stellar_radius(log_l, log_teff) -> np.ndarray:
    """r* in Rsun from log L/Lsun and log Teff (Stefan-Boltzmann: L = 4 pi R^2 sigma Teff^4)."""
    return np.sqrt(10.0 ** np.asarray(log_l, float)) * (SOLAR_TEFF / 10.0 ** np.asarray(
        log_teff, float)) ** 2


def distance_modulus(distance_pc) -> np.ndarray:
    return 5.0 * np.log10(np.asarray(distance_pc, float) / 10.0)


def redden(absolute: dict, distance_pc, av, coefficients=None) -> dict:
    """Apparent magnitudes: absolute + distance modulus + A_V * (A_band / A_V), per band."""
    coefficients = WANG_CHEN_2019 if coefficients is None else coefficients
    mu, av = distance_modulus(distance_pc), np.asarray(av, float)
    return {b: np.asarray(absolute[b], float) + mu + av * coefficients[b] for b in absolute}


def apply_detection_limits(mags: dict, limits=None) -> tuple[dict, np.ndarray]:
    """Set magnitudes fainter than a band's limit to the limit.

    Returns:
        (limited magnitudes, bool array: G detected, i.e. G brighter than its limit). A
        non-finite magnitude (a missing band) is set to the limit too.
    """
    limits = DETECTION_LIMITS if limits is None else limits
    absent = [b for b in mags if b not in limits]
    if absent:
        raise ApnetError(f"detection limits: no limit for band {absent[0]}; give all of "
                         f"{', '.join(BANDS)} (DETECTION_LIMITS has the paper's)")
    out = {}
    for band, m in mags.items():
        m = np.asarray(m, float)
        out[band] = np.where(np.isfinite(m) & (m < limits[band]), m, limits[band])
    g = np.asarray(mags["G"], float)
    return out, np.isfinite(g) & (g < limits["G"])


def gaia_flame_rule(rstar, log_l, g_apparent, distance_pc) -> tuple[np.ndarray, np.ndarray]:
    """r* and log L as Gaia DR2 reported them: kept where r* > 0.5 Rsun, log L > -1.54 and
    M_G < 10, else both set to those limits.

    M_G is the observed absolute magnitude, G minus the distance modulus (extinction included),
    since that is what a survey's cut can see.
    """
    rstar, log_l = np.asarray(rstar, float), np.asarray(log_l, float)
    m_g = np.asarray(g_apparent, float) - distance_modulus(distance_pc)
    with np.errstate(invalid="ignore"):
        ok = (rstar > RSTAR_LIMIT) & (log_l > LOGL_LIMIT) & (m_g < MG_LIMIT)
    return np.where(ok, rstar, RSTAR_LIMIT), np.where(ok, log_l, LOGL_LIMIT)


def _draw_batch(grid: IsochroneGrid, rng, n: int, ranges: dict, age_spacing: str):
    mass = rng.uniform(*ranges["mass"], n)
    lo, hi = ranges["age_myr"]
    if age_spacing == "log":
        age = 10.0 ** rng.uniform(np.log10(lo), np.log10(hi), n)
    else:
        age = rng.uniform(lo, hi, n)
    av = rng.uniform(*ranges["av"], n)
    dist = rng.uniform(*ranges["distance_pc"], n)
    props = grid.interpolate(mass, np.log10(age * 1e6))
    return mass, age, av, dist, props


def draw_stars(grid: IsochroneGrid, n: int, seed: int = 0, coefficients=None, limits=None,
               noise: float = 0.0, ranges=None, age_spacing: str = "linear") -> pd.DataFrame:
    """Synthetic stars as in paper 2.3: uniform mass, age, A_V and distance; only G-detected
    stars are kept, so draws continue until ``n`` of them exist.

    Args:
        grid: the isochrones (Fe/H = 0 in the paper).
        coefficients: A_band / A_V per band (default ``WANG_CHEN_2019``).
        limits: detection limits per band (default ``DETECTION_LIMITS``).
        noise: Gaussian scatter (mag) added to each apparent magnitude before the limits;
            0 (the paper: "no scatter due to uncertainties was applied").
        ranges: ``PAPER_RANGES`` by default; a star outside the grid's masses or ages is
            redrawn.
        age_spacing: "linear" (uniform in Myr, the paper's wording) or "log".

    Returns:
        DataFrame of n rows: the network inputs (nine bands, RSTAR, LOGL_OBS, DIST) and the
        truth: MASS, AGE_MYR, AV, TEFF, LOGTE, LOGG, LOGL, RSTAR_TRUE.
    """
    if age_spacing not in ("linear", "log"):
        raise ValueError(f"age_spacing {age_spacing!r} is not 'linear' or 'log'")
    ranges = {**PAPER_RANGES, **(ranges or {})}
    problem = grid_problem(grid, ranges)
    if problem:
        raise ApnetError(f"the isochrone grid {problem}")
    rng = np.random.default_rng(seed)
    parts, kept = [], 0
    for _ in range(1000):
        mass, age, av, dist, props = _draw_batch(grid, rng, max(2 * (n - kept), 256), ranges,
                                                  age_spacing)
        apparent = redden({b: props[b].to_numpy() for b in BANDS}, dist, av, coefficients)
        if noise > 0:
            apparent = {b: m + rng.normal(0.0, noise, len(m)) for b, m in apparent.items()}
        observed, detected = apply_detection_limits(apparent, limits)
        keep = detected & np.isfinite(props.to_numpy()).all(axis=1)
        r_true = stellar_radius(props["LOGL"], props["LOGTE"])
        r_obs, l_obs = gaia_flame_rule(r_true, props["LOGL"], apparent["G"], dist)
        parts.append(pd.DataFrame({
            **{b: observed[b] for b in BANDS}, "RSTAR": r_obs, "LOGL_OBS": l_obs, "DIST": dist,
            "MASS": mass, "AGE_MYR": age, "AV": av, "TEFF": 10.0 ** props["LOGTE"],
            "LOGTE": props["LOGTE"], "LOGG": props["LOGG"], "LOGL": props["LOGL"],
            "RSTAR_TRUE": r_true})[keep])
        kept += int(keep.sum())
        if kept >= n:
            break
    else:
        raise ApnetError("the isochrone grid yields no G-detected stars in the drawing ranges "
                         f"(G brighter than {(limits or DETECTION_LIMITS)['G']:g} mag)")
    return pd.concat(parts, ignore_index=True).iloc[:n].reset_index(drop=True)


def extinction_coefficients(overrides=None) -> dict[str, float]:
    """Wang & Chen (2019) A_band / A_V with some bands replaced.

    Args:
        overrides: a dict band -> value, or text such as "G=0.83,BP=1.08".

    Raises:
        ApnetError: an unknown band or a value that is not a non-negative number.
    """
    if isinstance(overrides, str):
        pairs = [p.split("=", 1) for p in overrides.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ApnetError(f"--extinction: expected BAND=VALUE pairs, got {overrides!r}")
        overrides = {k.strip().upper(): v.strip() for k, v in pairs}
    out = dict(WANG_CHEN_2019)
    for band, value in (overrides or {}).items():
        if band not in out:
            raise ApnetError(f"--extinction: unknown band {band!r}; bands are {', '.join(BANDS)}")
        try:
            out[band] = float(value)
        except ValueError:
            out[band] = float("nan")
        if not 0 <= out[band] < np.inf:
            raise ApnetError(f"--extinction: A_{band}/A_V must be a finite, non-negative number, "
                             f"got {value!r}")
    return out


def coverage_note(grid: IsochroneGrid, ranges=None) -> str | None:
    """A line saying which part of the drawing ranges the grid lacks (those draws are redrawn,
    so the training set then covers less than asked), or None."""
    ranges = {**PAPER_RANGES, **(ranges or {})}
    (m_lo, m_hi), (a_lo, a_hi) = grid.mass_range, (10 ** grid.ages[0] / 1e6,
                                                   10 ** grid.ages[-1] / 1e6)
    gaps = []
    if m_lo > ranges["mass"][0] or m_hi < ranges["mass"][1]:
        gaps.append(f"masses {m_lo:g}-{m_hi:g} Msun of {ranges['mass'][0]:g}-"
                    f"{ranges['mass'][1]:g}")
    if a_lo > ranges["age_myr"][0] * 1.0001 or a_hi < ranges["age_myr"][1] * 0.9999:
        gaps.append(f"ages {a_lo:.3g}-{a_hi:.3g} Myr of {ranges['age_myr'][0]:g}-"
                    f"{ranges['age_myr'][1]:g}")
    return ("the isochrones cover only " + " and ".join(gaps)) if gaps else None
