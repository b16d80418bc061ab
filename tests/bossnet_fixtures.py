"""Inputs shared by the APOGEE Net III / BOSS Net parity tests and bench/golden_bossnet.py, which
made the golden outputs of the authors' code in tests/golden/: seeded stand-in weights, small
synthetic BOSS ``spec-*.fits`` files and the fixed Monte Carlo draws.

Nothing here imports PyTorch; ``fixed_draws`` imports TensorFlow (it is the package's own
stateless generator, so that ``infer --mc`` with the same seed draws the same noise).

* ``seeded_state(shapes, seed)``: one array per state_dict key, each from its own generator
  (seeded by ``seed`` and the CRC-32 of the key, so the key order does not matter); convolution
  and hidden linear weights He-uniform, biases small, BatchNorm gamma in [0.8, 1.2], beta in
  [-0.1, 0.1], running statistics 0 and 1, ``pos_enc.inv_freq`` 1. ``apply_recipe`` then sets the
  BatchNorm running statistics and rescales the last layer with the numbers the golden file
  records (the golden script measured them once with the authors' class: running statistics
  over the golden inputs, and a last layer scaled so that the standardised outputs have mean 0
  and standard deviation 0.5 over them).
* ``write_boss_spec(path, k)``: synthetic spectrum k (0..3) in the SDSS spec data model: HDU 1
  a COADD table with flux, loglam, ivar, and_mask, or_mask, wdisp, sky, model (float32 / int32),
  HDU 2 a one-row SPALL table. A blackbody continuum times Gaussian absorption lines plus noise.
  Spectrum 1 has NaN flux pixels, 2 starts redward of 3800 A and has ivar = 0 pixels, 3 has
  negative flux and negative ivar pixels.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["BOSS_SPECS", "seeded_state", "apply_recipe", "write_boss_spec", "fixed_draws",
           "state_fingerprint"]

#: The synthetic BOSS files: (name, first log10 wavelength, pixels, Teff of the continuum).
BOSS_SPECS = (
    ("spec-015000-59300-4510000001.fits", 3.5523, 4648, 5800.0),
    ("spec-3586-55181-0001.fits", 3.5798, 4600, 4300.0),
    ("spec-015001-59301-4510000002.fits", 3.5900, 4500, 7400.0),
    ("spec-4055-55359-0596.fits", 3.5530, 4620, 3500.0),
)
_LINES = (3934.8, 3969.6, 4102.9, 4341.7, 4862.7, 5175.0, 5891.6, 6564.6, 8500.4, 8544.4,
          8664.5)


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(key.encode())])


def seeded_state(shapes: dict, seed: int) -> dict[str, np.ndarray]:
    """Stand-in weights for the state_dict layout ``shapes`` (key -> shape): see the module
    docstring. ``num_batches_tracked`` keys get an int64 0."""
    out = {}
    last = max((k for k in shapes if k.endswith(".weight") and k.startswith("linear_")),
               key=lambda k: int(k.split(".")[1]))
    for key, shape in shapes.items():
        rng = _rng(seed, key)
        name = key.rsplit(".", 1)[-1]
        if name == "num_batches_tracked":
            out[key] = np.zeros(shape, np.int64)
            continue
        if key == "pos_enc.inv_freq":
            value = np.ones(shape)
        elif ".bn" in key:
            value = {"weight": lambda: rng.uniform(0.8, 1.2, shape),
                     "bias": lambda: rng.uniform(-0.1, 0.1, shape),
                     "running_mean": lambda: np.zeros(shape),
                     "running_var": lambda: np.ones(shape)}[name]()
        elif name == "bias":
            value = rng.uniform(-0.01, 0.01, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            bound = np.sqrt((3.0 if key == last else 6.0) / fan_in)
            value = rng.uniform(-bound, bound, shape)
        out[key] = value.astype(np.float32)
    return out


def apply_recipe(state: dict, recipe: dict) -> dict[str, np.ndarray]:
    """``state`` with the golden file's ``running`` (key -> values) and the last layer's
    ``last_scale`` a and ``last_shift`` c (one per output): W <- a W, b <- a b + c, in float32."""
    out = dict(state)
    for key, values in recipe["running"].items():
        out[key] = np.asarray(values, np.float32).reshape(state[key].shape)
    last = max((k for k in state if k.endswith(".weight") and k.startswith("linear_")),
               key=lambda k: int(k.split(".")[1]))
    a = np.asarray(recipe["last_scale"], np.float32)
    c = np.asarray(recipe["last_shift"], np.float32)
    out[last] = (state[last] * a[:, None]).astype(np.float32)
    bias = last[: -len("weight")] + "bias"
    out[bias] = (state[bias] * a + c).astype(np.float32)
    return out


def state_fingerprint(state: dict) -> str:
    """SHA-256 of the float32 bytes of every float array, in sorted key order."""
    import hashlib

    h = hashlib.sha256()
    for key in sorted(state):
        value = np.asarray(state[key])
        if value.dtype.kind == "f":
            h.update(key.encode())
            h.update(np.ascontiguousarray(value, "<f4").tobytes())
    return h.hexdigest()


def _flux(wave: np.ndarray, teff: float, rng: np.random.Generator) -> np.ndarray:
    """A blackbody of ``teff`` scaled to about 50 at 6000 A, with absorption lines."""
    x = 1.4388e8 / (wave * teff)  # h c / (lambda k T), lambda in Angstrom
    planck = wave ** -5.0 / np.expm1(x)
    flux = 50.0 * planck / (6000.0 ** -5.0 / np.expm1(1.4388e8 / (6000.0 * teff)))
    for line in _LINES:
        depth, width = rng.uniform(0.1, 0.6), rng.uniform(1.5, 6.0)
        flux *= 1.0 - depth * np.exp(-0.5 * ((wave - line) / width) ** 2)
    return flux


def write_boss_spec(path, k: int, seed: int = 2024) -> None:
    """Write synthetic BOSS spectrum ``k`` (``BOSS_SPECS``) to ``path`` (module docstring)."""
    from astropy.io import fits

    name, start, n, teff = BOSS_SPECS[k]
    rng = np.random.default_rng([seed, k])
    loglam = (start + 1e-4 * np.arange(n)).astype(np.float32)
    wave = 10.0 ** loglam.astype(np.float64)
    model = _flux(wave, teff, rng)
    sigma = np.sqrt(np.abs(model) + 4.0) / 3.0
    flux = (model + sigma * rng.standard_normal(n)).astype(np.float32)
    ivar = (1.0 / sigma ** 2).astype(np.float32)
    if k == 1:
        flux[rng.choice(n, 6, replace=False)] = np.nan
    if k == 2:
        ivar[rng.choice(n, 50, replace=False)] = 0.0
    if k == 3:
        flux[rng.choice(n, 20, replace=False)] *= -1.0
        ivar[rng.choice(n, 4, replace=False)] *= -1.0
    ints = np.zeros(n, np.int32)
    cols = [fits.Column(name="flux", format="E", array=flux),
            fits.Column(name="loglam", format="E", array=loglam),
            fits.Column(name="ivar", format="E", array=ivar),
            fits.Column(name="and_mask", format="J", array=ints),
            fits.Column(name="or_mask", format="J", array=ints),
            fits.Column(name="wdisp", format="E", array=np.full(n, 1.1, np.float32)),
            fits.Column(name="sky", format="E", array=np.full(n, 2.0, np.float32)),
            fits.Column(name="model", format="E", array=model.astype(np.float32))]
    parts = name[:-5].split("-")
    header = fits.Header([("TELESCOP", "SDSS 2.5-M"), ("MJD", int(parts[2])),
                          ("RUN2D", "v6_1_3" if len(parts[1]) == 6 else "v5_13_2")])
    spall = fits.BinTableHDU.from_columns(
        [fits.Column(name="MJD", format="J", array=[int(parts[2])]),
         fits.Column(name="FIELD", format="J", array=[int(parts[1])]),
         fits.Column(name="CATALOGID", format="K", array=[int(parts[3])]),
         fits.Column(name="CLASS", format="6A", array=["STAR"])], name="SPALL")
    fits.HDUList([fits.PrimaryHDU(header=header),
                  fits.BinTableHDU.from_columns(cols, name="COADD"), spall]).writeto(
        path, overwrite=True)


def fixed_draws(k: int, n_pixels: int, mc: int, seed: int) -> np.ndarray:
    """The (mc, n_pixels) float32 N(0, 1) draws of star row ``k`` under the call seed ``seed``:
    ``uncertainty.standard_normal(star_seed(stateless_seed(seed), k), mc * n_pixels)``, draw
    d = elements [d * n_pixels, (d + 1) * n_pixels), as the package's Monte Carlo makes them."""
    from apnet_tf.model.uncertainty import standard_normal, star_seed, stateless_seed

    key = star_seed(stateless_seed(seed), k)
    return standard_normal(key, mc * n_pixels).numpy().reshape(mc, n_pixels)
