"""Gaia EDR3 and 2MASS photometry for the synthetic survey, consistent with each star: the
``photometry.csv`` that ``make-records --photometry`` reads (APOGEE_ID and the seven columns of
``io.photometry.PHOT_COLUMNS``, allStar spelling and conventions).

The model is deliberately simple, and its approximations are these:

* **Mass and radius.** Giants and subgiants (log g < 3.8) have M ~ 1.2 Msun (log-normal, 0.8 to
  3 Msun); dwarfs, M dwarfs and YSOs the main-sequence M = (Teff / 5772 K)^(1/0.6) (0.08 to
  3 Msun); each with 10% scatter. R = sqrt(M g_sun / g), with log g_sun = 4.438.
* **Absolute magnitudes.** A black body at Teff seen through each band at one effective
  wavelength (``BANDS``), scaled to the Sun's absolute magnitude in that band:
  M_X = M_X,sun - 5 log10(R / Rsun) - 2.5 log10(B_lambda(lambda_X, Teff) / B_lambda(lambda_X,
  5772 K)). No bandpass integral, no molecular bands, no metallicity: colours of the coolest
  stars come out about half a magnitude too blue.
* **Distance.** Each star gets an apparent H drawn uniformly from APOGEE's selection range
  (``H_RANGE``) and sits at the distance that gives it, d = 10 pc 10^((H - M_H - A_H) / 5),
  kept within 5 pc to 50 kpc; the other bands follow from d.
* **Extinction.** The star's A_H (drawn by ``synth``, the same that reddens its spectrum) with
  the spectrum's law, A_X = A_H (lambda_X / 1.63 um)^-1.75.
* **Errors and limits.** Magnitudes get Gaussian errors (a floor per survey plus 0.1 mag at the
  band's faint limit, growing as the flux falls, at most 1.6 mag); a magnitude beyond its band's
  faint limit (``BANDS``) is 99.999, as in allStar. The parallax is 1000 / d mas plus a Gaia
  EDR3-like error sigma(G) = sqrt(40 + 800 z + 30 z^2) uas, z = 10^(0.4 (max(G, 13) - 15)); it
  is NaN when G is beyond Gaia's limit.
* **Missing at random.** Each value is missing with probability ``MISSING_FRACTION`` (99.999,
  or NaN for the parallax), and ``ABSENT_FRACTION`` of the stars have no row at all (no
  cross-match).

The draws come from their own random stream, ``np.random.default_rng([seed, PHOTOMETRY_STREAM])``,
so the survey's spectra and labels are those of the same seed without photometry.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from apnet_tf.io.files import atomic_path
from apnet_tf.io.photometry import PHOT_COLUMNS

__all__ = [
    "PHOTOMETRY_FILE", "PHOTOMETRY_STREAM", "BANDS", "H_RANGE", "MISSING_MAG",
    "MISSING_FRACTION", "ABSENT_FRACTION", "masses", "radii", "absolute_magnitudes",
    "parallax_error", "draw_photometry", "write_photometry",
]

#: The file a survey's photometry is written to.
PHOTOMETRY_FILE = "photometry.csv"
#: The second word of the photometry's seed: its stream is independent of the spectra's.
PHOTOMETRY_STREAM = 0x70686F74
#: Band -> (effective wavelength in um, the Sun's absolute magnitude, faint limit), in the
#: order of PHOT_COLUMNS[1:] (G, BP, RP, J, H, K).
BANDS = {"G": (0.622, 4.67, 20.7), "BP": (0.511, 5.03, 20.9), "RP": (0.777, 4.18, 20.2),
         "J": (1.235, 3.67, 17.0), "H": (1.662, 3.32, 16.4), "K": (2.159, 3.27, 15.8)}
#: Apparent H magnitudes of the survey's stars (APOGEE's target selection, roughly).
H_RANGE = (7.0, 12.5)
#: The allStar placeholder of a missing magnitude.
MISSING_MAG = 99.999
MISSING_FRACTION = 0.02
ABSENT_FRACTION = 0.01
_T_SUN = 5772.0
_LOGG_SUN = 4.438
_C2 = 14387.77  # second radiation constant, um K
_A_REF_UM = 1.63  # the wavelength of A_H in synth's extinction law
_ERROR_FLOOR = {"G": 0.003, "BP": 0.005, "RP": 0.005, "J": 0.02, "H": 0.02, "K": 0.02}
_DISTANCE_PC = (5.0, 50000.0)


def masses(teff: np.ndarray, logg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Masses (Msun), shape (N,): giants and subgiants (log g < 3.8) about 1.2, the others
    main-sequence masses from Teff; 10% log-normal scatter, within 0.08 to 3."""
    giant = np.clip(rng.lognormal(np.log(1.2), 0.3, len(teff)), 0.8, 3.0)
    dwarf = (np.asarray(teff, float) / _T_SUN) ** (1 / 0.6)
    mass = np.where(np.asarray(logg) < 3.8, giant, dwarf) * rng.lognormal(0.0, 0.1, len(teff))
    return np.clip(mass, 0.08, 3.0)


def radii(mass: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """Radii (Rsun) from mass (Msun) and log g: R = sqrt(M g_sun / g)."""
    return np.sqrt(np.asarray(mass, float) * 10.0 ** (_LOGG_SUN - np.asarray(logg, float)))


def _planck(lam_um: float, teff: np.ndarray) -> np.ndarray:
    return 1.0 / (lam_um**5 * np.expm1(_C2 / (lam_um * np.asarray(teff, float))))


def absolute_magnitudes(teff: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """(N, 6) absolute magnitudes in G, BP, RP, J, H, K of black bodies at Teff (K) with
    radius (Rsun), each band at its effective wavelength, scaled to the Sun's."""
    cols = [m_sun - 5.0 * np.log10(radius) - 2.5 * np.log10(_planck(lam, teff)
                                                           / _planck(lam, _T_SUN))
            for lam, m_sun, _ in BANDS.values()]
    return np.stack(cols, axis=1)


def parallax_error(g: np.ndarray) -> np.ndarray:
    """Gaia EDR3-like parallax error (mas) at G magnitude ``g``, shape as g."""
    z = 10.0 ** (0.4 * (np.maximum(np.asarray(g, float), 13.0) - 15.0))
    return np.sqrt(40.0 + 800.0 * z + 30.0 * z**2) / 1000.0


def draw_photometry(stars: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Photometry of each star (module docstring).

    Args:
        stars: N rows of APOGEE_ID, TEFF (K), LOGG and A_H (mag), the true labels.
        seed: the survey's seed.

    Returns:
        N rows: APOGEE_ID, the seven PHOT_COLUMNS (parallax in mas; 99.999 or NaN where
        missing), and the true DIST_PC (pc), MASS (Msun), RADIUS (Rsun) and ABSENT (True for a
        star that ``write_photometry`` leaves out).
    """
    rng = np.random.default_rng([int(seed), PHOTOMETRY_STREAM])
    teff, logg = stars["TEFF"].to_numpy(float), stars["LOGG"].to_numpy(float)
    n = len(stars)
    mass = masses(teff, logg, rng)
    radius = radii(mass, logg)
    lam = np.array([v[0] for v in BANDS.values()])
    limit = np.array([v[2] for v in BANDS.values()])
    ext = stars["A_H"].to_numpy(float)[:, None] * (lam / _A_REF_UM) ** -1.75
    absolute = absolute_magnitudes(teff, radius) + ext  # (N, 6) with extinction
    h = list(BANDS).index("H")
    dist = 10.0 * 10.0 ** ((rng.uniform(*H_RANGE, n) - absolute[:, h]) / 5.0)
    dist = np.clip(dist, *_DISTANCE_PC)
    true_mags = absolute + 5.0 * np.log10(dist / 10.0)[:, None]
    floor = np.array([_ERROR_FLOOR[b] for b in BANDS])
    sigma = floor + 0.1 * 10.0 ** (0.4 * np.minimum(true_mags - limit, 3.0))
    mags = true_mags + sigma * rng.standard_normal((n, len(BANDS)))
    g = mags[:, list(BANDS).index("G")]
    plx = 1000.0 / dist + parallax_error(np.minimum(g, limit[0])) * rng.standard_normal(n)
    mags = np.where(mags > limit, MISSING_MAG, mags)
    plx = np.where(g > limit[0], np.nan, plx)
    values = np.column_stack([plx, mags])
    gone = rng.random(values.shape) < MISSING_FRACTION
    values[gone] = MISSING_MAG
    values[:, 0] = np.where(gone[:, 0], np.nan, values[:, 0])
    out = pd.DataFrame(values, columns=list(PHOT_COLUMNS))
    out.insert(0, "APOGEE_ID", stars["APOGEE_ID"].to_numpy())
    out["DIST_PC"], out["MASS"], out["RADIUS"] = dist, mass, radius
    out["ABSENT"] = rng.random(n) < ABSENT_FRACTION
    return out


def write_photometry(out_dir: str, stars: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Write ``draw_photometry``'s rows, less the absent stars and the ABSENT column, to
    ``out_dir``/photometry.csv (atomically; NaN as an empty cell); returns what was written."""
    table = draw_photometry(stars, seed)
    table = table[~table.pop("ABSENT")].reset_index(drop=True)
    with atomic_path(os.path.join(out_dir, PHOTOMETRY_FILE)) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return table
