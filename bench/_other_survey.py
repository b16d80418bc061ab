"""A second synthetic APOGEE survey, built differently from ``apnet_tf.data.synth``: the "other
generator" of ``bench/novelty.py``.

Its stars have labels in the same ranges as the package's survey, but every part of the spectrum
is made another way, so a network trained on the package's survey has seen nothing like it:

* lines: a line list of its own (another seed, 900 lines of four species with random excitation
  potentials), each line's strength set by a Boltzmann factor at Teff and by [Fe/H], with
  Gaussian profiles whose width grows with macroturbulence (lower log g, broader lines) instead
  of Lorentzian pressure wings; no molecular bands, no hydrogen lines;
* continuum: a power law in wavelength whose index depends on Teff (no black body), times a
  blaze-like throughput of three arcs (one per detector) and a reddening slope of its own;
* noise: a constant floor (read noise and sky) added in quadrature to photon noise, plus a
  smooth multiplicative ripple (flat-field residual) that the error array does not describe.

The instrument is still APOGEE's: the apStar grid, chip gaps with flux 0 and error 1e10, and
the apStar file layout (HDU 1-3), so every reader and model takes the files as they are.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from astropy.io import fits

from apnet_tf.constants import CDELT1, CRVAL1, N_PIXELS, wavelength_grid
from apnet_tf.data.synth import gap_mask

__all__ = ["OtherSpectrumModel", "draw_other_labels", "make_other_survey"]

_LINE_SEED = 777
_BOLTZMANN_EV = 8.617e-5
_C_KMS = 299792.458
_PIXEL_KMS = _C_KMS * (10**CDELT1 - 1)


class OtherSpectrumModel:
    """Noise-free raw flux of (Teff, log g, [Fe/H], reddening), made unlike ``SpectrumModel``."""

    def __init__(self):
        rng = np.random.default_rng(_LINE_SEED)
        self.wave = wavelength_grid()
        n = 900
        self.pos = rng.uniform(230, N_PIXELS - 230, n)
        self.chi = rng.uniform(0.0, 6.0, n)  # excitation potential, eV
        self.gf = rng.lognormal(-1.0, 1.2, n)
        self.species = rng.choice(4, n, p=[0.45, 0.25, 0.2, 0.1])
        x = (self.wave - 16000.0) / 1000.0
        chips = np.select([self.wave < 15800, self.wave < 16440], [0, 1], 2)
        starts = np.array([15140.0, 15860.0, 16470.0])
        ends = np.array([15800.0, 16430.0, 16960.0])
        u = (self.wave - starts[chips]) / (ends[chips] - starts[chips])
        self.throughput = (0.6 + 0.4 * np.sin(np.pi * np.clip(u, 0, 1)) ** 0.5) * (1 + 0.1 * x)

    def flux(self, teff: float, logg: float, feh: float, ebv: float = 0.0) -> np.ndarray:
        """Noise-free flux, shape (8575,)."""
        index = -4.0 + 2.5 * np.exp(-(teff - 3000.0) / 2500.0)
        cont = (self.wave / 16000.0) ** index * 10 ** (-0.4 * ebv * (self.wave / 16000.0) ** -2.1)
        boltz = np.exp(-self.chi / (_BOLTZMANN_EV * teff))
        ionised = 1.0 / (1.0 + np.exp((teff - (4600.0 + 300.0 * self.species)) / 450.0))
        depth = 0.35 * self.gf * 10**feh * boltz * ionised * np.exp(self.chi / (
            _BOLTZMANN_EV * 4500.0))
        vmacro = 3.0 + 4.0 * np.clip(3.0 - logg, 0.0, 3.5)  # km/s
        sigma = np.hypot(_C_KMS / 22500 / 2.3548, vmacro) / _PIXEL_KMS
        pix = np.arange(N_PIXELS)[:, None]
        tau = np.zeros(N_PIXELS)
        for lo in range(0, len(self.pos), 150):  # chunks keep the (pixels, lines) array small
            p, d = self.pos[lo:lo + 150], depth[lo:lo + 150]
            near = np.abs(pix - p[None]) < 8 * sigma
            tau += (d[None] * np.exp(-0.5 * ((pix - p[None]) / sigma) ** 2) * near).sum(1)
        return cont * self.throughput * np.exp(-tau)


def draw_other_labels(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Teff 3000-8000 K, log g 0.5-5, [Fe/H] -1.5 to 0.4: within the package survey's ranges."""
    teff = rng.uniform(3000.0, 8000.0, n)
    dwarf = rng.random(n) < 0.5
    logg = np.where(dwarf, rng.uniform(3.8, 5.0, n), rng.uniform(0.5, 3.4, n))
    return pd.DataFrame({"TEFF": teff, "LOGG": logg, "FE_H": rng.uniform(-1.5, 0.4, n)})


def _observe(model: OtherSpectrumModel, star, rng) -> tuple[float, np.ndarray, np.ndarray]:
    """(S/N, flux, err) with a noise floor, photon noise and an undeclared ripple."""
    snr = float(10 ** rng.uniform(np.log10(30), np.log10(300)))
    scale = 10 ** rng.uniform(2.0, 3.5)
    clean = scale * model.flux(star.TEFF, star.LOGG, star.FE_H, rng.exponential(0.2))
    gaps = gap_mask()
    med = np.median(clean[~gaps])
    floor = 0.5 * med / snr
    sigma = np.sqrt(floor**2 + (0.75 * med / snr) ** 2 * np.clip(clean / med, 1e-3, None))
    phase, period = rng.uniform(0, 2 * np.pi), rng.uniform(300.0, 900.0)
    ripple = 1 + 0.01 * np.sin(2 * np.pi * np.arange(N_PIXELS) / period + phase)
    flux = clean * ripple + sigma * rng.standard_normal(N_PIXELS)
    return snr, np.where(gaps, 0.0, flux), np.where(gaps, 1e10, sigma)


def make_other_survey(out_dir: str, n: int, seed: int = 0) -> pd.DataFrame:
    """Write n apStar-layout files and labels.csv (APOGEE_ID, TEFF, LOGG, FE_H, SNR, FILE) to
    ``out_dir`` (made if needed); files already there are kept."""
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    table = draw_other_labels(n, rng)
    model = OtherSpectrumModel()
    rows = []
    for i, star in enumerate(table.itertuples(index=False)):
        apogee_id = f"2MOTHER{seed:03d}{i:06d}"
        name = f"apStar-other-{apogee_id}.fits"
        snr, flux, err = _observe(model, star, rng)
        path = os.path.join(out_dir, name)
        if not os.path.exists(path):
            _write(path, apogee_id, snr, flux, err)
        rows.append({"APOGEE_ID": apogee_id, "SNR": snr, "FILE": name})
    out = pd.concat([pd.DataFrame(rows), table], axis=1)
    out.to_csv(os.path.join(out_dir, "labels.csv"), index=False, float_format="%.6g")
    return out


def _write(path: str, apogee_id: str, snr: float, flux, err) -> None:
    primary = fits.PrimaryHDU()
    primary.header["OBJID"], primary.header["SNR"] = apogee_id, snr
    hdus = [primary]
    for data in (flux.astype(">f4"), err.astype(">f4"), np.zeros(N_PIXELS, ">i2")):
        hdu = fits.ImageHDU(data)
        hdu.header["CRVAL1"], hdu.header["CDELT1"] = CRVAL1, CDELT1
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(path + ".tmp", overwrite=True)
    os.replace(path + ".tmp", path)
