"""The compute precision of a network: whether this machine computes bfloat16, a Keras model's
bfloat16 twin for inference, and how ``infer --precision auto`` decides from a measured shift.

A bfloat16 twin holds the same float32 weights; its convolutions and fc1, fc2 compute in
bfloat16 (8 significant bits), while the input scaling, fc3 and the de-standardisation stay in
float32, so that the outputs come back as float32 before they are turned into physical units.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from apnet_tf.constants import (
    AUTO_MAX_SHIFT,
    AUTO_MEDIAN_SHIFT,
    INFERENCE_PRECISIONS,
    PRECISIONS,
)
from apnet_tf.errors import ApnetError

__all__ = [
    "FLOAT32_LAYERS", "bfloat16_is_native", "auto_precision", "check_inference_precision",
    "computing_in", "label_spread", "precision_shift", "auto_choice", "auto_line",
]

#: Layers that compute in float32 in every precision: the input scalings, the last dense layer
#: and the de-standardisation (the names ``build_model``, ``build_published`` and
#: ``bossnet.build_bossnet`` / ``build_trainable_anet3`` give them).
FLOAT32_LAYERS = ("flux_scaling", "photometry_scaling", "fc3", "labels", "log_flux", "position",
                  "linear6")


def bfloat16_is_native() -> bool:
    """Whether this machine computes bfloat16 in hardware.

    True for GPUs of compute capability 8.0 or newer (A100, H100) and for CPUs with AVX512_BF16 or
    AMX (Linux /proc/cpuinfo flags). Elsewhere bfloat16 is emulated and slower than float32.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return all(tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0))
                   >= (8, 0) for g in gpus)
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def auto_precision(median_shift=None, max_shift=None) -> str:
    """The one rule of ``--precision auto``, in ``fit`` and ``infer`` alike: "mixed_bfloat16"
    where this machine computes bfloat16 in hardware (``bfloat16_is_native``) and, where its
    shift on the results was measured, that shift is within the bounds of ``auto_choice``;
    "float32" otherwise.

    ``infer`` measures the shift on the job's first spectra (``inference.predict.job_precision``);
    ``fit`` has no results to measure before it trains (it validates and saves float32 weights,
    and early stopping judges the trained network), so it passes no shift.
    """
    if not bfloat16_is_native():
        return "float32"
    if median_shift is None:
        return "mixed_bfloat16"
    return auto_choice(median_shift, max_shift)


def check_inference_precision(precision: str) -> str:
    """``precision`` if it is one of ``INFERENCE_PRECISIONS``, else a one-line ApnetError."""
    if precision not in INFERENCE_PRECISIONS:
        raise ApnetError(f"--precision {precision}: choose one of "
                         f"{', '.join(INFERENCE_PRECISIONS)}")
    return precision


def computing_in(model: keras.Model, precision: str) -> keras.Model:
    """``model`` computing its forward pass in ``precision`` (one of ``PRECISIONS``): the model
    itself when it computes so already, else a clone with the same float32 weights whose
    layers, except ``FLOAT32_LAYERS`` (always float32), compute in ``precision``. Works for any
    functional model of the package (``build_model``, ``build_published``, ``bossnet``); its
    outputs are float32 either way."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    if precision == "float32" and all(layer.dtype_policy.name == "float32"
                                      for layer in model.layers):
        return model

    def clone(layer):
        config = layer.get_config()
        config["dtype"] = "float32" if layer.name in FLOAT32_LAYERS else precision
        return layer.__class__.from_config(config)

    twin = keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    return twin


def label_spread(normalization: dict | None, model=None) -> np.ndarray | None:
    """Each output's spread in its own units, (P,) in the model's output order (``TARGETS``,
    then BOSS Net's RV): the std the run normalises with (normalization.json), else that of
    the model's de-standardisation layer ("labels"; linearised for a published network's log10
    Teff); None if neither is known. Outputs that normalization.json does not list (BOSS Net's
    RV: its file holds the three labels of the catalog's range checks) take the layer's std, so
    that the spread has one entry per output column."""
    try:
        layer = np.asarray(model.get_layer("labels").std, dtype=float)
    except (AttributeError, ValueError):
        layer = None
    if not normalization or normalization.get("std") is None:
        return layer
    std = np.asarray(normalization["std"], dtype=float)
    if layer is not None and len(layer) > len(std):
        return np.concatenate([std, layer[len(std):]])
    return std


def precision_shift(reference: np.ndarray, trial: np.ndarray,
                    spread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The median and the largest ``abs(trial - reference)`` over the spectra, per label, as
    fractions of each label's spread. reference, trial: (B, 3); spread: (3,) -> two (3,).
    Rows where either is not finite are left out."""
    shift = np.abs(np.asarray(trial, float) - np.asarray(reference, float)) / spread
    shift = shift[np.isfinite(shift).all(axis=1)]
    if not len(shift):
        return np.full(3, np.nan), np.full(3, np.nan)
    return np.median(shift, axis=0), shift.max(axis=0)


def auto_choice(median_shift, max_shift, median_bound: float = AUTO_MEDIAN_SHIFT,
                max_bound: float = AUTO_MAX_SHIFT) -> str:
    """"mixed_bfloat16" when every label's median shift (fraction of its spread) is at most
    ``median_bound`` and its largest at most ``max_bound``, else "float32" (also when a shift
    is not finite: nothing was measured)."""
    median_shift, max_shift = np.asarray(median_shift, float), np.asarray(max_shift, float)
    ok = (np.isfinite(median_shift).all() and np.isfinite(max_shift).all()
          and (median_shift <= median_bound).all() and (max_shift <= max_bound).all())
    return "mixed_bfloat16" if ok else "float32"


def auto_line(choice: str, median_shift=None, max_shift=None, why: str = "") -> str:
    """The one line that says what ``auto`` chose: "auto -> mixed_bfloat16 (median shift
    0.041%, max 0.38% of spread, worst label)", or with ``why`` when nothing was measured."""
    if why:
        return f"auto -> {choice} ({why})"
    return (f"auto -> {choice} (median shift {100 * np.max(median_shift):.3f}%, max "
            f"{100 * np.max(max_shift):.2f}% of spread, worst label; bound "
            f"{100 * AUTO_MEDIAN_SHIFT:g}% and {100 * AUTO_MAX_SHIFT:g}%)")
