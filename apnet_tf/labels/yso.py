"""The paper's photometric network for YSO labels (section 2.3): training and saving.

Twelve inputs per star (nine bands, r*, log L, distance) go through three 1-D convolutions with
max pooling and two fully connected layers to five outputs: log10 age/yr, log10 mass/Msun,
A_V (mag), log10 Teff/K and log g (dex). Input and target standardisation are layers inside the
model, as in the spectral network, so the saved ``.keras`` file takes raw magnitudes, Rsun,
log Lsun and pc and returns physical units. ``yso_labels`` applies it to cluster members.
"""

from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from apnet_tf.errors import ApnetError, check_seed
from apnet_tf.io import folders
from apnet_tf.io.files import atomic_path, locks_output, read_json_object, write_json
from apnet_tf.labels.isochrones import (
    BANDS,
    DETECTION_LIMITS,
    WANG_CHEN_2019,
    IsochroneGrid,
    coverage_note,
    distance_modulus,
    draw_stars,
    grid_problem,
    read_isochrones,
)
from apnet_tf.model.network import Destandardize, MaskedStandardizedMSE

__all__ = [
    "FEATURES", "LOG_FEATURES", "OUTPUTS", "NETWORK_FILE", "INFO_FILE", "PAPER_N_TRAIN",
    "PhotometryScaling", "feature_matrix", "target_matrix", "build_network", "TrainResult",
    "train_network", "training_ranges", "scaling_ranges", "predict", "held_out_metrics",
    "save_network", "load_network", "yso_train"
]

#: Network inputs, in order: the nine bands, r* (Rsun), log L (Lsun) and distance (pc).
FEATURES = BANDS + ("RSTAR", "LOGL_OBS", "DIST")
#: Inputs the model takes log10 of before standardising: they span decades.
LOG_FEATURES = ("RSTAR", "DIST")
#: Network outputs, in order; the parametrisation keeps each near Gaussian-scaled.
OUTPUTS = ("LOG_AGE", "LOG_MASS", "AV", "LOGTE", "LOGG")
NETWORK_FILE = "network.keras"
INFO_FILE = "yso.json"
#: The paper's training-set size (section 2.3: "~42,000 synthetic stars").
PAPER_N_TRAIN = 42_000


@keras.saving.register_keras_serializable(package="apnet_tf")
class PhotometryScaling(keras.layers.Layer):
    """Raw inputs (B, 12) -> standardised (B, 12): log10 of the ``log_columns`` first, then
    (x - mean) / std with the training set's statistics."""

    def __init__(self, mean, std, log_columns=(), **kwargs):
        super().__init__(**kwargs)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.log_columns = [int(i) for i in log_columns]

    def call(self, x):
        if self.log_columns:
            mask = np.zeros(len(self.mean), bool)
            mask[self.log_columns] = True
            # Inputs are positive where logged (r* >= 0.5 Rsun, d > 0); the floor only guards.
            logged = tf.math.log(tf.maximum(x, 1e-6)) / np.log(10.0)
            x = tf.where(tf.constant(mask), logged, x)
        return (x - tf.constant(self.mean, x.dtype)) / tf.constant(self.std, x.dtype)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std,
                "log_columns": self.log_columns}


def feature_matrix(stars: pd.DataFrame) -> np.ndarray:
    """(N, 12) float32 network inputs in ``FEATURES`` order."""
    return stars[list(FEATURES)].to_numpy(np.float32)


def target_matrix(stars: pd.DataFrame) -> np.ndarray:
    """(N, 5) float32 targets in ``OUTPUTS`` order from drawn stars' truth columns."""
    return np.stack([np.log10(stars["AGE_MYR"] * 1e6), np.log10(stars["MASS"]), stars["AV"],
                     stars["LOGTE"], stars["LOGG"]], axis=1).astype(np.float32)


def _input_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = x.astype(np.float64)
    idx = [FEATURES.index(c) for c in LOG_FEATURES]
    x[:, idx] = np.log10(x[:, idx])
    std = x.std(axis=0)
    return x.mean(axis=0), np.where(std > 0, std, 1.0)


def build_network(x_train: np.ndarray, y_train: np.ndarray, filters=(32, 64, 64),
                  dense: int = 256) -> keras.Model:
    """The section 2.3 CNN with standardisation from the training arrays.

    Args:
        x_train: (N, 12) raw inputs; y_train: (N, 5) targets, both giving the scalings.
        filters: the three convolutions' filters (kernel 3, ReLU, each followed by MaxPool 2).
        dense: units of the first fully connected layer; the second gives the five outputs.

    Returns:
        keras.Model: (B, 12) raw inputs -> (B, 5) ``OUTPUTS`` in physical units.
    """
    mean, std = _input_stats(x_train)
    y_mean, y_std = y_train.mean(axis=0), y_train.std(axis=0)
    y_std = np.where(y_std > 0, y_std, 1.0)
    inputs = keras.Input(shape=(len(FEATURES),), name="photometry", dtype="float32")
    x = PhotometryScaling(mean, std, [FEATURES.index(c) for c in LOG_FEATURES],
                          name="scaling")(inputs)
    x = keras.layers.Reshape((len(FEATURES), 1), name="channels")(x)
    for i, n in enumerate(filters, start=1):
        x = keras.layers.Conv1D(n, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling1D(2, padding="same", name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(dense, activation="relu", name="fc1")(x)
    z = keras.layers.Dense(len(OUTPUTS), name="fc2")(x)
    out = Destandardize(y_mean, y_std, name="labels")(z)
    return keras.Model(inputs, out, name="yso_photometric_net")


@dataclasses.dataclass
class TrainResult:
    """A trained network, its held-out metrics and what went into it."""

    model: keras.Model
    metrics: dict
    info: dict


def train_network(grid: IsochroneGrid, n_train: int = PAPER_N_TRAIN, n_val: int = 4_000,
                  seed: int = 0, epochs: int = 200, patience: int = 12, batch_size: int = 256,
                  learning_rate: float = 2e-3, coefficients=None, noise: float = 0.0,
                  age_spacing: str = "linear", on_epoch=None, verbose: int = 0) -> TrainResult:
    """Draw training and held-out synthetic stars and fit the network with early stopping.

    Early stopping watches the held-out set's loss (MSE on standardised targets) and restores the
    best weights; the learning rate halves when that loss stalls for ``patience // 3`` epochs.
    ``on_epoch(epoch, logs)`` is called after each epoch (1-based) with Keras' loss dict.
    """
    coefficients = dict(WANG_CHEN_2019 if coefficients is None else coefficients)
    keras.utils.set_random_seed(seed)
    train = draw_stars(grid, n_train, seed, coefficients, noise=noise, age_spacing=age_spacing)
    val = draw_stars(grid, n_val, seed + 1, coefficients, noise=noise, age_spacing=age_spacing)
    x, y = feature_matrix(train), target_matrix(train)
    model = build_network(x, y)
    model.compile(keras.optimizers.Adam(learning_rate),
                  loss=MaskedStandardizedMSE(model.get_layer("labels").std))
    callbacks = [keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True),
                 keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=max(patience // 3, 1),
                                                   min_lr=1e-5)]
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: on_epoch(epoch + 1, logs)))
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                        validation_data=(feature_matrix(val), target_matrix(val)),
                        callbacks=callbacks, shuffle=True)
    seconds = time.perf_counter() - start
    info = {"n_train": n_train, "n_val": n_val, "seed": seed, "epochs_run":
            len(history.history["loss"]), "best_val_loss": float(min(history.history["val_loss"])),
            "train_seconds": round(seconds, 1), "extinction_coefficients": coefficients,
            "detection_limits": DETECTION_LIMITS, "noise_mag": noise,
            "age_spacing": age_spacing, "features": list(FEATURES), "outputs": list(OUTPUTS),
            "training_ranges": training_ranges(train)}
    return TrainResult(model, held_out_metrics(model, val), info)


def training_ranges(stars: pd.DataFrame, limits=None) -> dict[str, list[float]]:
    """[min, max] of what the network was trained on, per quantity of the drawn stars: RSTAR
    and LOGL_OBS as the network took them, ``M_<band>`` (apparent magnitude minus distance
    modulus, extinction included) over the stars detected in that band (brighter than its
    limit), and the LOGTE and LOGG it was taught. yso-labels flags members outside them."""
    limits = DETECTION_LIMITS if limits is None else limits
    values = {c: stars[c].to_numpy(np.float64) for c in ("RSTAR", "LOGL_OBS", "LOGTE", "LOGG")}
    mu = distance_modulus(stars["DIST"].to_numpy(np.float64))
    for band in BANDS:
        m = stars[band].to_numpy(np.float64)
        values[f"M_{band}"] = (m - mu)[m < limits[band]]
    return {k: [float(v.min()), float(v.max())] for k, v in values.items() if len(v)}


def scaling_ranges(model: keras.Model, width: float = 5.0) -> dict[str, list[float]]:
    """For a network whose yso.json predates ``training_ranges``: RSTAR and LOGL_OBS within
    ``width`` standard deviations of the training mean, from its scaling layer ({} when it
    has none)."""
    try:
        layer = model.get_layer("scaling")
    except ValueError:
        return {}
    out = {}
    for name in ("RSTAR", "LOGL_OBS"):
        i = FEATURES.index(name)
        lo, hi = (layer.mean[i] - width * layer.std[i], layer.mean[i] + width * layer.std[i])
        out[name] = [10.0 ** lo, 10.0 ** hi] if i in layer.log_columns else [lo, hi]
    return out


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """(N, 12) raw inputs -> (N, 5) ``OUTPUTS``."""
    if len(x) == 0:
        return np.zeros((0, len(OUTPUTS)), np.float32)
    return model.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0)


def held_out_metrics(model: keras.Model, stars: pd.DataFrame) -> dict:
    """Per output: median absolute error, robust scatter (1.4826 MAD of the residuals), RMS and
    bias (median residual), on synthetic stars with known truth."""
    residual = predict(model, feature_matrix(stars)) - target_matrix(stars)
    out = {"n": len(stars)}
    for j, name in enumerate(OUTPUTS):
        r = residual[:, j].astype(np.float64)
        med = float(np.median(r))
        out[name] = {"median_abs": float(np.median(np.abs(r))), "bias": med,
                     "robust_sigma": float(1.4826 * np.median(np.abs(r - med))),
                     "rms": float(np.sqrt(np.mean(r ** 2)))}
    return out


def save_network(result: TrainResult, out_dir: str, isochrones=None) -> str:
    """Write ``network.keras`` and ``yso.json`` (what went in, held-out metrics) into out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, NETWORK_FILE)
    with atomic_path(path) as tmp:
        result.model.save(tmp)
    write_json(os.path.join(out_dir, INFO_FILE),
               {**result.info, "isochrones": isochrones, "held_out": result.metrics})
    return path


def load_network(path: str) -> tuple[keras.Model, dict]:
    """(model, info) from a folder written by ``save_network`` or a bare ``.keras`` file.

    Raises:
        ApnetError: nothing loadable there, or the model is not the photometric network.
    """
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    keras_path = os.path.join(path, NETWORK_FILE) if os.path.isdir(path) else path
    if not os.path.exists(keras_path):
        raise ApnetError(f"{path}: no {NETWORK_FILE} (train one with apnet-tf yso-train)")
    info = _read_info(os.path.join(folder, INFO_FILE))
    try:
        model = keras.models.load_model(keras_path, compile=False)
    except Exception as exc:  # Keras raises many types for one meaning
        raise ApnetError(f"{keras_path}: cannot load the network ({str(exc).splitlines()[0]})")
    if model.input_shape[-1] != len(FEATURES) or model.output_shape[-1] != len(OUTPUTS):
        raise ApnetError(f"{keras_path}: not a YSO photometric network (input "
                         f"{model.input_shape}, output {model.output_shape})")
    return model, info


def _read_info(info_path: str) -> dict:
    """yso.json beside the network ({} when absent); ApnetError naming it when unreadable."""
    info = read_json_object(info_path, "train the network again with apnet-tf yso-train")
    if info is None:
        return {}
    ranges = info.get("training_ranges", {})
    if not (isinstance(ranges, dict) and all(
            isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v)
            for v in ranges.values())):
        raise ApnetError(f"{info_path}: training_ranges must map names to [min, max] numbers; "
                         "train the network again with apnet-tf yso-train")
    _check_limits(info.get("detection_limits"), info_path)
    return info


def _check_limits(limits, info_path: str) -> None:
    """A yso.json's detection limits: absent (the paper's are used), or a finite magnitude for
    every band the network takes."""
    if limits is None:
        return
    if not isinstance(limits, dict):
        raise ApnetError(f"{info_path}: detection_limits must map bands to magnitudes, got "
                         f"{type(limits).__name__}; train the network again with apnet-tf "
                         "yso-train")
    absent = [b for b in BANDS if b not in limits]
    bad = [b for b in BANDS if b in limits and not (
        isinstance(limits[b], (int, float)) and not isinstance(limits[b], bool)
        and np.isfinite(limits[b]))]
    if absent or bad:
        what = (f"no limit for band {', '.join(absent)}" if absent else
                f"the limit of {bad[0]} is {limits[bad[0]]!r}, not a magnitude")
        raise ApnetError(f"{info_path}: detection_limits: {what} (the network takes "
                         f"{', '.join(BANDS)}); train the network again with apnet-tf yso-train")


@locks_output("out_dir")
def yso_train(isochrones, out_dir: str, overwrite: bool = False, **kwargs) -> TrainResult:
    """Read isochrone tables, train the network (``train_network``'s keyword arguments) and save
    it into ``out_dir`` (``save_network``).

    Raises:
        ApnetError: before any training, when ``out_dir`` is a non-empty folder that apnet-tf did
            not make, or already holds a network and ``overwrite`` is False, or a table is bad.
    """
    check_seed(kwargs.get("seed", 0))
    if folders.check(out_dir, "yso_net") and not overwrite:
        raise ApnetError(f"{out_dir}: already holds a YSO network; choose another folder or pass "
                         "--overwrite")
    paths = [isochrones] if isinstance(isochrones, (str, os.PathLike)) else list(isochrones)
    grid = IsochroneGrid(read_isochrones(paths))
    problem = grid_problem(grid)
    if problem:
        raise ApnetError(f"{', '.join(map(os.fspath, paths))}: {problem}")
    result = train_network(grid, **kwargs)
    result.info["coverage_note"] = coverage_note(grid)
    folders.claim(out_dir, "yso_net")
    save_network(result, out_dir, isochrones=[os.fspath(p) for p in paths])
    return result
