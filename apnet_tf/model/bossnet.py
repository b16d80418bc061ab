"""APOGEE Net III and BOSS Net (Sizemore et al. 2024, AJ 167, 173; hutchresearch/BOSSNet class
``BossNet``) as a Keras functional model, with the conventions of the authors' code.

* **anet3**, APOGEE Net III, the network SDSS astra runs on apStar spectra ("ANet"): raw flux
  (B, 8575), row 0 of HDU 1, -> Teff (K), log g, [Fe/H].
* **bossnet**, BOSS Net: flux resampled onto the authors' grid of 3,900 wavelengths from 3800
  to 8900 A (B, 3900) -> Teff (K), log g, [Fe/H], RV (km/s).

The authors' preprocessing is inside the model (``LogFluxClip``: NaN -> 0, ln max(flux, 1e-6),
clipped at the spectrum's 95th percentile + 1; ``PositionChannel``: sin(pixel index) as a second
channel), then their network: a Conv1d 2 -> 4 (kernel 30, padding 15, bias) + BatchNorm + ELU +
MaxPool 2, four residual blocks (4 -> 8 -> 16 -> 32 -> 64; conv kernel 30 padding 15, BN, ELU,
conv padding 14, BN, plus the input with zero channels on both sides, ELU), PyTorch's
AdaptiveAvgPool1d(1024) with its overlapping bins (``AdaptiveAveragePooling1D``), a channel-major
flatten (65,536), six Linear 1024 + ReLU and a Linear to 3 or 4 standardised outputs (log g,
log10 Teff, [Fe/H][, RV]), de-standardised with the authors' constants (``BossNetLabels``).
So a SavedModel or TFLite file takes raw flux. ``conventions(arch, convention)`` is what run.json
records: "astra" (the pipeline that made the DR19 catalogs, the default) or "hutchresearch" (the
authors' repository pipeline). ``bossnet_weights`` fills the model from the authors' state_dict.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from apnet_tf.constants import N_PIXELS, PRECISIONS
from apnet_tf.model.network import Destandardize, check_target_stats

__all__ = [
    "BOSS_ARCHS", "CONVENTIONS", "ANET3_ORDER", "ANET3_MEAN", "ANET3_STD", "BOSSNET_ORDER",
    "BOSSNET_MEAN", "BOSSNET_STD", "BOSS_GRID", "LOG_FLOOR", "CLIP_QUANTILE", "CLIP_MARGIN",
    "DIM_MULTS", "BN_EPSILON", "LogFluxClip", "PositionChannel", "ChannelZeroPad",
    "AdaptiveAveragePooling1D", "BossNetLabels", "adaptive_bins", "torch_quantile",
    "build_bossnet", "scaled_network", "standardised_network", "is_bossnet", "n_pixels_of",
    "log_flux_clip", "bossnet_trunk", "TRAINABLE_ANET3", "build_trainable_anet3",
]

BOSS_ARCHS = ("anet3", "bossnet")
#: Whose pipeline around the network: astra's (DR19) or the hutchresearch repository's.
CONVENTIONS = ("astra", "hutchresearch")
#: Network outputs, physical = z * std + mean (bossnet/stats/apogee.yaml, boss.yaml).
ANET3_ORDER = ("logg", "log_teff", "fe_h")
ANET3_MEAN = (3.2, 3.7, -0.2)
ANET3_STD = (1.2, 0.1, 0.3)
BOSSNET_ORDER = ("logg", "log_teff", "fe_h", "rv")
BOSSNET_MEAN = (3.9, 3.8, -0.4, -7.4)
BOSSNET_STD = (0.9, 0.1, 0.5, 60.9)
#: BOSS Net's wavelength grid: torch.linspace(3800, 8900, 3900) in float32, Angstrom.
BOSS_GRID = (3800.0, 8900.0, 3900)
#: ln(max(flux, LOG_FLOOR)), then clipped at the CLIP_QUANTILE quantile + CLIP_MARGIN.
LOG_FLOOR = 1e-6
CLIP_QUANTILE = 0.95
CLIP_MARGIN = 1.0
#: model_args.yaml of both weights: model_dim 4 times these; kernel 30, pool 1024, 6 linear.
DIM_MULTS = (1, 2, 4, 8, 16)
_MODEL_DIM, _KERNEL, _POOL, _N_LINEAR, _LINEAR = 4, 30, 1024, 6, 1024
BN_EPSILON = 1e-5
#: The name of the model ``build_trainable_anet3`` builds (``fit --arch anet3``).
TRAINABLE_ANET3 = "apogee_net3_fit"
_BN_MOMENTUM = 0.9  # Keras's momentum is 1 - PyTorch's (0.1)


def torch_quantile(rows: tf.Tensor, q: float) -> tf.Tensor:
    """``torch.quantile(row, q)`` (linear) of each row, as PyTorch computes it: rank =
    float32(q) * (n - 1) in float32, then its lerp of the two neighbouring sorted values (to
    the last bit: PyTorch's lerp is a fused multiply-add). (B, n) -> (B, 1); n static, or a
    tensor (astra's Monte Carlo: n = the draws x the pixels)."""
    n = rows.shape[-1]
    if n is None:
        return _dynamic_quantile(rows, q)
    rank = np.float32(q) * np.float32(n - 1)
    below = int(np.floor(rank))
    weight = np.float32(rank - np.float32(below))
    k = n - below  # the values at sorted positions below and below + 1 are the k, k-1 largest
    top = tf.math.top_k(rows, k=k, sorted=True).values
    lo = top[:, k - 1:k]
    hi = top[:, k - 2:k - 1] if k >= 2 else lo
    if weight < 0.5:
        return lo + weight * (hi - lo)
    return hi - (hi - lo) * (np.float32(1.0) - weight)


def _dynamic_quantile(rows: tf.Tensor, q: float) -> tf.Tensor:
    """``torch_quantile`` for rows whose length is known only when the graph runs."""
    n = tf.shape(rows)[-1]
    rank = tf.constant(np.float32(q)) * tf.cast(n - 1, tf.float32)
    below = tf.floor(rank)
    weight = rank - below
    k = n - tf.cast(below, tf.int32)
    top = tf.math.top_k(rows, k=k, sorted=True).values
    lo = tf.gather(top, [k - 1], axis=1)
    hi = tf.gather(top, [tf.maximum(k - 2, 0)], axis=1)
    return tf.where(weight < 0.5, lo + weight * (hi - lo), hi - (hi - lo) * (1.0 - weight))


def log_flux_clip(flux: tf.Tensor, group=1) -> tf.Tensor:
    """The authors' flux scaling of ``LogFluxClip``: (B, L) -> (B, L), the clip level taken over
    each ``group`` consecutive rows (an int, or a scalar tensor: astra's Monte Carlo clips the
    draws of a star together, and their number is an input of an exported model)."""
    x = tf.where(tf.math.is_nan(flux), tf.zeros_like(flux), flux)
    x = tf.math.log(tf.maximum(x, tf.constant(LOG_FLOOR, x.dtype)))
    if isinstance(group, int) and x.shape[-1] is not None:
        width = group * int(x.shape[-1])
    else:
        width = group * tf.shape(x)[-1]
    rows = tf.reshape(x, tf.stack([-1, width]) if tf.is_tensor(width) else [-1, width])
    limit = torch_quantile(rows, CLIP_QUANTILE) + CLIP_MARGIN
    out = tf.reshape(tf.minimum(rows, limit), tf.shape(x))
    out.set_shape(flux.shape)
    return out


@keras.saving.register_keras_serializable(package="apnet_tf")
class LogFluxClip(keras.layers.Layer):
    """The authors' flux scaling: (B, L) -> (B, L). NaN -> 0, ln(max(flux, 1e-6)), then
    clipped above at the 95th percentile (``torch_quantile``) + 1 of each group of ``group``
    consecutive rows: 1, a spectrum's own (both codes' plain pass); R, the R draws of one star
    taken together (astra's Monte Carlo). +-inf stay: +inf ends at the clip level."""

    def __init__(self, group: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.group = int(group)

    def call(self, flux):
        return log_flux_clip(flux, self.group)

    def get_config(self):
        return {**super().get_config(), "group": self.group}


@keras.saving.register_keras_serializable(package="apnet_tf")
class PositionChannel(keras.layers.Layer):
    """(B, L) -> (B, L, 2): [the input, sin(float32(i * inv_freq))] for pixel i, the authors'
    one-channel PositionalEncoding1D (inv_freq is its state_dict buffer, 1.0)."""

    def __init__(self, inv_freq: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.inv_freq = float(inv_freq)

    def call(self, x):
        n = int(x.shape[-1])
        arg = np.arange(n, dtype=np.float32) * np.float32(self.inv_freq)
        pos = tf.constant(np.sin(arg.astype(np.float64)).astype(np.float32), x.dtype)
        return tf.stack([x, tf.broadcast_to(pos, tf.shape(x))], axis=-1)

    def get_config(self):
        return {**super().get_config(), "inv_freq": self.inv_freq}


@keras.saving.register_keras_serializable(package="apnet_tf")
class ChannelZeroPad(keras.layers.Layer):
    """(B, L, C) -> (B, L, before + C + after): the residual blocks' shortcut, zero channels on
    both sides (PyTorch's F.pad of the transposed input)."""

    def __init__(self, before: int, after: int, **kwargs):
        super().__init__(**kwargs)
        self.before, self.after = int(before), int(after)

    def call(self, x):
        return tf.pad(x, [[0, 0], [0, 0], [self.before, self.after]])

    def get_config(self):
        return {**super().get_config(), "before": self.before, "after": self.after}


def adaptive_bins(length: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of PyTorch's AdaptiveAvgPool1d bins: floor(i L / n), ceil((i + 1) L / n)."""
    i = np.arange(size, dtype=np.int64)
    return (i * length) // size, -((-(i + 1) * length) // size)


@keras.saving.register_keras_serializable(package="apnet_tf")
class AdaptiveAveragePooling1D(keras.layers.Layer):
    """PyTorch's AdaptiveAvgPool1d, exactly, on channels-last input: (B, L, C) -> (B, size, C).
    Bin i averages positions [floor(i L / size), ceil((i + 1) L / size)), which overlap when L
    is not a multiple of size; each bin is summed in order and divided by its width, as the
    PyTorch CPU kernel does. L must be static."""

    def __init__(self, output_size: int, **kwargs):
        super().__init__(**kwargs)
        self.output_size = int(output_size)

    def call(self, x):
        start, end = adaptive_bins(int(x.shape[1]), self.output_size)
        width = end - start
        total = None
        for k in range(int(width.max())):  # a bin's k-th position, or nothing beyond its end
            g = tf.gather(x, np.minimum(start + k, end - 1), axis=1)
            if k >= int(width.min()):
                g = tf.where(tf.constant((k < width)[None, :, None]), g, tf.zeros_like(g))
            total = g if total is None else total + g
        return total / tf.constant(width[None, :, None].astype(np.float32), x.dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_size, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


@keras.saving.register_keras_serializable(package="apnet_tf")
class BossNetLabels(keras.layers.Layer):
    """The network's standardised outputs (B, P) in ``order`` -> (B, P) physical values: Teff
    (K), log g, [Fe/H] and, with an "rv" column, RV (km/s). z * std + mean per column, then
    10**x for log_teff. ``mean`` / ``std`` are the same in the output order and linear units
    (Teff: 10**mean and ln 10 * 10**mean * std), what the package reads of a model."""

    def __init__(self, order, source_mean, source_std, **kwargs):
        super().__init__(**kwargs)
        self.order = [str(v) for v in order]
        self.source_mean = [float(v) for v in source_mean]
        self.source_std = [float(v) for v in source_std]
        self.names = ["teff", "logg", "fe_h"] + (["rv"] if "rv" in self.order else [])
        self.mean, self.std = [], []
        for name in self.names:
            j = self.order.index("log_teff" if name == "teff" else name)
            m, s = self.source_mean[j], self.source_std[j]
            if name == "teff":
                m, s = 10.0 ** m, float(np.log(10.0)) * 10.0 ** m * s
            self.mean.append(m)
            self.std.append(s)

    def call(self, z):
        phys = z * tf.constant(self.source_std, z.dtype) + tf.constant(self.source_mean, z.dtype)
        cols = []
        for name in self.names:
            col = phys[:, self.order.index("log_teff" if name == "teff" else name)]
            cols.append(tf.pow(tf.constant(10.0, z.dtype), col) if name == "teff" else col)
        return tf.stack(cols, axis=1)

    def get_config(self):
        return {**super().get_config(), "order": self.order, "source_mean": self.source_mean,
                "source_std": self.source_std}


def n_pixels_of(arch: str) -> int:
    """The model's input length: 8575 apStar pixels (anet3), 3900 grid points (bossnet)."""
    if arch not in BOSS_ARCHS:
        raise ValueError(f"arch {arch!r} is not one of {BOSS_ARCHS}")
    return N_PIXELS if arch == "anet3" else BOSS_GRID[2]


def _conv_bn_elu(x, filters: int, pad: tuple[int, int], name: str, bias: bool, elu=True,
                 dtype=None, initializer="glorot_uniform"):
    x = keras.layers.ZeroPadding1D(pad, name=f"{name}_pad", dtype=dtype)(x)
    x = keras.layers.Conv1D(filters, _KERNEL, use_bias=bias, kernel_initializer=initializer,
                            name=f"{name}_conv", dtype=dtype)(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=_BN_MOMENTUM,
                                        name=f"{name}_bn", dtype=dtype)(x)
    return keras.layers.ELU(name=f"{name}_elu", dtype=dtype)(x) if elu else x


def _res_block(x, k: int, c_in: int, c_out: int, **layer):
    half = _KERNEL // 2
    y = _conv_bn_elu(x, c_out, (half, half), f"res{k}_1", bias=False, **layer)
    y = _conv_bn_elu(y, c_out, (half - 1, half - 1), f"res{k}_2", bias=False, elu=False,
                     **layer)
    short = ChannelZeroPad((c_out - c_in) // 2, c_out - c_in - (c_out - c_in) // 2,
                           name=f"res{k}_shortcut", dtype=layer.get("dtype"))(x)
    y = keras.layers.Add(name=f"res{k}_add", dtype=layer.get("dtype"))([y, short])
    return keras.layers.ELU(name=f"res{k}_elu", dtype=layer.get("dtype"))(y)


def bossnet_trunk(x, inv_freq: float = 1.0, pool_size: int = _POOL, linear_dim: int = _LINEAR,
                  dtype=None, initializer: str = "glorot_uniform"):
    """The network between the log-scaled flux and its last Linear: (B, L) -> (B,
    ``linear_dim``), the output of the sixth Linear + ReLU. ``dtype``: the layers' Keras dtype
    policy (None: the global one); ``initializer``: of every convolution and Linear kernel."""
    layer = {"dtype": dtype, "initializer": initializer}
    x = PositionChannel(inv_freq, name="position", dtype=dtype)(x)
    dims = [_MODEL_DIM * m for m in DIM_MULTS]
    x = _conv_bn_elu(x, dims[0], (_KERNEL // 2, _KERNEL // 2), "first", bias=True, **layer)
    x = keras.layers.MaxPooling1D(2, name="first_pool", dtype=dtype)(x)
    for k, (c_in, c_out) in enumerate(zip(dims[:-1], dims[1:])):
        x = _res_block(x, k, c_in, c_out, **layer)
    x = AdaptiveAveragePooling1D(pool_size, name="adapt_pool", dtype=dtype)(x)
    x = keras.layers.Permute((2, 1), name="channel_major", dtype=dtype)(x)  # PyTorch's (C, n)
    x = keras.layers.Flatten(name="flatten", dtype=dtype)(x)
    for i in range(_N_LINEAR):
        x = keras.layers.Dense(linear_dim, activation="relu", kernel_initializer=initializer,
                               name=f"linear{i}", dtype=dtype)(x)
    return x


def build_bossnet(arch: str = "anet3", inv_freq: float = 1.0, n_pixels: int | None = None,
                  pool_size: int = _POOL, linear_dim: int = _LINEAR) -> keras.Model:
    """The Keras twin of the authors' BossNet (weights glorot / zeros; ``bossnet_weights``
    fills them). anet3: flux (B, 8575) -> (B, 3) Teff, log g, [Fe/H]; bossnet: flux on the
    grid (B, 3900) -> (B, 4) with RV. ``n_pixels``, ``pool_size`` and ``linear_dim`` change the
    authors' sizes (tests, small models). Layers are named for the state_dict keys they hold."""
    n_pixels = n_pixels or n_pixels_of(arch)
    flux = keras.Input(shape=(n_pixels,), name="flux", dtype="float32")
    x = LogFluxClip(name="log_flux")(flux)
    x = bossnet_trunk(x, inv_freq, pool_size, linear_dim)
    order, mean, std = ((ANET3_ORDER, ANET3_MEAN, ANET3_STD) if arch == "anet3"
                        else (BOSSNET_ORDER, BOSSNET_MEAN, BOSSNET_STD))
    z = keras.layers.Dense(len(order), name=f"linear{_N_LINEAR}")(x)
    out = BossNetLabels(order, mean, std, name="labels")(z)
    return keras.Model(flux, out, name=f"apogee_{arch}" if arch == "anet3" else arch)


def build_trainable_anet3(mean, std, initializer: str = "he_normal",
                          precision: str = "float32", n_pixels: int = N_PIXELS,
                          pool_size: int = _POOL, linear_dim: int = _LINEAR) -> keras.Model:
    """APOGEE Net III's network to train here (``fit --arch anet3``): the layers of
    ``build_bossnet("anet3")``, named alike, with the package's target convention in place of
    the authors' (``BossNetLabels``): the last Linear gives the three targets standardised with
    the train split's ``mean`` and ``std`` (TARGETS order: Teff in K, log g, [Fe/H]; manifest
    ``target_stats``), which ``network.Destandardize`` turns back, as in ``network.build_model``.

    ``precision`` (``PRECISIONS``) is the compute dtype of the layers between the log scaling
    and the last Linear; the log scaling (its 95th percentile would not survive bfloat16's 8
    bits), the last Linear and the de-standardisation compute in float32, and BatchNorm
    computes its statistics in float32 in either precision (Keras upcasts). No dropout: the
    authors' network has none. flux (B, n_pixels) -> (B, 3)."""
    check_target_stats(mean, std)
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    flux = keras.Input(shape=(n_pixels,), name="flux", dtype="float32")
    x = LogFluxClip(name="log_flux", dtype="float32")(flux)
    x = bossnet_trunk(x, pool_size=pool_size, linear_dim=linear_dim, dtype=precision,
                      initializer=initializer)
    z = keras.layers.Dense(len(ANET3_ORDER), name=f"linear{_N_LINEAR}", dtype="float32")(x)
    out = Destandardize(mean, std, name="labels", dtype="float32")(z)
    return keras.Model(flux, out, name=TRAINABLE_ANET3)


def scaled_network(model: keras.Model) -> keras.Model:
    """The network after ``LogFluxClip``: log-scaled, clipped flux (B, L) -> labels, sharing
    the model's layers. astra's Monte Carlo clips a star's draws together
    (``LogFluxClip(group=R)``) before this."""
    return keras.Model(model.get_layer("position").input, model.output,
                       name=f"{model.name}_scaled")


def standardised_network(model: keras.Model) -> keras.Model:
    """The network between the authors' preprocessing and their de-standardisation:
    log-scaled, clipped flux (B, L) -> (B, P) standardised outputs in the network's own order
    (``BossNetLabels.order``), sharing the model's layers. The Monte Carlo takes its statistics
    there, in log10 Teff, as the authors do."""
    return keras.Model(model.get_layer("position").input, model.get_layer("labels").input,
                       name=f"{model.name}_standardised")


def is_bossnet(model) -> bool:
    """Whether a Keras model is ``build_bossnet``'s (APOGEE Net III or BOSS Net)."""
    try:
        return isinstance(model.get_layer("labels"), BossNetLabels)
    except ValueError:
        return False
