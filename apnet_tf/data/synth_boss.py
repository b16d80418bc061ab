"""A synthetic BOSS survey: SDSS ``spec-*.fits`` files in the SDSS data model, and labels.csv.

The stars are those of the APOGEE survey (``synth.draw_labels``: giants, dwarfs, M dwarfs,
young stars) plus 10% hot stars (7,000 to 30,000 K), each with a radial velocity. Each
spectrum is flux-calibrated optical flux (1e-17 erg/s/cm^2/A) on the BOSS pixels (log-linear,
``loglam`` steps of 1e-4, 69 km/s) and depends on every label through simple physics:

* the continuum is a black body at Teff, reddened by a random E(B-V), so the slope alone does
  not give Teff;
* the Balmer lines (H-alpha to H9) peak near 9,500 K, with Lorentzian wings that widen with
  log g (pressure broadening); Ca II H and K, the Ca II triplet, Mg b, Na D and a fixed forest of
  metal lines scale with [Fe/H] and grow towards cool stars; the Ca II triplet is stronger in
  giants, Mg b and Na D in dwarfs; TiO bands appear below 4,000 K;
* every line is shifted by the star's radial velocity, ``lambda (1 + RV / c)``, and blurred to
  the BOSS resolution (R about 2,000);
* ``ivar`` follows the star's S/N (photon noise); the flux gets that noise; a few pixels at the
  ends and at random have ivar 0 (and_mask FULLREJECT), a few have NaN flux, and pixels near
  bright sky lines carry BRIGHTSKY in or_mask and more noise.

Files are lite (HDUs 0-3, SDSS-V 0-4) by default; ``full`` adds one table per exposure and
camera, as full spec files do. Names are SDSS-V ``spec-FIELD-MJD-CATALOGID.fits`` ("field"),
SDSS-IV ``spec-PLATE-MJD-FIBER.fits`` ("plate"), or alternately both ("both"); SDSS-IV files
spell their COADD columns in lower case (DR17) on a grid whose start and length vary per plate,
SDSS-V files in upper case (DR19) with ``WRESL``. labels.csv names each file (FILE, SPEC_ID and
the PLATE, FIBERID or FIELD, CATALOGID, and MJD columns), so it is also a table of BOSS files
(``io.boss_table``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import numpy as np
import pandas as pd
from astropy.io import fits

from apnet_tf.constants import INSTRUMENTS
from apnet_tf.data.synth import (
    draw_labels,
    line_comb,
    make_survey,
    prepare_survey_folder,
    voigt_kernel,
)
from apnet_tf.errors import ApnetError
from apnet_tf.io.boss import spec_name
from apnet_tf.io.files import atomic_path, locks_output

__all__ = ["NAME_STYLES", "LOGLAM0", "DLOGLAM", "N_MASTER", "LINES", "BossSpectrumModel",
           "make_boss_survey", "survey_maker"]

#: File name styles: SDSS-V field-mjd-catalogid, SDSS-IV plate-mjd-fiber, or both in turn.
NAME_STYLES = ("field", "plate", "both")
#: The BOSS coadd grid: loglam = LOGLAM0 + DLOGLAM * i (3,567 to 10,400 A over 4,648 pixels);
#: spectra are computed on N_MASTER pixels and each file takes its own stretch of them.
LOGLAM0 = 3.5523
DLOGLAM = 1e-4
N_MASTER = 4680
#: Vacuum wavelengths (A) of the named lines, by group.
LINES = {
    "balmer": (6564.61, 4862.68, 4341.69, 4102.89, 3971.20, 3890.16, 3836.47),
    "cahk": (3934.78, 3969.59),
    "cat": (8500.36, 8544.44, 8664.52),
    "mgb": (5168.76, 5174.13, 5185.05),
    "nad": (5891.58, 5897.56),
}
_TIO_HEADS = (6159.0, 6653.0, 7055.0, 7591.0, 8434.0)
_SKY_LINES = (5578.9, 5891.6, 6302.0, 6365.5, 7316.3, 7750.6, 7913.7, 8344.6, 8827.1)
_FOREST_SEED = 20240501
_C_KMS = 299792.458
_PIXEL_KMS = _C_KMS * (10 ** DLOGLAM - 1)
_INSTRUMENT_SIGMA_PX = _C_KMS / 2000 / 2.3548 / _PIXEL_KMS
_FULLREJECT, _BRIGHTSKY = 1 << 18, 1 << 23
_HOT_FRACTION = 0.1


class BossSpectrumModel:
    """Noise-free BOSS flux as a function of (Teff, log g, [Fe/H], RV, E(B-V))."""

    def __init__(self):
        self.loglam = LOGLAM0 + DLOGLAM * np.arange(N_MASTER)
        self.wave = 10.0 ** self.loglam
        rng = np.random.default_rng(_FOREST_SEED)
        # a fixed metal-line forest, denser in the blue as in real stars
        self.forest = (3800.0 * (8900.0 / 3800.0) ** rng.power(0.7, 420),
                       rng.lognormal(-1.2, 1.0, 420))
        tio = np.zeros(N_MASTER)
        for head in _TIO_HEADS:
            d = self.wave - head
            tio[d >= 0] += np.exp(-d[d >= 0] / 120.0)
        self.tio_shape = tio

    def _pixels(self, lam: np.ndarray, rv: float) -> np.ndarray:
        return (np.log10(np.asarray(lam) * (1 + rv / _C_KMS)) - LOGLAM0) / DLOGLAM

    def flux(self, teff: float, logg: float, feh: float, rv: float,
             ebv: float = 0.0) -> np.ndarray:
        """Noise-free flux, float64 (N_MASTER,), of order 1 at 6000 A."""
        lam_um = self.wave * 1e-4
        planck = 1.0 / (lam_um**5 * np.expm1(14387.77 / (lam_um * teff)))
        planck /= 1.0 / (0.6**5 * np.expm1(14387.77 / (0.6 * teff)))
        reddening = 10 ** (-0.4 * ebv * 3.1 * ((self.wave / 5500.0) ** -1.3 - 1.0))
        theta, metals = 5040.0 / teff, 10.0 ** feh
        cool = np.clip(theta, 0.2, 2.0)
        strengths = {
            "balmer": 30.0 * np.exp(-(((teff - 9500.0) / (2200.0 if teff < 9500 else 9000.0))
                                      ** 2)) + 0.3 * np.clip((teff - 3500.0) / 3000.0, 0, 1),
            "cahk": 4.0 * metals * np.exp(-(((teff - 4800.0) / 2500.0) ** 2)),
            "cat": 1.2 * metals * cool * 10 ** (-0.12 * (logg - 3.0)),
            "mgb": 1.0 * metals * cool**2 * 10 ** (0.08 * (logg - 3.0)),
            "nad": 0.8 * metals * cool**3 * 10 ** (0.1 * (logg - 3.0)),
            "forest": 0.6 * metals * cool**2.5,
        }
        sigma = np.hypot(_INSTRUMENT_SIGMA_PX, 0.2)
        tau = np.zeros(N_MASTER)
        for name, strength in strengths.items():
            lam, depth = self.forest if name == "forest" else (
                np.array(LINES[name]), np.ones(len(LINES[name])))
            gamma = (6.0 * 10 ** (0.3 * (logg - 4.0)) if name == "balmer" else
                     0.15 * 10 ** (0.25 * (logg - 4.0)))
            kern = voigt_kernel(sigma, gamma, half=200 if name == "balmer" else 30)
            comb = line_comb(self._pixels(lam, rv), strength * depth, N_MASTER)
            tau += np.convolve(comb, kern, mode="same")
        tio = 1.2 * metals * np.clip((4000.0 - teff) / 1200.0, 0, 1.5) ** 1.5
        shifted = np.interp(self._pixels(self.wave, -rv), np.arange(N_MASTER), self.tio_shape)
        molecular = np.clip(1 - tio * shifted, 0.05, 1)
        return planck * reddening * molecular * np.exp(-tau)


def _stars(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """CATEGORY, TEFF, LOGG, FE_H and RV (km/s) of n stars."""
    table = draw_labels(n, rng)
    hot = rng.random(n) < _HOT_FRACTION
    k = int(hot.sum())
    table.loc[hot, "CATEGORY"] = "hot"
    table.loc[hot, "TEFF"] = 10 ** rng.uniform(np.log10(7000), np.log10(30000), k)
    table.loc[hot, "LOGG"] = rng.uniform(3.5, 4.5, k)
    table.loc[hot, "FE_H"] = np.clip(rng.normal(-0.1, 0.2, k), -1.0, 0.5)
    halo = rng.random(n) < 0.1
    table["RV"] = np.where(halo, rng.normal(0, 150, n), rng.normal(0, 40, n))
    return table


def _observe(model: BossSpectrumModel, star, rng: np.random.Generator, sdss5: bool) -> dict:
    """The COADD columns and S/N of one star on its file's stretch of the master grid."""
    start = 0 if sdss5 else int(rng.integers(0, 12))
    n_pix = 4648 if sdss5 else 4648 - int(rng.integers(0, 30))
    ebv = rng.exponential(0.08)
    clean = 10 ** rng.uniform(0.0, 2.0) * model.flux(star.TEFF, star.LOGG, star.FE_H, star.RV,
                                                      ebv)[start:start + n_pix]
    wave = model.wave[start:start + n_pix]
    sky = sum(30.0 * np.exp(-0.5 * ((wave - w) / 1.6) ** 2) for w in _SKY_LINES) + 0.5
    snr = float(10 ** rng.uniform(np.log10(5), np.log10(150)))
    med = np.median(clean)
    sigma = (med / snr) * np.sqrt(np.clip(clean / med, 1e-2, None) + sky / (sky.mean() * 4))
    flux = clean + sigma * rng.standard_normal(n_pix)
    ivar = 1.0 / sigma**2
    and_mask = np.zeros(n_pix, np.int32)
    or_mask = np.where(sky > 5.0, _BRIGHTSKY, 0).astype(np.int32)
    rejected = np.zeros(n_pix, bool)
    rejected[:int(rng.integers(0, 20))] = True
    rejected[n_pix - int(rng.integers(1, 25)):] = True
    rejected[rng.integers(0, n_pix, int(rng.integers(0, 15)))] = True
    and_mask[rejected] |= _FULLREJECT
    or_mask[rejected] |= _FULLREJECT
    flux[rejected], ivar[rejected] = 0.0, 0.0
    flux[rng.integers(0, n_pix, int(rng.integers(0, 4)))] = np.nan  # NaN, as some reductions
    wdisp = np.full(n_pix, 1.05) + 0.1 * (wave > 6000)
    cols = {"flux": flux, "loglam": model.loglam[start:start + n_pix], "ivar": ivar,
            "and_mask": and_mask, "or_mask": or_mask, "wdisp": wdisp, "sky": sky,
            "model": clean}
    if sdss5:
        cols["wresl"] = 2.3548 * wdisp * wave * np.log(10) * DLOGLAM
    good = (ivar > 0) & np.isfinite(flux)
    return {"cols": cols, "snr": float(np.median(flux[good] * np.sqrt(ivar[good])))}


def _identity(i: int, names: str, rng: np.random.Generator, used: set[str]) -> dict:
    """Position, MJD and plate/fiber or field/catalogid of star i; ``used`` keeps the file
    names unique (and is updated)."""
    sdss5 = names == "field" or (names == "both" and i % 2 == 0)
    ra, dec = rng.uniform(0, 360), float(np.degrees(np.arcsin(rng.uniform(-1, 1))))
    while True:
        if sdss5:
            ids = {"FIELD": int(rng.integers(15000, 113000)),
                   "MJD": int(rng.integers(59150, 60500)),
                   "CATALOGID": int(rng.integers(27021597000000000, 27021600000000000))}
            name = spec_name(ids["MJD"], field=ids["FIELD"], catalogid=ids["CATALOGID"])
        else:
            ids = {"PLATE": int(rng.integers(3500, 12000)),
                   "MJD": int(rng.integers(55000, 58600)),
                   "FIBERID": int(rng.integers(1, 1001))}
            name = spec_name(ids["MJD"], plate=ids["PLATE"], fiber=ids["FIBERID"])
        if name not in used:
            used.add(name)
            return {"sdss5": sdss5, "RA": ra, "DEC": dec, "FILE": name, **ids}


def _table(columns: dict, name: str, upper: bool = True) -> fits.BinTableHDU:
    """A binary table HDU named ``name`` from {column: array of one length}; text as ASCII."""
    arrays = {(k.upper() if upper else k): np.asarray(v) for k, v in columns.items()}
    arrays = {k: np.char.encode(v, "ascii") if v.dtype.kind == "U" else v
              for k, v in arrays.items()}
    data = np.zeros(len(next(iter(arrays.values()))), dtype=[
        (k, v.dtype.newbyteorder(">") if v.dtype.kind in "fi" else v.dtype)
        for k, v in arrays.items()])
    for k, v in arrays.items():
        data[k] = v
    return fits.BinTableHDU(data=data, name=name)


def _hdus(star, ident: dict, obs: dict, full: bool, seed: int, i: int) -> fits.HDUList:
    """The HDUs of one spec file in the SDSS data model (module doc)."""
    sdss5 = ident["sdss5"]
    cols = {k: v.astype(np.int32 if k.endswith("mask") else np.float32)
            for k, v in obs["cols"].items()}
    primary = fits.PrimaryHDU()
    header = {"TELESCOP": "SDSS 2.5-M", "OBSERVAT": "APO", "MJD": ident["MJD"],
              "RA": (ident["RA"] + 0.7) % 360, "DEC": float(np.clip(ident["DEC"] + 0.5, -90, 90)),
              "PLUG_RA": ident["RA"], "PLUG_DEC": ident["DEC"],
              "RUN2D": "v6_1_3" if sdss5 else "v5_13_2",
              "SYNTH": (True, "apnet-tf synthetic spectrum")}
    header.update({"FIELDID": str(ident["FIELD"]), "PLATEID": ""} if sdss5 else
                  {"PLATEID": ident["PLATE"], "FIBERID": ident["FIBERID"]})
    for key, value in header.items():
        primary.header[key] = value
    coadd = _table(cols, "COADD", upper=sdss5)
    spall = {"MJD": np.array([ident["MJD"]], np.int64 if sdss5 else np.int32),
             "PLUG_RA": np.array([ident["RA"]]), "PLUG_DEC": np.array([ident["DEC"]]),
             "SN_MEDIAN_ALL": np.array([obs["snr"]], np.float32),
             "CLASS": np.array(["STAR"]), "OBJTYPE": np.array(["SCIENCE"])}
    if sdss5:
        spall.update(FIELD=np.array([ident["FIELD"]], np.int64),
                     CATALOGID=np.array([ident["CATALOGID"]], np.int64),
                     SPEC_FILE=np.array([ident["FILE"]]))
    else:  # FIELD of SDSS-IV's spAll is the imaging field, not the spectrum's
        spall.update(PLATE=np.array([ident["PLATE"]], np.int32), FIBERID=np.array(
            [ident["FIBERID"]], np.int32), FIELD=np.array([i % 800 + 11], np.int32),
                     OBJID=np.array([f"{1237650000000000000 + i}"]))
    extra = [_table({"LINENAME": np.array(["H_alpha", "H_beta"]),
                     "LINEWAVE": np.array(LINES["balmer"][:2]),
                     "LINEZ": np.full(2, star.RV / _C_KMS, np.float32)},
                    "ZLINE" if sdss5 else "SPZLINE")]
    if sdss5:
        extra.insert(0, _table({"CATALOGID": spall["CATALOGID"], "OBJTYPE": spall["OBJTYPE"]},
                               "ZALL"))
    spall_hdu = _table(spall, "SPALL")
    frames = _exposures(cols, np.random.default_rng([seed, i])) if full else []
    return fits.HDUList([primary, coadd, spall_hdu] + extra + frames)


def _exposures(cols: dict, rng: np.random.Generator) -> list[fits.BinTableHDU]:
    """A full file's per-exposure tables: blue and red camera of 2 or 3 exposures."""
    wave = 10.0 ** cols["loglam"].astype(np.float64)
    out = []
    for k in range(int(rng.integers(2, 4))):
        for camera, part in (("b1", wave < 6300), ("r1", wave > 5900)):
            nexp = 3.0
            err = np.where(cols["ivar"][part] > 0, cols["ivar"][part], np.inf) ** -0.5
            flux = cols["flux"][part] + np.sqrt(nexp) * err * rng.standard_normal(part.sum())
            out.append(_table({"FLUX": flux.astype(np.float32), "LOGLAM": cols["loglam"][part],
                               "IVAR": (cols["ivar"][part] / nexp).astype(np.float32),
                               "MASK": cols["and_mask"][part]},
                              f"{camera}-{353048 + k:08d}-00353044-00353047"))
    return out


@locks_output("out_dir")
def make_boss_survey(out_dir: str, n: int, seed: int = 0,
                     on_progress: Callable[[int, int], None] | None = None,
                     overwrite: bool = False, names: str = "field",
                     full: bool = False) -> pd.DataFrame:
    """Write n synthetic BOSS spec files and ``labels.csv`` to out_dir (the module's doc).

    Args:
        names: "field" (SDSS-V names), "plate" (SDSS-IV) or "both" (in turn).
        full: full spec files (per-exposure HDUs) instead of lite ones.

    Returns:
        The label table: SPEC_ID, FILE, TEFF, LOGG, FE_H, RV (km/s), CATEGORY, SNR, RA, DEC,
        EBV, MJD, PLATE, FIBERID, FIELD, CATALOGID (empty where a style has none). The same
        seed gives the same files, byte for byte; lite and full surveys of one seed differ
        only in the per-exposure HDUs. A re-run resumes; another survey in ``out_dir`` needs
        ``overwrite`` (``synth.prepare_survey_folder``).

    Raises:
        ApnetError: ``names`` is not one of NAME_STYLES; or as ``prepare_survey_folder``.
    """
    if names not in NAME_STYLES:
        raise ApnetError(f"--names: must be one of {', '.join(NAME_STYLES)}, got {names!r}")
    prepare_survey_folder(out_dir, n, seed, overwrite,
                          {"instrument": "boss", "names": names, "full": bool(full)})
    rng = np.random.default_rng(seed)
    stars = _stars(n, rng)
    model = BossSpectrumModel()
    rows, used = [], set()
    for i, star in enumerate(stars.itertuples(index=False)):
        ident = _identity(i, names, rng, used)
        obs = _observe(model, star, rng, ident["sdss5"])
        with atomic_path(os.path.join(out_dir, ident["FILE"])) as tmp:
            _hdus(star, ident, obs, full, seed, i).writeto(tmp, overwrite=True)
        rows.append({k: v for k, v in ident.items() if k != "sdss5"} | {"SNR": obs["snr"]})
        if on_progress:
            on_progress(i + 1, n)
    ids = ("MJD", "PLATE", "FIBERID", "FIELD", "CATALOGID")  # exact: Int64, empty where none
    out = pd.concat([pd.DataFrame([{k: v for k, v in r.items() if k not in ids} for r in rows]),
                     stars], axis=1)
    for col in ids:
        out[col] = pd.array([r.get(col) for r in rows], dtype="Int64")
    out["SPEC_ID"] = [f[5:-5] for f in out["FILE"]]
    out = out[["SPEC_ID", "FILE", "TEFF", "LOGG", "FE_H", "RV", "CATEGORY", "SNR", "RA", "DEC",
               "MJD", "PLATE", "FIBERID", "FIELD", "CATALOGID"]]
    with atomic_path(os.path.join(out_dir, "labels.csv")) as tmp:
        out.to_csv(tmp, index=False, float_format="%.10g")  # RA, DEC to 0.0004 arcsec
    return out


def survey_maker(instrument: str = "apogee", names: str | None = None,
                 full: bool = False) -> Callable[..., pd.DataFrame]:
    """The survey writer of ``synth --instrument``: ``synth.make_survey`` (apogee) or
    ``make_boss_survey`` with ``names`` and ``full`` (boss); both are called as
    ``(out_dir, n, seed, on_progress=..., overwrite=...)``.

    Raises:
        ApnetError: an unknown instrument or name style, or BOSS options for apogee (checked
            before anything is written).
    """
    if instrument not in INSTRUMENTS:
        raise ApnetError(f"--instrument: must be one of {', '.join(INSTRUMENTS)}, "
                         f"got {instrument!r}")
    if instrument == "apogee":
        if names is not None or full:
            raise ApnetError("--names and --full: BOSS file options; add --instrument boss")
        return make_survey
    names = "field" if names is None else names
    if names not in NAME_STYLES:
        raise ApnetError(f"--names: must be one of {', '.join(NAME_STYLES)}, got {names!r}")
    return functools.partial(make_boss_survey, names=names, full=full)
