"""Monte Carlo uncertainties (paper 3.5), summarised with TensorFlow Probability.

Each star's flux is perturbed ``mc`` times by N(0, 1) * min(err, 5 * typical error), where the
typical error is the median over the star's good pixels (the paper says "mean", but apStar errors
are 1e10 at chip gaps, so a mean would explode). Bad pixels get no noise. ``monte_carlo`` is the
one implementation: the Keras path runs it in a ``tf.function``, the exported SavedModel signature
is the same function, and the TFLite path runs it eagerly around the interpreter. It cuts a batch
into chunks of at most ``MC_ROWS_PER_CHUNK`` rows (a ``tf.while_loop``, one chunk at a time), so
memory does not grow with the batch, and draws each star's noise from a stateless generator seeded
by the call's seed and the star's row, so every path gives the same draws for the same seed.

``style`` selects whose Monte Carlo it is (``MC_STYLES``): "apnet", the package's own (above);
"anet1" and "anet2", the published networks' own pipelines: sigma = err, except err == 1e10 pixels
get the flux value itself, clipped at 5x the median err over all pixels (1e10 ones included, taken
before the replacement), no pixel mask. anet1 (astra): draw 0 unperturbed, value and sigma = mean
and std (ddof 0) of the draws. anet2 (ApogeeNet2): value = the lower median of the draws, sigma =
their std (ddof 1); Teff is 10**log Teff per draw (inside the model).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from apnet_tf.constants import BAD_ERROR_THRESHOLD, MC_DRAWS, MC_ERROR_CAP, MC_ROWS_PER_CHUNK
from apnet_tf.errors import ApnetError

__all__ = [
    "SUMMARIES", "clean_errors", "mask_into_errors", "kth_smallest", "typical_error",
    "noise_scale", "star_seed", "noisy_draws", "standard_normal", "stateless_seed", "draw_seed",
    "summarize",
    "monte_carlo",
    "MonteCarloPredictor", "check_mc", "check_mc_dropout", "MC_STYLES", "published_noise_scale"
]

#: The summaries ``monte_carlo`` returns, each (B, 3). "value" is the style's reported value
#: (the mean, or Net II's median); "std" its sigma.
SUMMARIES = ("value", "mean", "std", "p16", "p50", "p84")
#: Whose Monte Carlo: the package's (paper 3.5), APOGEE Net I's (astra), APOGEE Net II's.
MC_STYLES = ("apnet", "anet1", "anet2")
_BAD_ERROR = 1e10


def clean_errors(err, bad=None) -> tuple[tf.Tensor, tf.Tensor]:
    """(err, bad) ready for ``monte_carlo``. err: (B, N); bad: bool (B, N) or None -> two (B, N).

    A pixel is bad where the mask says so, or where its error is non-finite or at least 1e9; a
    non-finite error becomes 1e10, the apStar chip-gap value, so that it can never scale the noise.
    The exported signatures take no mask: setting err to inf (or >= 1e9) at masked pixels is the
    same thing (``mask_into_errors``).
    """
    err = tf.convert_to_tensor(err, tf.float32)
    finite = tf.math.is_finite(err)
    from_err = ~finite | (err >= BAD_ERROR_THRESHOLD)
    bad = from_err if bad is None else from_err | tf.convert_to_tensor(bad, tf.bool)
    return tf.where(finite, err, tf.fill(tf.shape(err), tf.constant(1e10, err.dtype))), bad


def mask_into_errors(err: np.ndarray, bad: np.ndarray | None) -> np.ndarray:
    """err with inf at the pixels of a bad mask: what a model without a mask input needs."""
    err = np.asarray(err, np.float32)
    return err if bad is None else np.where(np.asarray(bad, bool), np.float32(np.inf), err)


def kth_smallest(x: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
    """The k-th smallest value (0-based) of each row, exactly: x (B, N) float32, k (B,) -> (B,).

    ``tf.sort`` (a full top-k) of 8,575 pixels per star costs more than a training step of the
    network on a CPU; this finds the same element by bisection over the order-preserving integer
    keys of the float32 bit patterns (32 rounds of compare-and-count, O(N) each).
    """
    x = tf.convert_to_tensor(x, tf.float32)
    need = tf.cast(k, tf.int32)[:, None] + 1
    # the keys of -inf and +inf: beyond them lie NaN bit patterns, which no value is <= of
    lo = tf.fill(tf.shape(need), tf.constant(-0x7F800001, tf.int32))
    hi = tf.fill(tf.shape(need), tf.constant(0x7F800000, tf.int32))
    for _ in range(32):  # the smallest key with at least k + 1 values <= its float
        # (lo + hi) // 2 without leaving int32
        mid = _shift(lo) + _shift(hi) + tf.bitwise.bitwise_and(tf.bitwise.bitwise_and(lo, hi), 1)
        count = tf.reduce_sum(tf.cast(x <= _key_to_float(mid), tf.int32), axis=-1, keepdims=True)
        enough = count >= need
        lo, hi = tf.where(enough, lo, mid + 1), tf.where(enough, mid, hi)
    # an element of the row, also where the CPU flushes denormals (they compare as 0)
    found = _key_to_float(lo)
    return tf.reduce_min(tf.where(x >= found, x, tf.constant(np.inf, tf.float32)), axis=-1)


def _key_to_float(key: tf.Tensor) -> tf.Tensor:
    """The float32 whose order-preserving integer key is ``key`` (int32): negative floats have
    all but the sign bit flipped, so that integer order is float order."""
    flip = tf.bitwise.bitwise_and(tf.bitwise.right_shift(key, 31), 0x7FFFFFFF)
    return tf.bitcast(tf.bitwise.bitwise_xor(key, flip), tf.float32)


def _shift(key: tf.Tensor) -> tf.Tensor:
    return tf.bitwise.right_shift(key, 1)


def typical_error(err: tf.Tensor, bad: tf.Tensor) -> tf.Tensor:
    """Median error over each star's good pixels (the lower middle one). err, bad: (B, N) ->
    (B, 1).

    A star with no good pixel gets 0, so it is given no noise rather than noise of order 1e10.
    """
    big = tf.constant(np.inf, err.dtype)
    n_good = tf.reduce_sum(tf.cast(~bad, tf.int32), axis=-1)
    med = kth_smallest(tf.where(bad, big, err), tf.maximum((n_good - 1) // 2, 0))[:, None]
    return tf.where(n_good[:, None] > 0, med, tf.zeros_like(med))


def noise_scale(err: tf.Tensor, bad: tf.Tensor, cap: float = MC_ERROR_CAP) -> tf.Tensor:
    """Per-pixel noise sigma: min(err, cap * typical error), 0 at bad pixels. (B, N) -> (B, N)."""
    capped = tf.minimum(err, cap * typical_error(err, bad))
    return tf.where(bad, tf.zeros_like(capped), capped)


def published_noise_scale(flux: tf.Tensor, err: tf.Tensor, cap: float = MC_ERROR_CAP,
                          ) -> tf.Tensor:
    """The published networks' per-pixel sigma: the median err over all pixels first (the lower
    middle one, as torch.median), then err == 1e10 -> the flux value, then min(., cap * median).
    (B, N) -> (B, N)."""
    middle = tf.fill(tf.shape(err)[:1], (tf.shape(err)[-1] - 1) // 2)
    med = kth_smallest(err, middle)[:, None]
    sigma = tf.where(tf.equal(err, _BAD_ERROR), flux, err)
    return tf.minimum(sigma, cap * med)


def star_seed(seed: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """The stateless seed of star ``index`` (its row in the call) under the call's ``seed``."""
    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64),
                                                    tf.cast(index, tf.int64))


def noisy_draws(flux: tf.Tensor, scale: tf.Tensor, mc, seed, first=0,
                keep_first: bool = False) -> tf.Tensor:
    """``mc`` noisy draws of each spectrum as one batch: (B, N) -> (B * mc, N), star-major.

    The noise of row ``first + i`` of a call comes from a stateless generator seeded by
    ``star_seed(seed, first + i)`` (``standard_normal``), so it does not depend on how the call is
    cut into chunks, nor on any global random state. ``keep_first``: draw 0 of each star is the
    flux itself. Each star's copies are made in one step of a loop over the stars, so that the
    steps of the noise run on a few megabytes that stay in the CPU's cache.
    """
    flux = tf.convert_to_tensor(flux, tf.float32)
    scale = tf.convert_to_tensor(scale, tf.float32)
    b, n = tf.shape(flux)[0], tf.shape(flux)[1]
    seed = tf.convert_to_tensor(seed, tf.int64)
    keep = tf.cast(tf.range(mc) > 0, tf.float32)[:, None] if keep_first else None

    def one(i):
        eps = tf.reshape(standard_normal(star_seed(seed, first + i), mc * n),
                         tf.stack([mc, n]))
        if keep is not None:
            eps = eps * keep
        return flux[i] + eps * scale[i]

    x = tf.map_fn(one, tf.range(b), fn_output_signature=tf.TensorSpec([None, None], tf.float32))
    return tf.reshape(x, tf.stack([b * mc, n]))


def standard_normal(seed, m) -> tf.Tensor:
    """m N(0, 1) draws under one stateless seed: (2,) int64 -> (m,) float32.

    They are ``tf.random.stateless_normal([m], seed)`` (Philox, then the Box-Muller transform of
    each pair of 32-bit words) to within a few float32 ulps: the words come from TensorFlow's own
    generator, but the transform runs as vectorised tensor ops, where the kernel's scalar sin,
    cos and log made the noise the largest cost of a Monte Carlo after the network itself.
    """
    pairs = (m + 1) // 2
    words = tf.random.stateless_uniform(tf.reshape(2 * pairs, [1]), seed, minval=None,
                                        maxval=None, dtype=tf.uint32)
    # The two words of a pair as one 64-bit integer (the first in the low half): the transform
    # then runs on whole tensors, with no strided slices or interleaving copies.
    pair = tf.bitcast(tf.reshape(words, [pairs, 2]), tf.uint64)
    radius = tf.sqrt(-2.0 * tf.math.log(tf.maximum(_unit(pair), 1e-7)))
    angle = np.float32(2.0 * np.pi) * _unit(tf.bitwise.right_shift(pair, _U64_32))
    lo = tf.cast(tf.bitcast(tf.sin(angle) * radius, tf.uint32), tf.uint64)
    hi = tf.cast(tf.bitcast(tf.cos(angle) * radius, tf.uint32), tf.uint64)
    eps = tf.bitcast(tf.bitwise.bitwise_or(lo, tf.bitwise.left_shift(hi, _U64_32)), tf.float32)
    return tf.reshape(eps, [2 * pairs])[:m]


_U64_32 = np.uint64(32)


def _unit(word: tf.Tensor) -> tf.Tensor:
    """The low 23 bits of each (uint64) word as a float32 uniform in [0, 1), as TensorFlow's
    generator makes one: the mantissa of a float in [1, 2), minus 1."""
    low = tf.cast(tf.bitwise.bitwise_and(word, np.uint64(0x7FFFFF)), tf.uint32)
    return tf.bitcast(tf.bitwise.bitwise_or(low, np.uint32(0x3F800000)), tf.float32) - 1.0


def stateless_seed(seed) -> np.ndarray:
    """A (2,) int64 seed for ``tf.random.stateless_*`` from an int or a tuple of ints (e.g. a
    job's seed and a batch number): different tuples give independent streams."""
    ints = [int(v) % 2**64 for v in np.atleast_1d(seed)]
    return (np.random.SeedSequence(ints).generate_state(2, np.uint64) >> 1).astype(np.int64)


def draw_seed(seed) -> np.ndarray:
    """The (2,) int64 stateless seed of one Monte Carlo call: ``stateless_seed(seed)``, or a
    fresh one for None."""
    return stateless_seed(seed) if seed is not None else \
        np.random.default_rng().integers(0, 2**62, 2)


def summarize(samples: tf.Tensor, style: str = "apnet") -> dict[str, tf.Tensor]:
    """TFP summaries of (B, mc, 3) samples: value, mean, std, p16, p50, p84, each (B, 3).

    value and std: the mean and std (ddof 0) of the draws; for "anet2" the lower median (the
    ((mc - 1) // 2)th smallest draw, as torch.median) and the std with ddof 1.
    """
    pct = tfp.stats.percentile(samples, [16.0, 50.0, 84.0], axis=1, interpolation="linear")
    out = {"mean": tf.reduce_mean(samples, axis=1),
           "std": tfp.stats.stddev(samples, sample_axis=1),
           "p16": pct[0], "p50": pct[1], "p84": pct[2]}
    out["value"] = out["mean"]
    if style == "anet2":
        mc = tf.shape(samples)[1]
        out["value"] = tf.gather(tf.sort(samples, axis=1), (mc - 1) // 2, axis=1)
        rf = tf.cast(mc, samples.dtype)
        out["std"] = out["std"] * tf.sqrt(rf / tf.maximum(rf - 1.0, 1.0))
    return out


def monte_carlo(predict, flux, err, bad, mc, seed, rows_per_chunk=MC_ROWS_PER_CHUNK,
                error_cap: float = MC_ERROR_CAP, dropout_predict=None, style: str = "apnet",
                photometry=None) -> dict[str, tf.Tensor]:
    """The one Monte Carlo of this package (paper 3.5), used by the Keras, SavedModel and TFLite
    paths alike: value, mean, std, p16, p50, p84 (and std_dropout), each (B, 3).

    Args:
        predict: rows (M, 8575) -> (M, 3) physical units; a graph function, or an eager one.
        flux, err: (B, 8575); bad: bool (B, 8575) (pixels that get no noise).
        mc: draws per star; seed: int64 (2,), the stateless seed of the whole call.
        rows_per_chunk: at most max(mc, this) rows go through ``predict`` at once, so memory
            stays bounded whatever B: the stars are cut into chunks of rows_per_chunk // mc.
        dropout_predict: optional rows -> (M, 3) with dropout on; its spread over mc passes of
            the clean flux is added in quadrature (``std_dropout``).
        style: one of ``MC_STYLES`` (module docstring); the published ones ignore ``bad``.
        photometry: (B, 7) for a two-input model: ``predict(rows, photometry rows)``; each
            star's photometry goes unperturbed with each of its draws.
    """
    flux = tf.convert_to_tensor(flux, tf.float32)
    err = tf.convert_to_tensor(err, tf.float32)
    scale = (noise_scale(err, tf.convert_to_tensor(bad), error_cap) if style == "apnet"
             else published_noise_scale(flux, err, error_cap))
    mc = tf.convert_to_tensor(mc, tf.int32)
    b = tf.shape(flux)[0]
    per_chunk = tf.maximum(1, tf.convert_to_tensor(rows_per_chunk, tf.int32) // mc)
    n_chunks = (b + per_chunk - 1) // per_chunk
    keys = SUMMARIES + (("std_dropout",) if dropout_predict is not None else ())

    def bounds(i):  # chunk i's first star and the one after its last
        return i * per_chunk, tf.minimum(i * per_chunk + per_chunk, b)

    def noisy(i):
        return _chunk_copies(flux, scale, mc, seed, i, per_chunk, n_chunks, style == "anet1")

    def body(i, x, arrays):
        lo, hi = bounds(i)
        # The next chunk's noise does not depend on this chunk's network pass, so the graph
        # runs the two side by side, on cores the network leaves idle.
        following = noisy(i + 1)
        extra = [] if photometry is None else [
            tf.repeat(tf.cast(photometry[lo:hi], tf.float32), mc, axis=0)]
        out = summarize(tf.reshape(predict(x, *extra), tf.stack([hi - lo, mc, 3])), style)
        if dropout_predict is not None:
            drop = dropout_predict(tf.repeat(flux[lo:hi], mc, axis=0), *extra)
            out["std_dropout"] = _spread(drop, hi - lo, mc)
        return i + 1, following, [a.write(i, out[k]) for a, k in zip(arrays, keys)]

    arrays = [tf.TensorArray(tf.float32, size=n_chunks, infer_shape=False) for _ in keys]
    # parallel_iterations=1: one chunk (and the next one's noise) at a time bounds the memory
    _, _, arrays = tf.while_loop(
        lambda i, *_: i < n_chunks, body, (0, noisy(0), arrays), parallel_iterations=1,
        # the pixel count stays static: a network's layers may need it (bossnet's log clip)
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, flux.shape[-1]]),
                          [tf.TensorShape(None)] * len(keys)))
    out = {k: tf.reshape(a.concat(), [-1, 3]) for k, a in zip(keys, arrays)}
    if dropout_predict is not None:
        out["std"] = tf.sqrt(tf.square(out["std"]) + tf.square(out["std_dropout"]))
    return out


def _spread(rows: tf.Tensor, n, mc) -> tf.Tensor:
    """(n * mc, 3) rows, star-major -> (n, 3): the standard deviation of each star's mc rows."""
    return tfp.stats.stddev(tf.reshape(rows, tf.stack([n, mc, 3])), sample_axis=1)


def _chunk_copies(flux, scale, mc, seed, i, per_chunk, n_chunks, keep_first: bool) -> tf.Tensor:
    """The ``mc`` noisy draws (``noisy_draws``) of the stars of chunk i, (rows, N); none (0, N)
    after the last chunk."""
    lo = i * per_chunk
    hi = tf.minimum(lo + per_chunk, tf.shape(flux)[0])
    return tf.cond(i < n_chunks, lambda: noisy_draws(flux[lo:hi], scale[lo:hi], mc, seed, lo,
                                                     keep_first=keep_first),
                   lambda: tf.zeros(tf.stack([0, tf.shape(flux)[1]])))


def _check_style(style: str) -> str:
    if style not in MC_STYLES:
        raise ApnetError(f"Monte Carlo style {style!r} is not one of {', '.join(MC_STYLES)}")
    return style


def check_mc_dropout(model: keras.Model, source: str = "this model") -> None:
    """ApnetError unless MC dropout can run on ``model``: it needs dropout layers to sample,
    and no BatchNormalization, whose training mode (the mode that turns dropout on) would
    normalise with the statistics of the batch of draws and move the running ones."""
    kinds = {type(layer).__name__ for layer in model.layers}
    if "BatchNormalization" in kinds or "Dropout" not in kinds:
        raise ApnetError(f"{source}: MC dropout needs a network with dropout layers and no "
                         "BatchNorm (APOGEE Net III's layout has BatchNorm and no dropout); "
                         "leave out --mc-dropout")


class MonteCarloPredictor:
    """Monte Carlo predictions with uncertainties for a Keras model (``monte_carlo`` in one
    ``tf.function``).

    Args:
        model: raw flux (B, 8575) -> (B, 3) in physical units.
        mc: the noisy draws per star (paper: 100).
        error_cap: noise sigma is capped at this multiple of the typical error (paper: 5).
        mc_dropout: also run mc passes with dropout on and add their spread in quadrature (the
            dropout masks come from Keras's own generator, seeded by keras.utils.set_random_seed).
        rows_per_chunk: the most (stars x mc) rows in one model call; bounds memory.
    """

    def __init__(self, model: keras.Model, mc: int = MC_DRAWS,
                 error_cap: float = MC_ERROR_CAP, mc_dropout: bool = False,
                 rows_per_chunk: int = MC_ROWS_PER_CHUNK, style: str = "apnet"):
        self.model, self.mc = model, check_mc(mc)
        if mc_dropout:
            check_mc_dropout(model)
        self.cap, self.mc_dropout, self.rows = float(error_cap), mc_dropout, int(rows_per_chunk)
        self.style = _check_style(style)
        self.two_inputs = isinstance(model.input_shape, list)
        n = (model.input_shape[0] if self.two_inputs else model.input_shape)[-1]
        spec = tf.TensorSpec([None, n], tf.float32)
        specs = [spec, spec, tf.TensorSpec([None, n], tf.bool), tf.TensorSpec([2], tf.int64)]
        if self.two_inputs:
            specs.append(tf.TensorSpec([None, model.input_shape[1][-1]], tf.float32))
        # One signature for every batch size: no retracing when the last batch is smaller.
        self._fn = tf.function(self._graph, input_signature=specs)

    def _graph(self, flux, err, bad, seed, photometry=None):
        def run(training):
            if photometry is None:
                return lambda x: self.model(x, training=training)
            return lambda x, m: self.model([x, m], training=training)

        drop = run(True) if self.mc_dropout else None
        return monte_carlo(run(False), flux, err, bad, self.mc, seed, self.rows, self.cap,
                           dropout_predict=drop, style=self.style, photometry=photometry)

    def __call__(self, flux, err, bad=None, seed=0, photometry=None) -> dict[str, np.ndarray]:
        """flux, err: (B, 8575); bad: a bool (B, 8575) pixel mask or None (see ``clean_errors``);
        seed: an int or a tuple of ints (``stateless_seed``; the same seed gives the same draws,
        whatever the global random state), or None for fresh draws; photometry: (B, 7) raw,
        for a two-input model.

        Returns value, mean, std, p16, p50, p84 (and std_dropout with MC dropout), each (B, 3),
        in physical units.
        """
        err, bad = clean_errors(err, bad)
        args = [tf.convert_to_tensor(flux, tf.float32), err, bad,
                tf.constant(draw_seed(seed), tf.int64)]
        if self.two_inputs:
            if photometry is None:
                raise ApnetError("this model takes photometry as well as flux")
            args.append(tf.convert_to_tensor(np.asarray(photometry, np.float32)))
        out = self._fn(*args)
        return {k: v.numpy() for k, v in out.items()}


def check_mc(mc) -> int:
    """``mc`` as an int, or a one-line ApnetError: a spread needs at least two draws."""
    if int(mc) < 2:
        raise ApnetError(f"Monte Carlo needs at least 2 draws, got {mc}")
    return int(mc)
