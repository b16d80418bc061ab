"""APOGEE Net III's and BOSS Net's Monte Carlo, as their authors' code runs it: one
implementation for the Keras model, the SavedModel signatures and the TFLite file (run eagerly
around the interpreter), as ``uncertainty.monte_carlo`` is for the other networks.

For each star, ``mc`` draws of N(0, 1) from the package's stateless generator (``uncertainty``:
star ``i`` of a call takes ``star_seed(seed, i)``, so the same seed gives the same draws on
every path) are scaled by the error and added to the flux on the **native** pixels; each draw
then goes through the whole preprocessing again: BOSS spectra are resampled onto BOSS Net's grid
(``resample_rows``: ``np.interp``'s arithmetic, in float64, NaN pixels left out), then ln(max(.,
1e-6)) is clipped at the 95th percentile + 1, over the star's whole stack of draws (astra) or
per draw (the authors' repository, "hutchresearch"). The network gives standardised outputs,
de-standardised in float32 as the authors do, and the statistics are taken there, in log10
Teff: the value is the un-noised pass, the sigma the std of the draws (ddof 1), Teff's in K
as astra's is (10**log10 Teff x std(log10 Teff) x ln 10), P50 the lower median (torch.median),
P16 and P84 linear percentiles, and the mean that of the draws in the package's units.

Pixels marked in ``bad`` get no noise (``infer --mc-bad-pixels fill``); the authors' code marks
none. The exported signatures mark them with an infinite error.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from apnet_tf.constants import BOSSNET_MC_ROWS_PER_CHUNK
from apnet_tf.io.boss_grid import boss_grid
from apnet_tf.model.bossnet import log_flux_clip, standardised_network
from apnet_tf.model.uncertainty import check_mc, draw_seed, standard_normal, star_seed

__all__ = ["MC_STYLES", "SUMMARIES", "resample_rows", "bossnet_monte_carlo",
           "BossNetMonteCarlo"]

#: The Monte Carlo styles of this module: the pipelines of the networks' authors.
MC_STYLES = ("astra", "hutchresearch")
#: What ``bossnet_monte_carlo`` returns, each (B, P) in the package's order and units.
SUMMARIES = ("value", "mean", "std", "p16", "p50", "p84")
_LN10 = float(np.log(10.0))


def resample_rows(rows: tf.Tensor, wavelength: tf.Tensor, grid=None) -> tf.Tensor:
    """Rows of native flux onto BOSS Net's grid, as ``np.interp`` does it (``io.boss_grid.
    resample_boss``): in float64, a pixel whose flux or wavelength is NaN left out, the end
    values beyond the ends, an exact wavelength taking its pixel's value, rounded to float32.
    rows, wavelength: (R, L) float32 (wavelengths increasing) -> (R, G); a row with no pixel
    left is all NaN."""
    grid = tf.constant(boss_grid() if grid is None else grid, tf.float64)
    x = tf.cast(rows, tf.float64)
    w = tf.cast(wavelength, tf.float64)
    valid = ~tf.math.is_nan(x) & ~tf.math.is_nan(w)
    key = tf.where(valid, w, tf.constant(np.inf, tf.float64))
    order = tf.argsort(key, axis=-1, stable=True)  # the kept pixels first, in their order
    xp = tf.gather(key, order, batch_dims=1)
    fp = tf.gather(tf.where(valid, x, tf.zeros_like(x)), order, batch_dims=1)
    n = tf.reduce_sum(tf.cast(valid, tf.int32), axis=-1, keepdims=True)
    g = tf.broadcast_to(grid[None, :], tf.stack([tf.shape(x)[0], tf.shape(grid)[0]]))
    count = tf.searchsorted(xp, g, side="right")  # pixels at or below each grid point
    j = tf.clip_by_value(count - 1, 0, tf.maximum(n - 2, 0))
    j1 = tf.maximum(tf.minimum(j + 1, n - 1), 0)
    xj, xj1 = tf.gather(xp, j, batch_dims=1), tf.gather(xp, j1, batch_dims=1)
    fj, fj1 = tf.gather(fp, j, batch_dims=1), tf.gather(fp, j1, batch_dims=1)
    slope = (fj1 - fj) / (xj1 - xj)
    out = slope * (g - xj) + fj
    other = slope * (g - xj1) + fj1  # np.interp's second try where the first is NaN
    other = tf.where(tf.math.is_nan(other) & tf.equal(fj, fj1), fj, other)
    out = tf.where(tf.math.is_nan(out), other, out)
    out = tf.where(tf.equal(xj, g), fj, out)
    last = tf.gather(fp, tf.maximum(n - 1, 0), batch_dims=1)
    out = tf.where(count >= n, last, tf.where(count == 0, fp[:, :1], out))
    out = tf.where(n == 0, tf.constant(np.nan, tf.float64), out)
    return tf.cast(out, tf.float32)


def _draws(flux, err, bad, n_pixels, mc, seed, first) -> tf.Tensor:
    """The ``mc`` noisy copies of each star's native flux, star-major: (S, L) -> (S * mc, L).
    Star ``first + i`` takes the (mc, its n_pixels) normals of ``star_seed(seed, first + i)``,
    none on its padding or its ``bad`` pixels."""
    width = tf.shape(flux)[1]

    def one(i):
        n = n_pixels[i]
        eps = tf.reshape(standard_normal(star_seed(seed, first + i), mc * n), tf.stack([mc, n]))
        eps = tf.pad(eps, tf.stack([[0, 0], [0, width - n]]))
        eps = tf.where(bad[i][None, :], tf.zeros_like(eps), eps)
        return flux[i][None, :] + err[i][None, :] * eps

    x = tf.map_fn(one, tf.range(tf.shape(flux)[0]),
                  fn_output_signature=tf.TensorSpec([None, None], tf.float32))
    return tf.reshape(x, tf.stack([-1, width]))


def _physical(z: tf.Tensor, mean, std) -> tf.Tensor:
    """Standardised outputs -> physical, in the network's order, in float32 (the authors'
    ``X * std + mean`` per column)."""
    return z * tf.constant(std, tf.float32) + tf.constant(mean, tf.float32)


def _package(values: tf.Tensor, order, log_teff_fn=None) -> tf.Tensor:
    """(..., P) in the network's order (log g, log10 Teff, [Fe/H][, RV]) -> (..., P) in the
    package's (Teff K, log g, [Fe/H][, RV]); ``log_teff_fn`` maps the log10 Teff column
    (default 10**x)."""
    names = ["teff", "logg", "fe_h"] + (["rv"] if "rv" in order else [])
    cols = []
    for name in names:
        col = values[..., order.index("log_teff" if name == "teff" else name)]
        if name == "teff":
            col = (log_teff_fn or (lambda v: tf.pow(tf.constant(10.0, v.dtype), v)))(col)
        cols.append(col)
    return tf.stack(cols, axis=-1)


def _summaries(draws: tf.Tensor, plain: tf.Tensor, order) -> dict[str, tf.Tensor]:
    """(S, mc, P) physical draws and (S, P) un-noised values, network order -> the module's
    summaries, package order."""
    mc = tf.shape(draws)[1]
    center = tf.reduce_mean(draws, axis=1, keepdims=True)
    var = tf.reduce_sum(tf.square(draws - center), axis=1) / tf.cast(mc - 1, tf.float32)
    std = tf.sqrt(var)
    value = _package(plain, order)
    teff = order.index("log_teff")
    std_out = _package(std, order, lambda s: s)
    std_out = tf.concat([_LN10 * value[:, :1] * std[:, teff:teff + 1], std_out[:, 1:]], 1)
    lower = tf.gather(tf.sort(draws, axis=1), (mc - 1) // 2, axis=1)
    pct = tfp.stats.percentile(draws, [16.0, 84.0], axis=1, interpolation="linear")
    return {"value": value, "mean": tf.reduce_mean(_package(draws, order), axis=1),
            "std": std_out, "p16": _package(pct[0], order), "p50": _package(lower, order),
            "p84": _package(pct[1], order)}


def bossnet_monte_carlo(network, flux, err, bad, mc, seed, *, order, mean, std,
                        clip_together: bool, wavelength=None,
                        rows_per_chunk: int = BOSSNET_MC_ROWS_PER_CHUNK
                        ) -> dict[str, tf.Tensor]:
    """The authors' Monte Carlo (module doc) of B stars: ``SUMMARIES``, each (B, P).

    Args:
        network: log-scaled, clipped flux (M, G) -> standardised outputs (M, P), the network's
            order; a graph function, or an eager one (TFLite).
        flux, err: (B, L) native pixels (BOSS: padded with NaN after each star's pixels);
            bad: bool (B, L), pixels given no noise.
        mc: draws per star; seed: int64 (2,), the call's stateless seed.
        order, mean, std: the network's output order and de-standardisation constants.
        clip_together: one clip level over a star's draws (astra), else one per draw.
        wavelength: (B, L) the native pixels' wavelengths (BOSS Net), NaN on the padding;
            None: the pixels are the model's (APOGEE Net III).
        rows_per_chunk: at most max(mc + 1, this) rows go through the network at once.
    """
    flux = tf.convert_to_tensor(flux, tf.float32)
    err = tf.convert_to_tensor(err, tf.float32)
    bad = tf.convert_to_tensor(bad, tf.bool)
    mc = tf.convert_to_tensor(mc, tf.int32)
    b, width = tf.shape(flux)[0], tf.shape(flux)[1]
    if wavelength is None:
        n_pixels = tf.fill([b], width)
    else:
        wavelength = tf.convert_to_tensor(wavelength, tf.float32)
        n_pixels = tf.reduce_sum(tf.cast(~tf.math.is_nan(wavelength), tf.int32), axis=1)
    per_chunk = tf.maximum(1, rows_per_chunk // (mc + 1))
    n_chunks = (b + per_chunk - 1) // per_chunk

    def body(i, arrays):
        lo = i * per_chunk
        hi = tf.minimum(lo + per_chunk, b)
        noisy = _draws(flux[lo:hi], err[lo:hi], bad[lo:hi], n_pixels[lo:hi], mc, seed, lo)
        plain = flux[lo:hi]
        if wavelength is not None:
            plain = resample_rows(plain, wavelength[lo:hi])
            noisy = resample_rows(noisy, tf.repeat(wavelength[lo:hi], mc, axis=0))
        x = tf.concat([log_flux_clip(plain, 1),
                       log_flux_clip(noisy, mc if clip_together else 1)], axis=0)
        phys = _physical(network(x), mean, std)
        s = hi - lo
        draws = tf.reshape(phys[s:], tf.stack([s, mc, tf.shape(phys)[1]]))
        out = _summaries(draws, phys[:s], order)
        return i + 1, [a.write(i, out[k]) for a, k in zip(arrays, SUMMARIES)]

    arrays = [tf.TensorArray(tf.float32, size=n_chunks, infer_shape=False) for _ in SUMMARIES]
    _, arrays = tf.while_loop(lambda i, _: i < n_chunks, body, (0, arrays),
                              parallel_iterations=1)
    return {k: a.concat() for k, a in zip(SUMMARIES, arrays)}


class BossNetMonteCarlo:
    """``bossnet_monte_carlo`` of a Keras APOGEE Net III or BOSS Net model in one
    ``tf.function``: the runtime's Monte Carlo (``keras_runtime``).

    Args:
        model: ``bossnet.build_bossnet``'s model (or its bfloat16 twin).
        conventions: the network's (``bossnet_conventions.conventions``): its output order,
            constants and Monte Carlo style.
        mc: draws per star (astra: 20).
    """

    def __init__(self, model: keras.Model, conventions: dict, mc: int,
                 rows_per_chunk: int = BOSSNET_MC_ROWS_PER_CHUNK):
        self.network = standardised_network(model)
        self.n_model = int(model.input_shape[-1])
        self.conventions, self.mc = conventions, check_mc(mc)
        self.boss = conventions["arch"] == "bossnet"
        spec = tf.TensorSpec([None, None], tf.float32)
        specs = [spec, spec, tf.TensorSpec([None, None], tf.bool),
                 tf.TensorSpec([2], tf.int64)] + ([spec] if self.boss else [])
        self.rows = int(rows_per_chunk)
        self._fn = tf.function(self._graph, input_signature=specs)

    def _graph(self, flux, err, bad, seed, wavelength=None):
        conv = self.conventions
        return bossnet_monte_carlo(
            lambda x: self.network(tf.ensure_shape(x, [None, self.n_model]), training=False),
            flux, err, bad, self.mc, seed,
            order=conv["output_order"], mean=conv["mean"], std=conv["std"],
            clip_together=conv["mc"]["style"] == "astra", wavelength=wavelength,
            rows_per_chunk=self.rows)

    def __call__(self, flux, err, bad=None, seed=0, wavelength=None) -> dict[str, np.ndarray]:
        """flux, err (B, L); bad: bool (B, L) or None; seed: an int, a tuple of ints
        (``uncertainty.stateless_seed``) or None; wavelength (B, L) for BOSS Net."""
        flux = np.asarray(flux, np.float32)
        bad = np.zeros(flux.shape, bool) if bad is None else np.asarray(bad, bool)
        args = [flux, np.asarray(err, np.float32), bad, draw_seed(seed)]
        if self.boss:
            args.append(np.asarray(wavelength, np.float32))
        out = self._fn(*[tf.convert_to_tensor(a) for a in args])
        return {k: v.numpy() for k, v in out.items()}
