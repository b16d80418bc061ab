"""A toy isochrone grid in the PARSEC CMD format, for tests, benchmarks and the demo.

It is NOT a stellar model; it has the right shape and is smooth, which is all the photometric
network's tests need (the package ships no PARSEC table). For a star of mass M (Msun) at age t:

* main sequence: R_ZAMS = M^0.8 Rsun, Teff_MS = 2700 + 3072 M^1.1 K (5772 K at 1 Msun);
* pre-main-sequence contraction on a Kelvin-Helmholtz-like time tau = 40 Myr M^-2.5 (the Sun
  reaches the main sequence at ~40 Myr, 0.1 Msun never within 100 Myr):
  R = R_ZAMS (1 + tau / t)^0.2, so young stars are large (Hayashi-like, R ~ t^-0.2) and settle
  onto R_ZAMS; Teff moves from the Hayashi value 2700 + 1300 M^0.8 K to Teff_MS with weight
  x / (1 + x), x = t / tau (the Henyey-like heating at nearly constant L);
* L = R^2 (Teff / 5772 K)^4, log g = 4.438 + log M - 2 log R;
* band magnitudes are black-body bolometric corrections: M_band = M_band,sun - 2.5 log10(R^2
  B_lambda(Teff) / B_lambda(5772 K)) at each band's effective wavelength.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from apnet_tf.io.files import atomic_path
from apnet_tf.labels.isochrones import BANDS, PARSEC_NAMES, SOLAR_TEFF

__all__ = ["BAND_LAMBDA", "SUN_ABS_MAG", "C2", "toy_star", "toy_isochrones", "write_parsec"]

#: Effective wavelength (micron) and the Sun's absolute magnitude (Vega) per band.
BAND_LAMBDA = {"G": 0.622, "BP": 0.511, "RP": 0.777, "J": 1.235, "H": 1.662, "K": 2.159,
               "W1": 3.353, "W2": 4.603, "W3": 11.56}
SUN_ABS_MAG = {"G": 4.67, "BP": 5.03, "RP": 4.18, "J": 3.67, "H": 3.32, "K": 3.27,
               "W1": 3.26, "W2": 3.28, "W3": 3.26}
C2 = 14387.77  # second radiation constant, micron K


def toy_star(mass, age_yr) -> dict[str, np.ndarray]:
    """logL, logTe, logg and absolute magnitudes of the toy model, arrays of one shape."""
    mass, age_myr = np.asarray(mass, float), np.asarray(age_yr, float) / 1e6
    tau = 40.0 * mass ** -2.5
    x = age_myr / tau
    r_zams = mass ** 0.8
    radius = r_zams * (1.0 + 1.0 / x) ** 0.2
    teff_ms = 2700.0 + 3072.0 * mass ** 1.1
    teff_h = 2700.0 + 1300.0 * mass ** 0.8
    teff = teff_h + (teff_ms - teff_h) * x / (1.0 + x)
    out = {"logL": np.log10(radius ** 2 * (teff / SOLAR_TEFF) ** 4), "logTe": np.log10(teff),
           "logg": 4.438 + np.log10(mass) - 2.0 * np.log10(radius)}
    for band in BANDS:
        lam = BAND_LAMBDA[band]
        planck_ratio = np.expm1(C2 / (lam * SOLAR_TEFF)) / np.expm1(C2 / (lam * teff))
        out[PARSEC_NAMES[band]] = SUN_ABS_MAG[band] - 2.5 * np.log10(radius ** 2 * planck_ratio)
    return out


def toy_isochrones(log_ages=None, masses=None) -> pd.DataFrame:
    """The toy grid with PARSEC's column names: default logAge 6.0-8.0 in 0.05 dex steps
    (PARSEC's usual step), 150 masses from 0.08 to 3 Msun, spaced evenly in log M."""
    log_ages = np.round(np.arange(6.0, 8.0001, 0.05), 4) if log_ages is None else log_ages
    masses = np.geomspace(0.08, 3.0, 150) if masses is None else np.asarray(masses, float)
    rows = []
    for log_age in log_ages:
        star = toy_star(masses, np.full(len(masses), 10.0 ** log_age))
        rows.append(pd.DataFrame({"Zini": 0.0152, "MH": 0.0, "logAge": log_age, "Mini": masses,
                                  "Mass": masses, "label": 0, **star}))
    return pd.concat(rows, ignore_index=True)


def write_parsec(table: pd.DataFrame, path: str, columns=None) -> str:
    """Write a table as the CMD web form does: '#' comments, a '#' header line, one block per
    age, each block with its header repeated (as CMD 3.x output has it)."""
    columns = list(table.columns) if columns is None else list(columns)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write("# Toy isochrones written by apnet_tf.toy_isochrones: NOT PARSEC models\n"
                "# Photometric system: Gaia EDR3 + 2MASS + WISE (absolute Vega magnitudes)\n")
        for age, block in table.groupby("logAge", sort=True):
            f.write(f"# Isochrone Z = 0.0152 Age = {10 ** age:.4e} yr\n")
            f.write("# " + " ".join(columns) + "\n")
            for row in block[columns].itertuples(index=False):
                f.write(" ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row)
                        + "\n")
        f.write("#isochrone terminator\n")
    return path
