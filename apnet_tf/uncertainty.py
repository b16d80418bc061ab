"""Monte Carlo uncertainties (paper 3.5), summarised with TensorFlow Probability, and calibration.

Each star's flux is perturbed R times by N(0, 1) * min(err, 5 * typical error), where the typical
error is the median over the star's good pixels (the paper says "mean", but apStar errors are 1e10
at chip gaps, so a mean would explode). Bad pixels get no noise. The R realizations of a batch of B
stars run as one (B * R, 8575) batch inside one graph: no Python loop, on a CPU or a GPU alike.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from .constants import BAD_ERROR_THRESHOLD, MC_ERROR_CAP, MC_REALIZATIONS, TARGETS
from .errors import ApnetError
from .files import read_json, write_json

CALIBRATION = "calibration.json"
#: The fraction of a Gaussian within 1 sigma: the target of calibrated coverage.
ONE_SIGMA = 0.6826894921370859


def clean_errors(err: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(err, bad) for errors that come without a pixel mask. err: (B, N) -> two (B, N).

    A pixel is bad where its error is non-finite or at least 1e9; a non-finite error becomes 1e10,
    the apStar chip-gap value, so that it can never scale the noise.
    """
    err = tf.convert_to_tensor(err, tf.float32)
    finite = tf.math.is_finite(err)
    bad = ~finite | (err >= BAD_ERROR_THRESHOLD)
    return tf.where(finite, err, tf.fill(tf.shape(err), tf.constant(1e10, err.dtype))), bad


def typical_error(err: tf.Tensor, bad: tf.Tensor) -> tf.Tensor:
    """Median error over each star's good pixels. err, bad: (B, N) -> (B, 1).

    A star with no good pixel gets 0, so it is given no noise rather than noise of order 1e10.
    """
    big = tf.constant(np.inf, err.dtype)
    masked = tf.sort(tf.where(bad, big, err), axis=-1)
    n_good = tf.reduce_sum(tf.cast(~bad, tf.int32), axis=-1)
    idx = tf.maximum((n_good - 1) // 2, 0)
    med = tf.gather(masked, idx[:, None], batch_dims=1)
    return tf.where(n_good[:, None] > 0, med, tf.zeros_like(med))


def noise_scale(err: tf.Tensor, bad: tf.Tensor, cap: float = MC_ERROR_CAP) -> tf.Tensor:
    """Per-pixel noise sigma: min(err, cap * typical error), 0 at bad pixels. (B, N) -> (B, N)."""
    capped = tf.minimum(err, cap * typical_error(err, bad))
    return tf.where(bad, tf.zeros_like(capped), capped)


def realizations(flux: tf.Tensor, scale: tf.Tensor, r: int, seed=None) -> tf.Tensor:
    """R noisy copies of each spectrum as one batch: (B, N) -> (B * R, N), star-major."""
    b, n = tf.shape(flux)[0], tf.shape(flux)[1]
    shape = tf.stack([b, r, n])
    eps = (tf.random.stateless_normal(shape, seed=seed, dtype=flux.dtype) if seed is not None
           else tf.random.normal(shape, dtype=flux.dtype))
    noisy = flux[:, None, :] + eps * scale[:, None, :]
    return tf.reshape(noisy, tf.stack([b * r, n]))


def stateless_seed(seed) -> np.ndarray:
    """A (2,) int64 seed for ``tf.random.stateless_*`` from an int or a tuple of ints (e.g. a
    job's seed and a batch number): different tuples give independent streams."""
    ints = [int(v) % 2**64 for v in np.atleast_1d(seed)]
    return (np.random.SeedSequence(ints).generate_state(2, np.uint64) >> 1).astype(np.int64)


def summarize(samples: tf.Tensor) -> dict[str, tf.Tensor]:
    """TFP summaries of (B, R, 3) samples: mean, std, p16, p50, p84, each (B, 3)."""
    pct = tfp.stats.percentile(samples, [16.0, 50.0, 84.0], axis=1, interpolation="linear")
    return {"mean": tf.reduce_mean(samples, axis=1),
            "std": tfp.stats.stddev(samples, sample_axis=1),
            "p16": pct[0], "p50": pct[1], "p84": pct[2]}


@dataclasses.dataclass
class Calibration:
    """A per-parameter factor on sigma, fitted on the dev split, and how sigma was made."""

    scale: list[float]
    mc_dropout: bool = True
    realizations: int = MC_REALIZATIONS
    coverage_dev_raw: list[float] | None = None
    coverage_dev_calibrated: list[float] | None = None

    def save(self, path: str) -> None:
        write_json(path, {"targets": list(TARGETS), **dataclasses.asdict(self)})

    @classmethod
    def load(cls, path: str) -> Calibration:
        d = read_json(path)
        if d is None:
            raise ApnetError(f"{path}: cannot read calibration")
        d.pop("targets", None)
        return cls(**d)


class MonteCarloPredictor:
    """Monte Carlo predictions with uncertainties for a Keras model.

    Args:
        model: raw flux (B, 8575) -> (B, 3) in physical units.
        realizations: R, the noisy copies per star (paper: 100).
        error_cap: noise sigma is capped at this multiple of the typical error (paper: 5).
        mc_dropout: also run R passes with dropout on and add their spread in quadrature.
        scale: per-parameter factors on sigma (a calibration), or None.
        rows_per_call: the most (stars x R) rows in one graph call; bounds memory.
    """

    def __init__(self, model: keras.Model, realizations: int = MC_REALIZATIONS,
                 error_cap: float = MC_ERROR_CAP, mc_dropout: bool = False, scale=None,
                 rows_per_call: int = 3200):
        if realizations < 2:
            raise ApnetError(f"Monte Carlo needs at least 2 realizations, got {realizations}")
        self.model, self.r, self.cap = model, int(realizations), float(error_cap)
        self.mc_dropout = mc_dropout
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float32)
        self.stars_per_call = max(1, rows_per_call // self.r)
        # One signature for every batch size: no retracing when the last batch is smaller.
        n = model.input_shape[-1]
        spec = tf.TensorSpec([None, n], tf.float32)
        self._fn = tf.function(self._graph, input_signature=[
            spec, spec, tf.TensorSpec([None, n], tf.bool), tf.TensorSpec([2], tf.int64)])

    @classmethod
    def calibrated(cls, model: keras.Model, calibration: Calibration, **kwargs):
        return cls(model, calibration.realizations, mc_dropout=calibration.mc_dropout,
                   scale=calibration.scale, **kwargs)

    def _graph(self, flux, err, bad, seed):
        b = tf.shape(flux)[0]
        x = realizations(flux, noise_scale(err, bad, self.cap), self.r, seed=seed)
        samples = tf.reshape(self.model(x, training=False), tf.stack([b, self.r, 3]))
        out = summarize(samples)
        if self.mc_dropout:
            repeated = tf.repeat(flux, self.r, axis=0)
            drop = tf.reshape(self.model(repeated, training=True), tf.stack([b, self.r, 3]))
            out["std_dropout"] = tfp.stats.stddev(drop, sample_axis=1)
            out["std"] = tf.sqrt(tf.square(out["std"]) + tf.square(out["std_dropout"]))
        return out

    def __call__(self, flux, err, bad=None, seed=None) -> dict[str, np.ndarray]:
        """flux, err: (B, 8575); bad: bool (B, 8575) or None (then err >= 1e9 is bad); seed:
        None (fresh draws), an int or a tuple of ints (the same seed, the same draws).

        Returns mean, std, p16, p50, p84 (and std_dropout with MC dropout), each (B, 3), in
        physical units; std is multiplied by the calibration scale when there is one.
        """
        flux = np.asarray(flux, np.float32)
        err, err_bad = (t.numpy() for t in clean_errors(err))
        bad = err_bad if bad is None else np.asarray(bad, bool)
        parts = []
        for i in range(0, len(flux), self.stars_per_call):
            sl = slice(i, i + self.stars_per_call)
            key = stateless_seed((*np.atleast_1d(seed), i)) if seed is not None else \
                np.random.default_rng().integers(0, 2**62, 2)
            parts.append({k: v.numpy() for k, v in self._fn(
                tf.constant(flux[sl]), tf.constant(err[sl]), tf.constant(bad[sl]),
                tf.constant(key, tf.int64)).items()})
        out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
        if self.scale is not None and out:
            out["std"] = out["std"] * self.scale
        return out


def coverage(pred: np.ndarray, sigma: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Fraction of stars with |pred - label| < sigma, per parameter; shape (3,)."""
    out = np.full(3, np.nan)
    for k in range(3):
        ok = np.isfinite(labels[:, k]) & np.isfinite(pred[:, k]) & (sigma[:, k] > 0)
        if ok.any():
            out[k] = float(np.mean(np.abs(pred[ok, k] - labels[ok, k]) < sigma[ok, k]))
    return out


def fit_scale(pred: np.ndarray, sigma: np.ndarray, labels: np.ndarray,
              target: float = ONE_SIGMA) -> np.ndarray:
    """Per-parameter factor s such that |pred - label| < s * sigma for ``target`` of the stars."""
    out = np.ones(3)
    for k in range(3):
        ok = np.isfinite(labels[:, k]) & np.isfinite(pred[:, k]) & (sigma[:, k] > 0)
        if ok.sum() >= 5:
            out[k] = float(np.quantile(np.abs(pred[ok, k] - labels[ok, k]) / sigma[ok, k],
                                       target))
    return out
