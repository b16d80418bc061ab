"""PyTorch weight exchange with the paper's network (Appendix B): a state_dict in, a Keras run
folder out (``import-torch``), and the Keras weights back as a state_dict.

The PyTorch ``Conv1d`` kernels (out, in, k) become the (1, k, in, out) kernels of the Keras
model's Conv2D layers, and fc1's columns are reordered from PyTorch's channel-major flattening
to Keras' row-major one. Importing this module does not import PyTorch; ``import_torch`` does.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from apnet_tf.constants import (
    CONV_FILTERS,
    CONV_KERNEL,
    DENSE_UNITS,
    NORMALIZATION,
    RUN_FILES,
    TARGETS,
)
from apnet_tf.errors import ApnetError, first_line
from apnet_tf.io.files import write_json
from apnet_tf.io.folders import check, claim, remove_made
from apnet_tf.model.network import build_model, flatten_length, save_model_atomic

__all__ = [
    "PAPER_MEAN", "PAPER_STD", "torch_shapes", "check_state_dict", "check_target_stats",
    "import_torch_state_dict", "keras_to_torch_state_dict", "import_torch"
]

#: Paper Table 1: the default target statistics of an imported PyTorch model.
PAPER_MEAN = (4716.92, 2.88, -0.22)
PAPER_STD = (733.01, 1.16, 0.30)


def _torch_to_keras_arrays(state: dict) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> [kernel, bias] from an Appendix B state_dict (numpy arrays)."""
    out = {}
    for i in range(1, len(CONV_FILTERS) + 1):
        w, b = state[f"conv{i}.weight"], state[f"conv{i}.bias"]
        # (out, in, k) -> (1, k, in, out): model.build_model writes each Conv1d as a (1, k) Conv2D
        out[f"conv{i}"] = [np.transpose(w, (2, 1, 0))[None], b]
    w1 = state["fc1.weight"]  # (512, 64 * 133), flattened channel-major by PyTorch
    units, length, channels = w1.shape[0], flatten_length(), CONV_FILTERS[-1]
    # Keras flattens (length, channels) row-major: row l * 64 + c holds PyTorch column c * 133 + l
    w1 = w1.reshape(units, channels, length).transpose(2, 1, 0).reshape(length * channels, units)
    out["fc1"] = [w1, state["fc1.bias"]]
    out["fc2"] = [state["fc2.weight"].T, state["fc2.bias"]]
    out["fc3"] = [state["fc3.weight"].T, state["fc3.bias"]]
    return out


def torch_shapes() -> dict[str, tuple[int, ...]]:
    """The PyTorch shape of every Appendix B parameter, by state_dict key."""
    shapes, c_in = {}, 1
    for i, c_out in enumerate(CONV_FILTERS, start=1):
        shapes[f"conv{i}.weight"], shapes[f"conv{i}.bias"] = (c_out, c_in, CONV_KERNEL), (c_out,)
        c_in = c_out
    fc_in = (CONV_FILTERS[-1] * flatten_length(), DENSE_UNITS, DENSE_UNITS)
    for i, (n_in, n_out) in enumerate(zip(fc_in, (DENSE_UNITS, DENSE_UNITS, 3)), start=1):
        shapes[f"fc{i}.weight"], shapes[f"fc{i}.bias"] = (n_out, n_in), (n_out,)
    return shapes


def check_state_dict(state, source: str = "state_dict") -> dict[str, np.ndarray]:
    """The Appendix B parameters of a state_dict as float32 numpy arrays, every one checked.

    Raises:
        ApnetError: ``state`` is not a mapping of names to tensors, or a parameter is missing, of
            the wrong shape, or holds NaN or infinity (the message names it).
    """
    if not isinstance(state, dict):
        raise ApnetError(f"{source}: holds a {type(state).__name__}, not a state_dict (a dict "
                         "of named tensors, as torch.save(model.state_dict(), path) writes)")
    arrays = {}
    for key, shape in torch_shapes().items():
        if key not in state:
            raise ApnetError(f"{source}: no key {key}; expected Appendix B names conv1..conv12, "
                             "fc1..fc3")
        value = state[key]
        try:
            arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value,
                             dtype=np.float32)
        except (TypeError, ValueError):
            raise ApnetError(f"{source}: {key} is a {type(value).__name__}, not a tensor") from None
        if arr.shape != shape:
            raise ApnetError(f"{source}: {key} has shape {tuple(arr.shape)}, the Appendix B "
                             f"network needs {shape}")
        if not np.isfinite(arr).all():
            raise ApnetError(f"{source}: {key} holds {int((~np.isfinite(arr)).sum())} NaN or "
                             "infinite values")
        arrays[key] = arr
    return arrays


def check_target_stats(mean, std) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Three finite means and three finite, positive standard deviations.

    Raises:
        ApnetError: naming --mean or --std and the values.
    """
    for flag, values in (("--mean", mean), ("--std", std)):
        if len(values) != 3 or not all(np.isfinite(v) for v in values):
            raise ApnetError(f"{flag}: expected three finite numbers (teff,logg,fe_h), got "
                             f"{','.join(map(str, values))}")
    if not all(v > 0 for v in std):
        raise ApnetError(f"--std: every standard deviation must be positive, got "
                         f"{','.join(f'{v:g}' for v in std)}")
    return tuple(map(float, mean)), tuple(map(float, std))


def import_torch_state_dict(state: dict, mean=PAPER_MEAN, std=PAPER_STD,
                            source: str = "state_dict") -> keras.Model:
    """A Keras APOGEE Net holding the weights of an Appendix B PyTorch state_dict.

    The PyTorch network takes raw flux, so the model is built with ``input_scaling="none"``;
    ``mean`` and ``std`` (default: paper Table 1) turn its standardised outputs into physical
    units.

    Raises:
        ApnetError: a key of Appendix B is missing, has the wrong shape or is not finite
            (``check_state_dict``), or mean/std are unusable (``check_target_stats``).
    """
    mean, std = check_target_stats(mean, std)
    layers = _torch_to_keras_arrays(check_state_dict(state, source))
    model = build_model(mean, std, input_scaling="none", initializer="glorot_uniform")
    for name, weights in layers.items():
        model.get_layer(name).set_weights([w.astype(np.float32) for w in weights])
    return model


def keras_to_torch_state_dict(model: keras.Model) -> dict[str, np.ndarray]:
    """The reverse of ``import_torch_state_dict``: numpy arrays under Appendix B keys.

    ``torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)`` gives a file that the
    paper's code loads with ``load_state_dict``. That network sees the flux the Keras model sees
    after its ``flux_scaling`` layer, and returns standardised targets.
    """
    state = {}
    for i in range(1, len(CONV_FILTERS) + 1):
        kernel, bias = model.get_layer(f"conv{i}").get_weights()
        state[f"conv{i}.weight"] = np.ascontiguousarray(np.transpose(kernel[0], (2, 1, 0)))
        state[f"conv{i}.bias"] = bias
    kernel, bias = model.get_layer("fc1").get_weights()
    units, length, channels = kernel.shape[1], flatten_length(), CONV_FILTERS[-1]
    w1 = kernel.reshape(length, channels, units).transpose(2, 1, 0).reshape(units, -1)
    state["fc1.weight"], state["fc1.bias"] = np.ascontiguousarray(w1), bias
    for name in ("fc2", "fc3"):
        kernel, bias = model.get_layer(name).get_weights()
        state[f"{name}.weight"], state[f"{name}.bias"] = np.ascontiguousarray(kernel.T), bias
    return state


def import_torch(path: str, out_dir: str, mean=PAPER_MEAN, std=PAPER_STD,
                 overwrite: bool = False) -> str:
    """Load a PyTorch state_dict file into a run folder (best.keras + normalization.json).

    Everything is checked before the folder is touched. A folder that holds a run needs
    ``overwrite`` (its run files, calibration.json included, are deleted first).

    Raises:
        ApnetError: PyTorch is missing, the file is not a usable Appendix B state_dict, mean/std
            are unusable, or ``out_dir`` holds a run and ``overwrite`` is not set.
    """
    mean, std = check_target_stats(mean, std)
    try:
        import torch
    except ImportError:
        raise ApnetError("import-torch needs PyTorch: pip install 'apnet-tf[torch]'") from None
    if not os.path.isfile(path):
        raise ApnetError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ApnetError(f"{path}: cannot load a PyTorch state_dict "
                         f"({first_line(exc)})") from None
    if hasattr(state, "state_dict"):
        state = state.state_dict()
    model = import_torch_state_dict(state, mean, std, source=path)

    def old_run(folder):
        return os.path.exists(os.path.join(folder, NORMALIZATION))

    if check(out_dir, "run", legacy=old_run) and not overwrite:
        raise ApnetError(f"{out_dir}: already holds a run; pass --overwrite to replace it, "
                         "or choose a new folder")
    if claim(out_dir, "run", legacy=old_run):
        remove_made(out_dir, RUN_FILES)
    save_model_atomic(model, os.path.join(out_dir, "best.keras"))
    write_json(os.path.join(out_dir, "normalization.json"),
               {"targets": list(TARGETS), "mean": list(mean), "std": list(std),
                "source": os.path.abspath(path)})
    return os.path.join(out_dir, "best.keras")
