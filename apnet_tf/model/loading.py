"""Loading a model to predict with: a run folder, a .keras file, an exported SavedModel or a
TFLite file, each as the runtime that runs it (``runtime.Runtime``), with its normalisation and
sigma calibration where it carries them."""

from __future__ import annotations

import os

from apnet_tf.errors import ApnetError
from apnet_tf.model.keras_runtime import load_keras_runtime
from apnet_tf.model.runtime import Runtime
from apnet_tf.model.saved_model_runtime import load_saved_model
from apnet_tf.model.tflite_runtime import load_tflite

__all__ = ["load_model"]


def load_model(path: str, calibration: bool = True) -> Runtime:
    """Load a run folder (best.keras, normalization.json, calibration.json) or a .keras file
    (``keras_runtime``), an exported SavedModel (its version folder, or the folder of versions:
    the newest; ``saved_model_runtime``), or a .tflite file (``tflite_runtime``).
    ``calibration=False`` leaves any calibration.json unread.

    Raises:
        ApnetError: nothing loadable at ``path``, or an invalid calibration.json.
    """
    if path.endswith(".tflite"):
        return load_tflite(path, calibration)
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "best.keras")):
        return load_saved_model(path, calibration)
    if os.path.isdir(path) or (path.endswith(".keras") and os.path.exists(path)):
        return load_keras_runtime(path, calibration)
    raise ApnetError(f"{path}: not a run folder, .keras, SavedModel or .tflite file")
