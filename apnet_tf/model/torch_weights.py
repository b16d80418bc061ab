"""PyTorch weight exchange: a state_dict in, a Keras run folder out (``import-torch``), and the
Keras weights back as a state_dict.

Three layouts (``published.ARCHS``): the published APOGEE Net I ("anet1", the default) and
APOGEE Net II ("anet2", fc1 of 8576 inputs and a ``metadata.l1``..``l5`` photometry network),
whose conventions the Keras model and run.json carry; and "appendix-b", the package's own
reading of the paper: Net I's key layout with the paper's rounded Table 1 statistics taken as
(Teff, log g, [Fe/H]). That reading is wrong for the published Net I weights, which return log g
first with other constants; it stays only for the package's own exported weights.

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
    RUN_RECORD,
    TARGETS,
)
from apnet_tf.errors import ApnetError, first_line
from apnet_tf.io.files import write_json
from apnet_tf.io.folders import check, claim, remove_made
from apnet_tf.model.network import build_model, flatten_length, save_model_atomic
from apnet_tf.model.published import (
    ARCHS,
    METADATA_SIZES,
    PUBLISHED,
    build_published,
    conventions,
    linear_stats,
)

__all__ = [
    "PAPER_MEAN", "PAPER_STD", "torch_shapes", "check_state_dict", "check_target_stats",
    "import_torch_state_dict", "keras_to_torch_state_dict", "import_torch"
]

#: Paper Table 1, rounded, in the package's order: the statistics of ``--arch appendix-b``.
PAPER_MEAN = (4716.92, 2.88, -0.22)
PAPER_STD = (733.01, 1.16, 0.30)


def _torch_to_keras_arrays(state: dict) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> [kernel, bias] from a checked state_dict (numpy arrays)."""
    out = {}
    for i in range(1, len(CONV_FILTERS) + 1):
        w, b = state[f"conv{i}.weight"], state[f"conv{i}.bias"]
        # (out, in, k) -> (1, k, in, out): model.build_model writes each Conv1d as a (1, k) Conv2D
        out[f"conv{i}"] = [np.transpose(w, (2, 1, 0))[None], b]
    w1 = state["fc1.weight"]  # (512, 64 * 133 [+ 64]), the trunk flattened channel-major
    units, length, channels = w1.shape[0], flatten_length(), CONV_FILTERS[-1]
    trunk, extra = w1[:, :length * channels], w1[:, length * channels:]
    # Keras flattens (length, channels) row-major: row l * 64 + c holds PyTorch column c * 133 + l
    trunk = trunk.reshape(units, channels, length).transpose(2, 1, 0).reshape(-1, units)
    out["fc1"] = [np.concatenate([trunk, extra.T]), state["fc1.bias"]]  # photometry after
    for name in ("fc2", "fc3") + tuple(f"metadata.l{i}" for i in range(1, len(METADATA_SIZES))):
        if f"{name}.weight" in state:
            out[name.replace(".", "_")] = [state[f"{name}.weight"].T, state[f"{name}.bias"]]
    return out


def torch_shapes(arch: str = "anet1") -> dict[str, tuple[int, ...]]:
    """The PyTorch shape of every parameter of a layout, by state_dict key, in the authors'
    key order (Net II's ``metadata`` keys come before fc1)."""
    shapes, c_in = {}, 1
    for i, c_out in enumerate(CONV_FILTERS, start=1):
        shapes[f"conv{i}.weight"], shapes[f"conv{i}.bias"] = (c_out, c_in, CONV_KERNEL), (c_out,)
        c_in = c_out
    flat = CONV_FILTERS[-1] * flatten_length()
    if arch == "anet2":
        sizes = METADATA_SIZES
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            shapes[f"metadata.l{i}.weight"], shapes[f"metadata.l{i}.bias"] = (n_out, n_in), (n_out,)
        flat += sizes[-1]
    fc_in = (flat, DENSE_UNITS, DENSE_UNITS)
    for i, (n_in, n_out) in enumerate(zip(fc_in, (DENSE_UNITS, DENSE_UNITS, 3)), start=1):
        shapes[f"fc{i}.weight"], shapes[f"fc{i}.bias"] = (n_out, n_in), (n_out,)
    return shapes


def _other_layout_hint(state: dict, arch: str) -> str:
    if arch != "anet2" and any(str(k).startswith("metadata.") for k in state):
        return " (its metadata.* keys say APOGEE Net II: use --arch anet2)"
    if arch == "anet2" and "metadata.l1.weight" not in state:
        return " (no metadata.* keys: an APOGEE Net I file? use --arch anet1)"
    return ""


def check_state_dict(state, source: str = "state_dict", arch: str = "anet1",
                     ) -> dict[str, np.ndarray]:
    """The parameters of a state_dict in the layout ``arch`` as float32 numpy arrays, every one
    checked. A key of the other published layout (``metadata.*`` for a Net I layout) is refused
    too, so a Net II file never loads as Net I with its photometry dropped.

    Raises:
        ApnetError: ``state`` is not a mapping of names to tensors, or a parameter is missing,
            extra, of the wrong shape, or holds NaN or infinity (the message names it).
    """
    if not isinstance(state, dict):
        raise ApnetError(f"{source}: holds a {type(state).__name__}, not a state_dict (a dict "
                         "of named tensors, as torch.save(model.state_dict(), path) writes)")
    arrays, hint = {}, _other_layout_hint(state, arch)
    shapes = torch_shapes(arch)
    for key, shape in shapes.items():
        if key not in state:
            raise ApnetError(f"{source}: no key {key} for --arch {arch}{hint}")
        value = state[key]
        try:
            arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value,
                             dtype=np.float32)
        except (TypeError, ValueError):
            raise ApnetError(f"{source}: {key} is a {type(value).__name__}, not a tensor") from None
        if arr.shape != shape:
            raise ApnetError(f"{source}: {key} has shape {tuple(arr.shape)}, --arch {arch} "
                             f"needs {shape}{hint}")
        if not np.isfinite(arr).all():
            raise ApnetError(f"{source}: {key} holds {int((~np.isfinite(arr)).sum())} NaN or "
                             "infinite values")
        arrays[key] = arr
    extra = [k for k in state if str(k).startswith("metadata.") and k not in shapes]
    if extra:
        raise ApnetError(f"{source}: unexpected key {extra[0]} for --arch {arch}{hint}")
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
                            source: str = "state_dict", arch: str = "appendix-b") -> keras.Model:
    """A Keras model holding the weights of a PyTorch state_dict in the layout ``arch``.

    A published layout ("anet1", "anet2") gives ``published.build_published``'s model, with its
    own constants and output order; ``mean`` and ``std`` are not used. "appendix-b" builds the
    package's network with ``input_scaling="none"`` and de-standardises with ``mean`` and ``std``
    (default: paper Table 1, rounded) in (Teff, log g, [Fe/H]) order.

    Raises:
        ApnetError: a key is missing, extra, of the wrong shape or not finite
            (``check_state_dict``), or mean/std are unusable (``check_target_stats``).
    """
    if arch not in ARCHS:
        raise ApnetError(f"--arch {arch}: choose one of {', '.join(ARCHS)}")
    layers = _torch_to_keras_arrays(check_state_dict(state, source, arch))
    if arch in PUBLISHED:
        model = build_published(arch)
    else:
        mean, std = check_target_stats(mean, std)
        model = build_model(mean, std, input_scaling="none", initializer="glorot_uniform")
    for name, weights in layers.items():
        model.get_layer(name).set_weights([w.astype(np.float32) for w in weights])
    return model


def keras_to_torch_state_dict(model: keras.Model) -> dict[str, np.ndarray]:
    """The reverse of ``import_torch_state_dict``: numpy arrays under the authors' keys (with
    ``metadata.*`` for a Net II model).

    ``torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)`` gives a file that the
    PyTorch code loads with ``load_state_dict``. That network sees the flux the Keras model sees
    after any ``flux_scaling`` layer, and returns standardised targets.
    """
    state = {}
    for i in range(1, len(CONV_FILTERS) + 1):
        kernel, bias = model.get_layer(f"conv{i}").get_weights()
        state[f"conv{i}.weight"] = np.ascontiguousarray(np.transpose(kernel[0], (2, 1, 0)))
        state[f"conv{i}.bias"] = bias
    for i in range(1, len(METADATA_SIZES)):
        if any(layer.name == f"metadata_l{i}" for layer in model.layers):
            kernel, bias = model.get_layer(f"metadata_l{i}").get_weights()
            state[f"metadata.l{i}.weight"] = np.ascontiguousarray(kernel.T)
            state[f"metadata.l{i}.bias"] = bias
    kernel, bias = model.get_layer("fc1").get_weights()
    units, length, channels = kernel.shape[1], flatten_length(), CONV_FILTERS[-1]
    trunk, extra = kernel[:length * channels], kernel[length * channels:]
    w1 = trunk.reshape(length, channels, units).transpose(2, 1, 0).reshape(units, -1)
    state["fc1.weight"] = np.ascontiguousarray(np.concatenate([w1, extra.T], axis=1))
    state["fc1.bias"] = bias
    for name in ("fc2", "fc3"):
        kernel, bias = model.get_layer(name).get_weights()
        state[f"{name}.weight"], state[f"{name}.bias"] = np.ascontiguousarray(kernel.T), bias
    return state


def import_torch(path: str, out_dir: str, mean=None, std=None, overwrite: bool = False,
                 arch: str = "anet1") -> str:
    """Load a PyTorch state_dict file into a run folder: best.keras, normalization.json and
    run.json, which records the architecture and its conventions (``published.conventions``)
    so that infer, export, evaluate and calibrate apply them.

    ``mean`` and ``std`` belong to ``arch="appendix-b"`` only (default: paper Table 1).
    Everything is checked before the folder is touched. A folder that holds a run needs
    ``overwrite`` (its run files, calibration.json included, are deleted first).

    Raises:
        ApnetError: PyTorch is missing, the file is not a usable state_dict of ``arch``,
            mean/std are unusable or given for a published layout, or ``out_dir`` holds a run
            and ``overwrite`` is not set.
    """
    if arch not in ARCHS:
        raise ApnetError(f"--arch {arch}: choose one of {', '.join(ARCHS)}")
    if arch in PUBLISHED and (mean is not None or std is not None):
        raise ApnetError(f"--mean/--std: --arch {arch} carries its authors' constants; they go "
                         "with --arch appendix-b only")
    if arch not in PUBLISHED:
        mean, std = check_target_stats(PAPER_MEAN if mean is None else mean,
                                       PAPER_STD if std is None else std)
    state = _load_state(path)
    model = import_torch_state_dict(state, mean, std, source=path, arch=arch)
    _take_run_folder(out_dir, overwrite)
    save_model_atomic(model, os.path.join(out_dir, "best.keras"))
    if arch in PUBLISHED:
        conv = conventions(arch)
        mean, std = linear_stats(conv["output_order"], conv["mean"], conv["std"])
    write_json(os.path.join(out_dir, NORMALIZATION),
               {"targets": list(TARGETS), "mean": list(mean), "std": list(std),
                "source": os.path.abspath(path)})
    record = {"format": 1, "stages": ["import-torch"], "arch": arch,
              "source": os.path.abspath(path)}
    if arch in PUBLISHED:
        record["conventions"] = conventions(arch)
    write_json(os.path.join(out_dir, RUN_RECORD), record)
    return os.path.join(out_dir, "best.keras")


def _load_state(path: str):
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
    return state.state_dict() if hasattr(state, "state_dict") else state


def _take_run_folder(out_dir: str, overwrite: bool) -> None:
    def old_run(folder):
        return os.path.exists(os.path.join(folder, NORMALIZATION))

    if check(out_dir, "run", legacy=old_run) and not overwrite:
        raise ApnetError(f"{out_dir}: already holds a run; pass --overwrite to replace it, "
                         "or choose a new folder")
    if claim(out_dir, "run", legacy=old_run):
        remove_made(out_dir, RUN_FILES)
