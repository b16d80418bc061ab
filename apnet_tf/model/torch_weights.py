"""PyTorch weight exchange: a state_dict in, a Keras run folder out (``import-torch``), and the
Keras weights back as a state_dict.

Three layouts (``published.ARCHS``): the published APOGEE Net I ("anet1", the default) and
APOGEE Net II ("anet2", fc1 of 8576 inputs and a ``metadata.l1``..``l5`` photometry network),
whose conventions the Keras model and run.json carry; and "apnet", the package's own
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
    INPUT_SCALINGS,
    NORMALIZATION,
    RENAMED,
    RUN_FILES,
    RUN_RECORD,
    TARGETS,
    TORCH_MISSING,
)
from apnet_tf.errors import ApnetError, first_line
from apnet_tf.io.files import atomic_path, locks_output, read_json_object, write_json
from apnet_tf.io.folders import check, claim, remove_made
from apnet_tf.model.bossnet import BOSS_ARCHS
from apnet_tf.model.bossnet_weights import bossnet_import
from apnet_tf.model.keras_runtime import load_keras
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
    "import_torch_state_dict", "keras_to_torch_state_dict", "import_torch", "sidecar_path",
    "read_sidecar", "save_torch",
]

#: Paper Table 1, rounded, in the package's order: the statistics of ``--arch apnet``.
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
    if "res_blocks.0.conv1.weight" in state:
        return " (an APOGEE Net III or BOSS Net state_dict? use --arch anet3 or bossnet)"
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
                            source: str = "state_dict", arch: str = "apnet",
                            input_scaling: str = "none") -> keras.Model:
    """A Keras model holding the weights of a PyTorch state_dict in the layout ``arch``.

    A published layout ("anet1", "anet2") gives ``published.build_published``'s model, with its
    own constants and output order; ``mean`` and ``std`` are not used. "apnet" builds the
    package's network with ``input_scaling`` (default "none": the state_dict sees the flux as
    given) and de-standardises with ``mean`` and ``std`` (default: paper Table 1, rounded) in
    (Teff, log g, [Fe/H]) order.

    Raises:
        ApnetError: a key is missing, extra, of the wrong shape or not finite
            (``check_state_dict``), or mean/std are unusable (``check_target_stats``).
    """
    if arch not in ARCHS:
        raise ApnetError(f"--arch {arch}: choose one of {', '.join(ARCHS + BOSS_ARCHS)}")
    layers = _torch_to_keras_arrays(check_state_dict(state, source, arch))
    if arch in PUBLISHED:
        model = build_published(arch)
    else:
        mean, std = check_target_stats(mean, std)
        model = build_model(mean, std, input_scaling=input_scaling, initializer="glorot_uniform")
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


@locks_output("out_dir")
def import_torch(path: str, out_dir: str, mean=None, std=None, overwrite: bool = False,
                 arch: str | None = None, convention: str | None = None) -> str:
    """Load a PyTorch state_dict file into a run folder: best.keras, normalization.json and
    run.json, which records the architecture and its conventions (``published.conventions``)
    so that infer, export, evaluate and calibrate apply them.

    APOGEE Net III and BOSS Net ("anet3", "bossnet"; ``bossnet_weights.bossnet_import``) come
    as a ``torch.save`` file or as their authors' folder of chunks (a folder ``path`` is read
    as one, whatever ``arch`` says), under ``convention``: "astra" (the default) or
    "hutchresearch" (``bossnet_conventions``).

    A sidecar ``PATH.json`` (``save_torch`` writes one) gives the layout, the input scaling and
    the target statistics; without one, ``arch`` defaults to "anet1". ``mean`` and ``std``
    belong to ``arch="apnet"`` without a sidecar only (default: paper Table 1).
    Everything is checked before the folder is touched. A folder that holds a run needs
    ``overwrite`` (its run files, calibration.json included, are deleted first).

    Raises:
        ApnetError: PyTorch is missing, the file is not a usable state_dict of ``arch``,
            mean/std are unusable or given for a published layout, the sidecar is unusable or
            says another ``arch``, or ``out_dir`` holds a run and ``overwrite`` is not set.
    """
    if arch in BOSS_ARCHS or (arch is None and os.path.isdir(path)):
        if mean is not None or std is not None:
            raise ApnetError("--mean/--std: APOGEE Net III and BOSS Net carry their authors' "
                             "constants; they go with --arch apnet only")
        model, norm, record = bossnet_import(path, arch, convention)
        _take_run_folder(out_dir, overwrite)
        save_model_atomic(model, os.path.join(out_dir, "best.keras"))
        write_json(os.path.join(out_dir, NORMALIZATION), norm)
        write_json(os.path.join(out_dir, RUN_RECORD), record)
        return os.path.join(out_dir, "best.keras")
    if convention is not None:
        raise ApnetError("--convention: it goes with --arch anet3 or bossnet (APOGEE Net I and "
                         "II have one pipeline each)")
    arch, mean, std, scaling, side = _import_settings(path, arch, mean, std)
    state = _load_state(path)
    model = import_torch_state_dict(state, mean, std, source=path, arch=arch,
                                    input_scaling=scaling)
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
    else:
        record["input_scaling"] = scaling
    if side is not None:
        record["sidecar"] = os.path.abspath(sidecar_path(path))
    write_json(os.path.join(out_dir, RUN_RECORD), record)
    return os.path.join(out_dir, "best.keras")


def _import_settings(path, arch, mean, std):
    """(arch, mean, std, input scaling, sidecar or None) of an import, every one checked."""
    side = read_sidecar(path)
    if side is not None:
        where = sidecar_path(path)
        if arch is not None and arch != side["arch"]:
            raise ApnetError(f"--arch {arch}: {where} says {path} holds --arch {side['arch']} "
                             "weights (written by save_torch); leave --arch out")
        if mean is not None or std is not None:
            raise ApnetError(f"--mean/--std: {where} holds the run's target statistics; "
                             "leave --mean and --std out")
        return side["arch"], side["mean"], side["std"], side["input_scaling"], side
    arch = "anet1" if arch is None else arch
    if arch not in ARCHS:
        raise ApnetError(f"--arch {arch}: choose one of {', '.join(ARCHS + BOSS_ARCHS)}")
    if arch in PUBLISHED and (mean is not None or std is not None):
        raise ApnetError(f"--mean/--std: --arch {arch} carries its authors' constants; they go "
                         "with --arch apnet only")
    if arch not in PUBLISHED:
        mean, std = check_target_stats(PAPER_MEAN if mean is None else mean,
                                       PAPER_STD if std is None else std)
    return arch, mean, std, "none", None


def sidecar_path(path: str) -> str:
    """The sidecar of a state_dict file: the same name with ``.json`` added."""
    return str(path) + ".json"


def read_sidecar(path: str) -> dict | None:
    """The checked sidecar of the state_dict file ``path`` (``save_torch``), or None if absent.

    Raises:
        ApnetError: naming the sidecar and the field, if it is not JSON or a field is unusable.
    """
    where = sidecar_path(path)
    side = read_json_object(where, "remove it or write it again with save_torch")
    if side is None:
        return None
    side["arch"] = RENAMED.get(side.get("arch"), side.get("arch"))  # an older sidecar's name
    if side["arch"] != "apnet":
        raise ApnetError(f"{where}: arch is {side['arch']!r}; a sidecar goes with "
                         "apnet weights only")
    if side.get("input_scaling") not in INPUT_SCALINGS:
        raise ApnetError(f"{where}: input_scaling is {side.get('input_scaling')!r}, not one of "
                         f"{', '.join(INPUT_SCALINGS)}")
    for key in ("mean", "std"):
        values = side.get(key)
        if (not isinstance(values, list) or len(values) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           and np.isfinite(v) for v in values)
                or (key == "std" and not all(v > 0 for v in values))):
            raise ApnetError(f"{where}: {key} must be three finite numbers (teff, logg, fe_h)"
                             f"{', all positive' if key == 'std' else ''}, got {values!r}")
    return side


def save_torch(model, path: str) -> str:
    """Save a model of this package's network (a run folder, a .keras file or a keras.Model) as
    a plain PyTorch state_dict at ``path`` (``keras_to_torch_state_dict``: the paper's keys
    only, so its code loads it strictly) and its sidecar ``path + ".json"``: arch
    "apnet", input_scaling and the target mean and std. ``import_torch`` of ``path`` then
    rebuilds the same model. Returns the sidecar's path.

    Raises:
        ApnetError: PyTorch is missing, the model cannot be read, or it is not the package's
            Appendix B network (an imported published network: share its original file).
    """
    torch = _torch()
    source = "model"
    if isinstance(model, (str, os.PathLike)):
        source = str(model)
        model = load_keras(os.path.join(source, "best.keras") if os.path.isdir(source)
                           else source)
    if "flux_scaling" not in {layer.name for layer in model.layers}:
        raise ApnetError(f"{source}: not this package's Appendix B network (a published "
                         "network imported from PyTorch?); share its original .pt file instead")
    labels = model.get_layer("labels")
    side = {"format": 1, "arch": "apnet",
            "input_scaling": model.get_layer("flux_scaling").mode, "targets": list(TARGETS),
            "mean": [float(v) for v in labels.mean], "std": [float(v) for v in labels.std],
            "state_dict": os.path.basename(str(path))}
    state = {k: torch.from_numpy(v) for k, v in keras_to_torch_state_dict(model).items()}
    with atomic_path(str(path)) as tmp:
        torch.save(state, tmp)
        write_json(sidecar_path(path), side)  # before the rename: never a .pt without it
    return sidecar_path(path)


def _torch():
    try:
        import torch
    except ImportError:
        raise ApnetError(TORCH_MISSING) from None
    return torch


def _load_state(path: str):
    torch = _torch()
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
