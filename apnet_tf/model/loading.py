"""Loading a model to predict with: a run folder, a .keras file, an exported SavedModel or a
TFLite file, each as the runtime that runs it (``runtime.Runtime``), with its normalisation and
sigma calibration where it carries them, and the sha256 of the bytes it was loaded from."""

from __future__ import annotations

import hashlib
import os

from apnet_tf.constants import NORMALIZATION, RUN_RECORD
from apnet_tf.errors import ApnetError
from apnet_tf.io.files import content_hash
from apnet_tf.io.folders import marker
from apnet_tf.model.calibration import CALIBRATION
from apnet_tf.model.keras_runtime import load_keras_runtime
from apnet_tf.model.novelty import NOVELTY
from apnet_tf.model.runtime import Runtime
from apnet_tf.model.saved_model_runtime import load_saved_model, version_folder
from apnet_tf.model.tflite_runtime import load_tflite

__all__ = ["load_model", "model_files", "files_sha256"]


def load_model(path: str, calibration: bool = True) -> Runtime:
    """Load a run folder (best.keras, normalization.json, calibration.json) or a .keras file
    (``keras_runtime``), an exported SavedModel (its version folder, or the folder of versions:
    the newest; ``saved_model_runtime``), or a .tflite file (``tflite_runtime``).
    ``calibration=False`` leaves any calibration.json unread.

    The runtime's ``sha256`` is that of the files it was loaded from (``model_files``), hashed
    before and after loading: a model that changed meanwhile is refused, so a catalog's
    MODELSHA is always the model that made it. (Writers of the package hold its lock, which a
    job that reads the model takes: ``folders.reading_lock``.)

    Raises:
        ApnetError: nothing loadable at ``path``, a YSO photometric network, an invalid
            calibration.json, or a model that changed while it was loaded.
    """
    _refuse_yso_network(path)
    files = model_files(path, calibration)
    before = files_sha256(files)
    runtime = _load(path, calibration)
    if files_sha256(files) != before:
        raise ApnetError(f"{path}: changed while it was being loaded (another process is "
                         "writing it); load it again once it is written")
    runtime.sha256 = before
    return runtime


def _load(path: str, calibration: bool) -> Runtime:
    if path.endswith(".tflite"):
        return load_tflite(path, calibration)
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "best.keras")):
        return load_saved_model(path, calibration)
    if os.path.isdir(path) or (path.endswith(".keras") and os.path.exists(path)):
        return load_keras_runtime(path, calibration)
    raise ApnetError(f"{path}: not a run folder, .keras, SavedModel or .tflite file")


def _refuse_yso_network(path: str) -> None:
    """The YSO photometric network (yso-train) is not a spectroscopic model: one line saying
    so, instead of Keras' "could not be deserialized" or "not a SavedModel"."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    if (marker(folder) or {}).get("kind") == "yso_net":
        raise ApnetError(f"{path}: the YSO photometric network (apnet-tf yso-train), which "
                         "takes photometry, not spectra; give it to apnet-tf yso-labels, and "
                         "infer a run folder, an export or a .tflite file")


def model_files(path: str, calibration: bool = True) -> list[str]:
    """The files ``load_model`` reads at ``path``: a run folder's best.keras,
    normalization.json, run.json, novelty.json and (unless ``calibration`` is False)
    calibration.json; a .keras file; a .tflite file with its export's metadata, novelty
    reference and calibration beside it; a
    SavedModel version folder (the newest of a folder of versions). Those that exist."""
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "best.keras")):
        names = ["best.keras", NORMALIZATION, RUN_RECORD, NOVELTY] + (
            [CALIBRATION] if calibration else [])
        files = [os.path.join(path, n) for n in names]
    elif path.endswith(".tflite"):
        beside = ["export_metadata.json", NOVELTY] + ([CALIBRATION] if calibration else [])
        files = [path] + [os.path.join(os.path.dirname(path), n) for n in beside]
    elif os.path.isdir(path):
        try:
            files = [version_folder(path)]
        except ApnetError:
            files = []
    else:
        files = [path]
    return [f for f in files if os.path.exists(f)]


def files_sha256(files: list[str]) -> str:
    """sha256 of one file's bytes (what sha256sum prints), or of several files and folders
    (each name, then its ``content_hash``)."""
    if len(files) == 1 and os.path.isfile(files[0]):
        return content_hash(files[0])
    h = hashlib.sha256()
    for f in files:
        h.update(f"{os.path.basename(f)}\0{content_hash(f)}\0".encode())
    return h.hexdigest()
