"""The APOGEE Net network (paper Appendix B) as a Keras functional model.

The model takes raw apStar flux, shape (B, 8575), and returns Teff (K), log g (dex) and
[Fe/H] (dex), shape (B, 3) in the order teff, logg, fe_h. Input scaling and the inverse target
standardisation (paper eq. 4) are layers inside the model, so a model loaded anywhere (Keras,
SavedModel, TFLite) needs nothing but raw flux.

``build_model(..., photometry=...)`` is the two-input network (``fit --arch anet2``): APOGEE Net
II's photometry branch (``photometry_branch``) over seven raw values, filled and z-scored inside
the model (``PhotometryStandardize``), its 64 features joined to the trunk's before fc1.
"""

from __future__ import annotations

import contextlib
import weakref

import keras
import numpy as np
import tensorflow as tf

from apnet_tf.constants import (
    CONV_FILTERS,
    CONV_KERNEL,
    DENSE_UNITS,
    INPUT_SCALINGS,
    N_PIXELS,
    PAPER_DROPOUT,
    PHOTOMETRY_UNITS,
    PRECISIONS,
)
from apnet_tf.errors import ApnetError, first_line
from apnet_tf.io.files import atomic_path
from apnet_tf.io.photometry import FILL_LIMIT
from apnet_tf.model.precision import computing_in

__all__ = [
    "FluxScaling", "Destandardize", "PhotometryStandardize", "build_model", "check_target_stats",
    "conv_trunk",
    "photometry_branch", "model_photometry", "takes_photometry", "model_precision",
    "with_precision", "flatten_length", "MaskedStandardizedMSE", "paper_torch_parameter_count",
    "target_stats", "predictor", "save_model_atomic", "standardized_mse",
]


@keras.saving.register_keras_serializable(package="apnet_tf")
class FluxScaling(keras.layers.Layer):
    """Per-spectrum flux scaling: (B, 8575) -> (B, 8575).

    "mean" divides by the mean ``|flux|`` over non-zero pixels (bad pixels are 0 in apStar files)
    and subtracts 1, so spectra of any brightness share one scale while the continuum shape, which
    carries Teff and extinction, survives.
    """

    def __init__(self, mode: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in INPUT_SCALINGS:
            raise ValueError(f"input scaling {mode!r} is not one of {INPUT_SCALINGS}")
        self.mode = mode

    def call(self, flux):
        if self.mode == "none":
            return flux
        nonzero = tf.cast(tf.not_equal(flux, 0.0), flux.dtype)
        count = tf.maximum(tf.reduce_sum(nonzero, axis=-1, keepdims=True), 1.0)
        scale = tf.reduce_sum(tf.abs(flux), axis=-1, keepdims=True) / count
        # An all-zero spectrum stays all zero instead of turning into NaN.
        scale = tf.where(scale > 0, scale, tf.ones_like(scale))
        return (flux / scale - 1.0) * nonzero

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="apnet_tf")
class Destandardize(keras.layers.Layer):
    """Standardised targets (B, 3) -> physical units (B, 3): z * std + mean (inverse of eq. 4)."""

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]

    def call(self, z):
        return z * tf.constant(self.std, z.dtype) + tf.constant(self.mean, z.dtype)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package="apnet_tf")
class PhotometryStandardize(keras.layers.Layer):
    """Raw photometry (B, K) -> z-scores (B, K): a value >= 98 or not finite takes its band's
    ``fill`` value first (APOGEE Net II's rule), then (x - mean) / std. ``fill``, ``mean``,
    ``std``: K values each, in the order of ``io.photometry.PHOT_COLUMNS``."""

    def __init__(self, fill, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.fill = [float(v) for v in fill]
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]

    def call(self, x):
        fill = tf.constant(self.fill, x.dtype)
        x = tf.where(x < FILL_LIMIT, x, fill)  # NaN fails x < 98 too
        x = tf.where(tf.math.is_finite(x), x, fill)
        return (x - tf.constant(self.mean, x.dtype)) / tf.constant(self.std, x.dtype)

    def get_config(self):
        return {**super().get_config(), "fill": self.fill, "mean": self.mean, "std": self.std}


def build_model(mean, std, dropout: float = PAPER_DROPOUT, input_scaling: str = "mean",
                initializer: str = "he_normal", n_pixels: int = N_PIXELS,
                precision: str = "float32", name: str = "apogee_net",
                photometry=None) -> keras.Model:
    """The Appendix B network with in-model input scaling and target de-standardisation.

    Args:
        mean, std: the train-split target mean and standard deviation, 3 values each
            (manifest ``target_stats``).
        dropout: dropout after fc1 and fc2 (paper 0.1).
        input_scaling: one of ``INPUT_SCALINGS``.
        initializer: kernel initialiser of every convolution and dense layer; "glorot_uniform" is
            the Keras default, "he_normal" keeps ReLU activations alive through 12 convolutions.
        n_pixels: input length; 8575 for apStar (tests may use less, with a matching fc1).
        precision: one of ``PRECISIONS``: the compute dtype of the convolutions and fc1, fc2.
            Input scaling, fc3 and the de-standardisation always compute in float32, and the
            weights are float32 either way.
        photometry: None, or (fill, mean, std) of ``PhotometryStandardize`` (7 values each):
            the two-input network, whose second input is raw photometry (B, 7).

    Returns:
        A keras.Model: flux (B, n_pixels) [and photometry (B, 7)] -> (B, 3) in physical units,
        teff, logg, fe_h.
    """
    check_target_stats(mean, std)
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    body = {"dtype": precision}
    flux = keras.Input(shape=(n_pixels,), name="flux", dtype="float32")
    x = FluxScaling(input_scaling, name="flux_scaling", dtype="float32")(flux)
    x = conv_trunk(x, initializer, precision)
    inputs = flux
    if photometry is not None:
        fill, phot_mean, phot_std = photometry
        phot = keras.Input(shape=(len(fill),), name="photometry", dtype="float32")
        m = PhotometryStandardize(fill, phot_mean, phot_std, name="photometry_scaling",
                                  dtype="float32")(phot)
        m = photometry_branch(m, initializer, precision)
        x = keras.layers.Concatenate(name="trunk_and_photometry", **body)([x, m])
        inputs = [flux, phot]
    for i in (1, 2):
        x = keras.layers.Dense(DENSE_UNITS, kernel_initializer=initializer, name=f"fc{i}",
                               **body)(x)
        x = keras.layers.Dropout(dropout, name=f"fc{i}_dropout", **body)(x)
        x = keras.layers.ReLU(name=f"fc{i}_relu", **body)(x)
    # bfloat16 keeps 8 significant bits: it would resolve a Teff near 5,000 K to 32 K only.
    z = keras.layers.Dense(3, name="fc3", dtype="float32")(x)
    out = Destandardize(mean, std, name="labels", dtype="float32")(z)
    return keras.Model(inputs, out, name=name)


def check_target_stats(mean, std) -> None:
    """ValueError unless ``mean`` and ``std`` are 3 values each (TARGETS order), std > 0."""
    if len(mean) != 3 or len(std) != 3 or any(s is None or not s > 0 for s in std):
        raise ValueError(f"target mean/std need 3 values each with std > 0; got {mean}, {std}")


def conv_trunk(x, initializer: str = "he_normal", precision: str = "float32"):
    """The twelve convolutions, six poolings and the flattening of Appendix B (and of the
    published Net I and II): (B, n_pixels) -> (B, 133 * 64), flattened row-major (position,
    then channel)."""
    body = {"dtype": precision}
    n_pixels = x.shape[-1]
    # Each Conv1D of Appendix B is written as a Conv2D with a (1, 3) kernel over a (1, n_pixels,
    # channels) image: the same weights and outputs, but TensorFlow fuses Conv2D + bias + ReLU
    # into one oneDNN kernel, which its Conv1D (a Conv2D between reshapes) misses (training is
    # faster, most in mixed bfloat16; bench/train.py measures the network as it is).
    x = keras.layers.Reshape((1, n_pixels, 1), name="channels", **body)(x)
    for i, filters in enumerate(CONV_FILTERS, start=1):
        x = keras.layers.Conv2D(filters, (1, CONV_KERNEL), padding="same", activation="relu",
                                kernel_initializer=initializer, name=f"conv{i}", **body)(x)
        if i % 2 == 0:
            x = keras.layers.MaxPooling2D((1, 2), name=f"pool{i // 2}", **body)(x)
    x = keras.layers.Flatten(name="flatten", **body)(x)
    return x


def photometry_branch(x, initializer: str = "glorot_uniform", precision: str = "float32"):
    """APOGEE Net II's ReLU network over the scaled photometry: (B, 7) -> (B, 64) through
    ``PHOTOMETRY_UNITS`` (ReLU on the last layer too), layers named metadata_l1 ... l5."""
    for i, units in enumerate(PHOTOMETRY_UNITS, start=1):
        x = keras.layers.Dense(units, activation="relu", kernel_initializer=initializer,
                               name=f"metadata_l{i}", dtype=precision)(x)
    return x


def takes_photometry(model: keras.Model) -> bool:
    """True for a two-input model: flux and photometry."""
    return isinstance(model.input_shape, list)


def model_photometry(model: keras.Model) -> tuple[list, list, list] | None:
    """(fill, mean, std) of a two-input model's photometry scaling (``build_model``'s
    ``photometry``), or None for a flux-only model."""
    if not takes_photometry(model):
        return None
    layer = model.get_layer("photometry_scaling")
    return list(layer.fill), list(layer.mean), list(layer.std)


def model_precision(model: keras.Model) -> str:
    """The compute precision of a model from ``build_model``: "float32" or "mixed_bfloat16"."""
    names = {layer.dtype_policy.name for layer in model.layers}
    return "mixed_bfloat16" if "mixed_bfloat16" in names else "float32"


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """The same network and weights computing in ``precision`` (the model itself if it does).

    Training may run in mixed bfloat16; what is saved and served always computes in float32.
    A model not from ``build_model`` is cloned layer by layer (``precision.computing_in``).
    """
    if model_precision(model) == precision:
        return model
    if "flux_scaling" not in {layer.name for layer in model.layers}:
        return computing_in(model, precision)  # not build_model's (fit --arch anet3)
    labels = model.get_layer("labels")
    flux_shape = model.input_shape[0] if takes_photometry(model) else model.input_shape
    twin = build_model(labels.mean, labels.std, dropout=model.get_layer("fc1_dropout").rate,
                       input_scaling=model.get_layer("flux_scaling").mode,
                       n_pixels=flux_shape[-1], precision=precision, name=model.name,
                       photometry=model_photometry(model))
    twin.set_weights(model.get_weights())
    return twin


def flatten_length(n_pixels: int = N_PIXELS) -> int:
    """Length after the six poolings: 8575 -> 133."""
    for _ in range(len(CONV_FILTERS) // 2):
        n_pixels //= 2
    return n_pixels


@keras.saving.register_keras_serializable(package="apnet_tf")
class MaskedStandardizedMSE(keras.losses.Loss):
    """MSE in standardised units over the labels that are present: the loss of paper Table 2.

    ``y_true`` is (B, 3) in physical units with NaN where a label is missing; missing labels add
    nothing to the loss, rather than being filled in. ((pred - true) / std)^2 is the paper's
    squared error on standardised targets (eq. 4) because the mean cancels. Every present label
    weighs the same, so a batch's loss is sum((pred - true)^2 / std^2) over its present labels
    divided by their number: ``evaluation.standardized_mse`` of the batch, and the paper's MSE
    when no label is missing. (Keras averages per-star values over the batch, so each star is
    given its squared errors times B / (present labels in the batch).) Over several batches Keras
    logs the mean of the batch losses, which equals ``standardized_mse`` of the whole set when
    the batches are equally complete.
    """

    def __init__(self, std, name: str = "masked_standardized_mse", **kwargs):
        super().__init__(name=name, **kwargs)
        self.std = [float(v) for v in std]

    def call(self, y_true, y_pred):
        present = tf.math.is_finite(y_true)
        diff = (y_pred - tf.where(present, y_true, y_pred)) / tf.constant(self.std, y_pred.dtype)
        sq = tf.where(present, tf.square(diff), tf.zeros_like(diff))
        n_present = tf.reduce_sum(tf.cast(present, sq.dtype))
        stars = tf.cast(tf.shape(sq)[0], sq.dtype)
        return tf.math.divide_no_nan(tf.reduce_sum(sq, axis=-1) * stars, n_present)

    def get_config(self):
        return {**super().get_config(), "std": self.std}


def paper_torch_parameter_count() -> int:
    """Parameters of the Appendix B PyTorch network with 1 input channel and 3 targets."""
    total, c_in = 0, 1
    for c_out in CONV_FILTERS:
        total += c_out * c_in * CONV_KERNEL + c_out
        c_in = c_out
    flat = CONV_FILTERS[-1] * flatten_length()
    total += flat * DENSE_UNITS + DENSE_UNITS + DENSE_UNITS * DENSE_UNITS + DENSE_UNITS
    total += DENSE_UNITS * 3 + 3
    return total


def target_stats(manifest: dict) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std), each shape (3,), from a manifest's train-split statistics."""
    stats = manifest["target_stats"]
    return np.asarray(stats["mean"], dtype=float), np.asarray(stats["std"], dtype=float)


def predictor(model: keras.Model):
    """A compiled function flux (B, 8575) -> (B, 3) for inference outside ``fit``; for a
    two-input model (flux (B, 8575), photometry (B, 7)) -> (B, 3).

    It calls the model directly (training=False) inside one ``tf.function``, which works for any
    batch size under any distribution strategy, unlike ``predict_on_batch`` under several replicas.
    """
    fn = _PREDICTORS.get(model)
    if fn is None:  # one traced function per model: a new one per call would retrace each time
        shapes = model.input_shape if takes_photometry(model) else [model.input_shape]
        fn = tf.function(lambda *x: model(list(x) if len(x) > 1 else x[0], training=False),
                         input_signature=[tf.TensorSpec([None, s[-1]], tf.float32)
                                          for s in shapes])
        _PREDICTORS[model] = fn
    return lambda *inputs: fn(*[tf.convert_to_tensor(v, tf.float32) for v in inputs]).numpy()


#: ``predictor``'s compiled function of each live model.
_PREDICTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def save_model_atomic(model: keras.Model, path: str) -> None:
    """Save a .keras file through a temporary name, so a crash never leaves half a model.

    A model that trains in mixed precision is saved as its float32 twin, so every saved model
    gives float32 results wherever it is loaded. The file holds the network, not the training
    state: without the optimizer's variables (Adam's two moments per weight would triple it;
    nothing reads them back: fine-tuning compiles anew, ``fit --resume`` has its own backup),
    and it loads uncompiled.
    """
    try:
        with atomic_path(path) as tmp, _without_optimizer(with_precision(model, "float32")) as m:
            m.save(tmp)
    except OSError as exc:  # a full disk: h5py's and zipfile's errors name only the temporary
        raise ApnetError(f"{path}: cannot write the model "
                         f"({exc.strerror or first_line(exc)})") from None


@contextlib.contextmanager
def _without_optimizer(model: keras.Model):
    """``model`` seen as uncompiled, without its optimizer, for as long as the context lasts
    (what Keras saves of it); both come back after, so training goes on."""
    compiled, optimizer = getattr(model, "compiled", False), getattr(model, "optimizer", None)
    if not compiled:
        yield model
        return
    model.optimizer, model.compiled = None, False
    try:
        yield model
    finally:
        model.optimizer, model.compiled = optimizer, compiled


def standardized_mse(pred: np.ndarray, labels: np.ndarray, std) -> float:
    """Mean of ((pred - label) / std)^2 over all present labels. pred, labels: (N, 3)."""
    z = (pred - labels) / np.asarray(std, dtype=float)
    z = z[np.isfinite(z)]
    return float(np.mean(z**2)) if z.size else float("nan")
