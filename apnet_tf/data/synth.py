"""A synthetic APOGEE survey in apStar format: the package's embedded default data.

The stars are spread roughly as in the paper (Figure 3): mostly ``payne`` giants and dwarfs, plus M
dwarfs (``mstar``) and pre-main-sequence stars (``yso``). Each spectrum is raw (not continuum
normalised) flux on the apStar grid and depends on all three labels through simple physics:

* the continuum is a black body at Teff, times a fixed instrument throughput and a random
  extinction slope, so the slope alone cannot give Teff;
* five line groups (neutral metals, alpha elements, OH, CN and hydrogen Brackett lines) change
  strength with Teff at different rates, and the metal groups scale with [Fe/H];
* each line is a Voigt-like profile whose Lorentzian wings widen with log g (pressure broadening),
  so strong lines grow with log g along the curve of growth;
* cool stars get CO band heads (stronger in giants) and H2O band edges (stronger in dwarfs);
* noise follows the star's S/N, and the chip gaps carry flux 0 and error 1e10 as in real files.

The line list is fixed (its own seed), so every survey shares the same "physics"; the survey seed
only draws the stars, their extinction and their noise. Each survey also has ``photometry.csv``:
Gaia EDR3 and 2MASS photometry and parallax consistent with each star (``synth_photometry``),
drawn from a random stream of its own, so the spectra and labels.csv do not depend on it.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable

import numpy as np
import pandas as pd
from astropy.io import fits

from apnet_tf.constants import CDELT1, CRVAL1, MISSING_VALUE, N_PIXELS, wavelength_grid
from apnet_tf.data.synth_photometry import PHOTOMETRY_FILE, write_photometry
from apnet_tf.errors import ApnetError, check_seed
from apnet_tf.io.files import atomic_path, locks_output
from apnet_tf.io.folders import check, claim, marker, remove_made, write_marker

__all__ = [
    "SURVEY_PATTERN", "BOSS_SURVEY_PATTERN", "CHIP_GAPS", "CATEGORY_FRACTIONS", "YSO_FIELDS",
    "gap_mask", "draw_labels", "line_comb", "voigt_kernel", "SpectrumModel",
    "prepare_survey_folder", "make_survey"
]

#: The names of the spectra a survey writes: apStar files, and BOSS spec files
#: (``synth_boss``); ``--overwrite`` deletes either kind.
SURVEY_PATTERN = "apStar-synth-*.fits"
BOSS_SURVEY_PATTERN = "spec-*.fits"
#: Chip-gap and edge pixel ranges (inclusive) where apStar files have flux 0 and error 1e10,
#: as measured on the DR13 files in shared/data.
CHIP_GAPS = ((0, 205), (3307, 3544), (6114, 6300), (8367, 8574))
#: Category fractions of the synthetic survey.
CATEGORY_FRACTIONS = {"payne": 0.80, "mstar": 0.12, "yso": 0.08}
#: Star-forming regions for YSO positions: name, RA, Dec (deg).
YSO_FIELDS = (("ORIONA", 83.8, -5.4), ("IC348", 56.1, 32.2), ("NGC2264", 100.2, 9.9),
              ("PLEIADES", 56.75, 24.1))
_LINE_LIST_SEED = 20200601
_R_INF = 109677.58  # Rydberg constant for hydrogen, cm^-1
_C_KMS = 299792.458
_PIXEL_KMS = _C_KMS * (10**CDELT1 - 1)  # 4.14 km/s per pixel
_INSTRUMENT_SIGMA_PX = _C_KMS / 22500 / 2.3548 / _PIXEL_KMS  # R = 22,500


def gap_mask() -> np.ndarray:
    """Bool (8575,): True at chip-gap and edge pixels."""
    m = np.zeros(N_PIXELS, dtype=bool)
    for a, b in CHIP_GAPS:
        m[a:b + 1] = True
    return m


def draw_labels(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Draw n stars: CATEGORY, TEFF (K), LOGG (dex), FE_H (dex)."""
    cats = rng.choice(list(CATEGORY_FRACTIONS), size=n, p=list(CATEGORY_FRACTIONS.values()))
    teff, logg, feh = np.empty(n), np.empty(n), np.empty(n)
    for i, cat in enumerate(cats):
        if cat == "payne" and rng.random() < 0.6:  # red giant branch and clump
            t = np.clip(rng.normal(4700, 450), 3500, 5800)
            g = np.clip((t - 3500) / 2000 * 3.2 + rng.normal(0, 0.35), -0.5, 3.45)
            f = rng.normal(-0.2, 0.3) if rng.random() > 0.12 else rng.uniform(-2.5, -0.8)
        elif cat == "payne":  # dwarfs and subgiants hotter than 4000 K
            t = rng.uniform(4100, 8000)
            g = np.clip(4.75 - (t - 4100) / 3900 * 0.8 + rng.normal(0, 0.25), 3.5, 5.2)
            f = rng.normal(-0.15, 0.25) if rng.random() > 0.08 else rng.uniform(-2.0, -0.7)
        elif cat == "mstar":
            t = rng.uniform(2700, 4000)
            g = np.clip(4.7 + (4000 - t) / 1300 * 0.55 + rng.normal(0, 0.08), 4.5, 5.5)
            f = rng.normal(-0.1, 0.22)
        else:  # yso: cool, pre-main-sequence log g
            t = rng.uniform(2500, 4500)
            g = rng.uniform(3.0, 4.4)
            f = rng.normal(-0.05, 0.1)
        teff[i], logg[i], feh[i] = t, g, np.clip(f, -2.5, 0.5)
    return pd.DataFrame({"CATEGORY": cats, "TEFF": teff, "LOGG": logg, "FE_H": feh})


def _line_list() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fixed line groups: name -> (pixel positions, strengths)."""
    rng = np.random.default_rng(_LINE_LIST_SEED)
    groups = {}
    for name, count, scale in (("metal", 260, 1.0), ("alpha", 110, 1.4), ("oh", 160, 0.9),
                               ("cn", 240, 0.35)):
        pos = rng.uniform(210, N_PIXELS - 210, count)
        groups[name] = (pos, scale * rng.lognormal(0.0, 1.0, count))
    n_upper = np.arange(11, 22)  # Brackett series n -> 4
    lam = 1e8 / (_R_INF * (1 / 16 - 1 / n_upper**2))
    groups["h"] = ((np.log10(lam) - CRVAL1) / CDELT1, np.full(n_upper.size, 6.0))
    return groups


def line_comb(pos: np.ndarray, strength: np.ndarray, n_pixels: int = N_PIXELS) -> np.ndarray:
    """Delta functions at fractional pixel positions, shared linearly between neighbours:
    float64 (n_pixels,)."""
    out = np.zeros(n_pixels)
    i = np.floor(pos).astype(int)
    w = pos - i
    ok = (i >= 0) & (i < n_pixels - 1)
    np.add.at(out, i[ok], strength[ok] * (1 - w[ok]))
    np.add.at(out, i[ok] + 1, strength[ok] * w[ok])
    return out


def voigt_kernel(sigma: float, gamma: float, half: int = 80) -> np.ndarray:
    """Area-normalised pseudo-Voigt (Thompson et al. 1987) in pixels: Gaussian ``sigma`` and
    Lorentzian half width ``gamma``; float64 (2 half + 1,)."""
    x = np.arange(-half, half + 1, dtype=np.float64)
    fg, fl = 2.3548 * sigma, 2 * gamma
    f = (fg**5 + 2.69269 * fg**4 * fl + 2.42843 * fg**3 * fl**2 + 4.47163 * fg**2 * fl**3
         + 0.07842 * fg * fl**4 + fl**5) ** 0.2
    r = fl / f
    eta = 1.36603 * r - 0.47719 * r**2 + 0.11116 * r**3
    s = f / 2.3548
    gauss = np.exp(-0.5 * (x / s) ** 2) / (s * np.sqrt(2 * np.pi))
    lor = (f / 2) / np.pi / (x**2 + (f / 2) ** 2)
    return eta * lor + (1 - eta) * gauss


class SpectrumModel:
    """Noise-free raw flux as a function of (Teff, log g, [Fe/H], extinction)."""

    def __init__(self):
        self.wave = wavelength_grid()
        self.combs = {k: line_comb(*v) for k, v in _line_list().items()}
        x = (self.wave - 16050.0) / 950.0
        # A fixed, smooth instrument throughput with a step per detector, as in raw apStar flux.
        chip = np.select([self.wave < 15800, self.wave < 16440], [0.93, 1.0], 1.06)
        self.throughput = (1 - 0.18 * x**2) * chip
        heads = np.array([15582.0, 15780.0, 15982.0, 16189.0, 16397.0, 16610.0, 16840.0])
        co = np.zeros(N_PIXELS)
        for h in heads:
            d = self.wave - h
            on = d >= 0
            co[on] += np.exp(-d[on] / 70.0) * (0.75 + 0.25 * np.cos(2 * np.pi * d[on] / 3.2))
        self.co_shape = co
        self.h2o_shape = np.exp(-(self.wave - 15150) / 250) + np.exp((self.wave - 16990) / 320)

    def flux(self, teff: float, logg: float, feh: float, a_h: float = 0.0) -> np.ndarray:
        """Noise-free flux, shape (8575,), of order 1 at 1.6 um before the star's scale."""
        theta = 5040.0 / teff
        lam_um = self.wave * 1e-4
        planck = 1.0 / (lam_um**5 * np.expm1(14387.77 / (lam_um * teff)))
        planck /= 1.0 / (1.6**5 * np.expm1(14387.77 / (1.6 * teff)))
        extinction = 10 ** (-0.4 * a_h * ((self.wave / 16300.0) ** -1.75 - 1.0))
        alpha_fe = np.clip(-0.3 * feh, 0.0, 0.3)
        metals = 10.0**feh
        veil = 1.0 / (1.0 + np.exp((3100.0 - teff) / 180.0))  # molecules veil atomic lines
        strengths = {
            "metal": 0.9 * metals * theta**2.2 * veil,
            "alpha": 0.8 * 10 ** (feh + alpha_fe) * theta**1.1,
            "oh": metals * np.exp(-(teff - 3000.0) / 550.0) * 10 ** (-0.12 * (logg - 2.5)),
            "cn": metals * np.exp(-(teff - 3600.0) / 700.0) * 10 ** (-0.35 * (logg - 2.5)),
            "h": 1.5 * np.exp(-(((teff - 9000.0) / 2200.0) ** 2)),
        }
        sigma = np.hypot(_INSTRUMENT_SIGMA_PX, 0.35 * np.sqrt(teff / 5000.0))
        gamma_metal = 0.9 * 10 ** (0.33 * (logg - 4.4)) * (teff / 5000.0) ** 0.3
        gamma_h = 3.0 * 10 ** (0.25 * (logg - 4.0))
        tau = np.zeros(N_PIXELS)
        for name, comb in self.combs.items():
            if strengths[name] < 1e-4:
                continue
            kern = voigt_kernel(sigma, gamma_h if name == "h" else gamma_metal,
                                 half=200 if name == "h" else 80)
            tau += strengths[name] * np.convolve(comb, kern, mode="same")
        co_strength = 0.35 * metals * np.clip(np.exp(-(teff - 3400.0) / 700.0), 0, 3) \
            * 10 ** (-0.2 * (logg - 2.5))
        tau += co_strength * self.co_shape
        h2o_depth = 0.6 * np.clip((4000.0 - teff) / 1400.0, 0, 1) ** 1.5 \
            * np.clip(1 + 0.35 * (logg - 4.5), 0.2, 1.5)
        molecular = np.clip(1 - h2o_depth * self.h2o_shape, 0.05, 1)
        return planck * extinction * self.throughput * molecular * np.exp(-tau)


def _apogee_id(ra: float, dec: float) -> str:
    """A 2MASS-style ID, 2MHHMMSSss+DDMMSSs, from J2000 coordinates in degrees."""
    h = ra / 15.0
    hh, mm = int(h), int((h % 1) * 60)
    ss = (h * 3600) % 60
    sign = "+" if dec >= 0 else "-"
    d = abs(dec)
    dd, dm = int(d), int((d % 1) * 60)
    ds = (d * 3600) % 60
    return f"2M{hh:02d}{mm:02d}{int(ss * 100):04d}{sign}{dd:02d}{dm:02d}{int(ds * 10):03d}"


def _write_apstar(path: str, apogee_id: str, flux: np.ndarray, err: np.ndarray,
                  mask: np.ndarray, header: dict) -> None:
    """Write one apStar-layout file atomically. flux/err/mask: (8575,) or (NVISITS+2, 8575)."""
    primary = fits.PrimaryHDU()
    for key, value in header.items():
        primary.header[key] = value
    primary.header["OBJID"] = apogee_id

    def image(data):
        hdu = fits.ImageHDU(data)
        hdu.header["CRVAL1"] = CRVAL1
        hdu.header["CDELT1"] = CDELT1
        hdu.header["CRPIX1"] = 1
        hdu.header["CTYPE1"] = "LOG-LINEAR"
        hdu.header["DC-FLAG"] = 1
        return hdu

    hdus = [primary, image(flux.astype(">f4")), image(err.astype(">f4")),
            image(mask.astype(">i2"))]
    zeros = np.zeros_like(flux, dtype=">f4")
    hdus += [image(zeros), image(zeros), image(np.ones_like(flux, dtype=">f4")), image(zeros)]
    hdus.append(fits.ImageHDU(np.zeros(26, dtype=">f8")))  # LSF coefficients
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp, overwrite=True, output_verify="silentfix")


def _is_old_survey(folder: str) -> bool:
    """A survey written before folders had markers: labels.csv and apStar-synth-*.fits only."""
    names = os.listdir(folder)
    return "labels.csv" in names and all(
        n == "labels.csv" or fnmatch.fnmatch(n, SURVEY_PATTERN) for n in names)


def prepare_survey_folder(out_dir: str, n: int, seed: int, overwrite: bool = False,
                          options: dict | None = None) -> None:
    """Take ``out_dir`` for a survey of n stars drawn with ``seed`` (``folders.claim``);
    ``options`` (a BOSS survey's instrument, names and file kind) are part of what it is.

    The same survey again is a resume (its files are rewritten identically). Another survey in
    the folder would leave its spectra beside the new ones: that needs ``overwrite``, which first
    deletes the old labels.csv, photometry.csv and the ``apStar-synth-*.fits`` or
    ``spec-*.fits`` files.

    Raises:
        ApnetError: n < 1; the folder is not a survey folder; or it holds another survey and
            ``overwrite`` is not set.
    """
    if n < 1:
        raise ApnetError(f"--n: the survey needs at least 1 star, got {n}")
    check_seed(seed)
    params = {"n": int(n), "seed": int(seed), **(options or {})}
    held = check(out_dir, "survey", legacy=_is_old_survey)
    old = (marker(out_dir) or {}).get("survey") if held else params
    if old != params and not overwrite:
        shown = ", ".join(f"{k}={v}" for k, v in old.items()) if old else "an earlier version's"
        raise ApnetError(f"{out_dir}: holds another synthetic survey ({shown}); pass "
                         "--overwrite to replace it, or choose another folder")
    claim(out_dir, "survey", legacy=_is_old_survey)
    if old != params:
        remove_made(out_dir, ["labels.csv", PHOTOMETRY_FILE] + sorted(
            name for name in os.listdir(out_dir)
            if any(fnmatch.fnmatch(name, p) for p in (SURVEY_PATTERN, BOSS_SURVEY_PATTERN))))
    write_marker(out_dir, "survey", survey=params)


@locks_output("out_dir")
def make_survey(out_dir: str, n: int, seed: int = 0,
                on_progress: Callable[[int, int], None] | None = None,
                overwrite: bool = False) -> pd.DataFrame:
    """Write n synthetic apStar files, ``labels.csv`` and ``photometry.csv`` to out_dir.

    Returns the label table (APOGEE_ID, TEFF, LOGG, FE_H, CATEGORY, SNR, RA, DEC, FILE, A_H),
    with -9999 for the 2% of stars given one missing label, as in APOGEE tables. photometry.csv
    (``synth_photometry``) is drawn from the true labels and A_H. Files already
    present are rewritten identically, so an interrupted run can simply be repeated; a different
    survey in ``out_dir`` needs ``overwrite`` (``prepare_survey_folder``).
    """
    prepare_survey_folder(out_dir, n, seed, overwrite)
    rng = np.random.default_rng(seed)
    table = draw_labels(n, rng)
    model = SpectrumModel()
    gaps = gap_mask()
    rows = []
    used = set()
    for i, star in enumerate(table.itertuples(index=False)):
        ra, dec, field, a_h, apogee_id = _place(star.CATEGORY, rng, used)
        snr, nvisits, flux, err, mask = _observe(model, star, a_h, gaps, rng)
        fname = f"apStar-synth-{apogee_id}.fits"
        _write_apstar(os.path.join(out_dir, fname), apogee_id, flux, err, mask, {
            "TELESCOP": "apo25m", "FIELD": field, "RA": float(ra % 360), "DEC": float(dec),
            "NVISITS": nvisits, "SNR": snr, "SYNTH": (True, "apnet-tf synthetic spectrum")})
        rows.append({"APOGEE_ID": apogee_id, "SNR": snr, "RA": ra % 360, "DEC": dec,
                     "FILE": fname, "A_H": a_h})
        if on_progress:
            on_progress(i + 1, n)
    out = pd.concat([pd.DataFrame(rows), table], axis=1)
    write_photometry(out_dir, out, seed)  # from the true labels, before the holes below
    # A few missing labels, in the APOGEE -9999 convention, so masks are exercised.
    holes = rng.random(n) < 0.02
    cols = rng.choice(["TEFF", "LOGG", "FE_H"], size=n)
    for col in ("TEFF", "LOGG", "FE_H"):
        out.loc[holes & (cols == col), col] = MISSING_VALUE
    out = out[["APOGEE_ID", "TEFF", "LOGG", "FE_H", "CATEGORY", "SNR", "RA", "DEC", "FILE",
               "A_H"]]
    with atomic_path(os.path.join(out_dir, "labels.csv")) as tmp:
        out.to_csv(tmp, index=False, float_format="%.6g")
    return out


def _place(category: str, rng: np.random.Generator,
           used: set[str]) -> tuple[float, float, str, float, str]:
    """(ra, dec, field, A_H, APOGEE ID) of one star: YSOs near a star-forming field with more
    extinction, the others anywhere on the sky. ``used`` keeps the IDs unique (and is updated)."""
    if category == "yso":
        field, ra0, dec0 = YSO_FIELDS[rng.integers(len(YSO_FIELDS))]
        ra, dec = ra0 + rng.normal(0, 1.0), dec0 + rng.normal(0, 1.0)
        a_h = rng.uniform(0.0, 1.5)
    else:
        ra, dec = rng.uniform(0, 360), np.degrees(np.arcsin(rng.uniform(-1, 1)))
        field = f"{int(ra) % 360:03d}{int(dec):+03d}"
        a_h = rng.exponential(0.25)
    apogee_id = _apogee_id(ra % 360, float(np.clip(dec, -89.9, 89.9)))
    while apogee_id in used:
        ra += 1e-4
        apogee_id = _apogee_id(ra % 360, float(np.clip(dec, -89.9, 89.9)))
    used.add(apogee_id)
    return ra, dec, field, a_h, apogee_id


def _observe(model: SpectrumModel, star, a_h: float, gaps: np.ndarray,
             rng: np.random.Generator) -> tuple[float, int, np.ndarray, np.ndarray, np.ndarray]:
    """(S/N, visits, flux, err, pixmask) of one star as an apStar file holds them: one row
    (8575,) for a single visit; two combined rows and one per visit (nvisits + 2, 8575) else.
    Bad pixels (chip gaps and a few random ones) have flux 0 and err 1e10, as in APOGEE."""
    snr = float(10 ** rng.uniform(np.log10(12), np.log10(400)))
    scale = 10 ** rng.uniform(1.8, 3.2)
    clean = scale * model.flux(star.TEFF, star.LOGG, star.FE_H, a_h)
    # Photon noise: sigma grows as sqrt(flux), and equals median/SNR at the median flux.
    med = np.median(clean[~gaps])
    sigma = (med / snr) * np.sqrt(np.clip(clean / med, 1e-3, None))
    nvisits = 1 if rng.random() < 0.75 else int(rng.integers(2, 4))
    visits = clean + sigma * np.sqrt(nvisits) * rng.standard_normal((nvisits, N_PIXELS))
    combined = visits.mean(axis=0)
    bad = gaps.copy()
    bad[rng.integers(0, N_PIXELS, rng.integers(0, 8))] = True
    pixmask = np.where(bad, 1, 0).astype(np.int16)  # bit 0: BADPIX
    if nvisits == 1:
        flux, err, mask = combined, sigma.copy(), pixmask
    else:
        flux = np.vstack([combined, combined, visits])
        err = np.vstack([sigma, sigma] + [sigma * np.sqrt(nvisits)] * nvisits)
        mask = np.tile(pixmask, (nvisits + 2, 1))
    return snr, nvisits, np.where(bad, 0.0, flux), np.where(bad, 1e10, err), mask
