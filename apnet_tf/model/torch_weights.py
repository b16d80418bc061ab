"""PyTorch weight exchange: a state_dict in, a Keras run folder out (``import-torch``), and the
Keras weights back as a state_dict.

The layouts read are the table ``torch_layouts.LAYOUTS``: the published APOGEE Net I ("anet1")
and APOGEE Net II ("anet2", fc1 of 8576 inputs and a ``metadata.l1``..``l5`` photometry
network), APOGEE Net III ("anet3") and BOSS Net ("bossnet", ``bossnet_weights``; a ``torch.save``
file or their authors' folder of chunks), whose conventions the Keras model and run.json carry;
and "apnet", the package's own
reading of the paper: Net I's key layout with the paper's rounded Table 1 statistics taken as
(Teff, log g, [Fe/H]). That reading is wrong for the published Net I weights, which return log g
first with other constants; a file is read as apnet only when ``save_torch`` wrote it (its
sidecar says so) or with an explicit override.

Importing this module does not import PyTorch; ``import_torch`` does.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from apnet_tf.constants import (
    CONV_FILTERS,
    INPUT_SCALINGS,
    NORMALIZATION,
    RENAMED,
    RUN_FILES,
    RUN_RECORD,
    TARGETS,
)
from apnet_tf.errors import ApnetError
from apnet_tf.io.files import atomic_path, locks_output, read_json_object, write_json
from apnet_tf.io.folders import check, claim, remove_made
from apnet_tf.model.bossnet import BOSS_ARCHS, CONVENTIONS
from apnet_tf.model.bossnet_weights import bossnet_record, load_bossnet_state
from apnet_tf.model.keras_runtime import load_keras
from apnet_tf.model.network import flatten_length, save_model_atomic
from apnet_tf.model.published import METADATA_SIZES, PUBLISHED, conventions, linear_stats
from apnet_tf.model.torch_files import load_state, marked_state, torch_module
from apnet_tf.model.torch_layouts import LAYOUTS, check_state_dict, choose_layout

__all__ = [
    "PAPER_MEAN", "PAPER_STD", "check_target_stats", "import_torch_state_dict",
    "keras_to_torch_state_dict", "import_torch", "sidecar_path", "read_sidecar", "save_torch",
]

#: Paper Table 1, rounded, in the package's order: the statistics of ``--arch apnet``.
PAPER_MEAN = (4716.92, 2.88, -0.22)
PAPER_STD = (733.01, 1.16, 0.30)


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

    The state_dict must be exactly the layout ``arch`` (``torch_layouts.LAYOUTS``). A published
    layout gives ``published.build_published``'s model, with its own constants and output
    order; ``mean`` and ``std`` are not used. "apnet" builds the
    package's network with ``input_scaling`` (default "none": the state_dict sees the flux as
    given) and de-standardises with ``mean`` and ``std`` (default: paper Table 1, rounded) in
    (Teff, log g, [Fe/H]) order.

    Raises:
        ApnetError: a key is missing, extra, of the wrong shape or not finite
            (``check_state_dict``), or mean/std are unusable (``check_target_stats``).
    """
    if arch not in LAYOUTS:
        raise ApnetError(f"--arch {arch}: choose one of {', '.join(LAYOUTS)}")
    layout = LAYOUTS[arch]
    arrays = check_state_dict(state, source, arch)
    if not layout.published:
        mean, std = check_target_stats(mean, std)
    return layout.to_model(arrays, mean, std, input_scaling)


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
                 arch: str | None = None, convention: str | None = None,
                 force_arch: bool = False) -> str:
    """Load a PyTorch state_dict file into a run folder: best.keras, normalization.json and
    run.json, which records the architecture and its conventions (``published.conventions``)
    so that infer, export, evaluate and calibrate apply them.

    The layout is the one the file's keys and shapes are (``torch_layouts.choose_layout``); an
    ``arch`` given must be it, and reading the file as a layout that shares its keys (Net I's
    as "apnet") needs ``force_arch``. A sidecar ``PATH.json`` (``save_torch`` writes one) gives
    "apnet", the input scaling and the target statistics; a file that ``save_torch`` marked
    without its sidecar is refused. ``mean`` and ``std`` belong to ``arch="apnet"`` without a
    sidecar only (default: paper Table 1). Everything is checked before the folder is
    touched. A folder that holds a run needs ``overwrite`` (its run files, calibration.json
    included, are deleted first).

    APOGEE Net III and BOSS Net ("anet3", "bossnet") come as a ``torch.save`` file or as their
    authors' folder of chunks (``bossnet_weights.read_chunk_folder``), run under
    ``convention``: "astra" (the default) or "hutchresearch" (``bossnet_conventions``).

    Raises:
        ApnetError: PyTorch is missing, the file is not a usable state_dict of ``arch``,
            mean/std are unusable or given for a published layout, a convention is unknown or
            given for a network with one pipeline, the sidecar is unusable,
            missing or says another ``arch``, or ``out_dir`` holds a run and ``overwrite`` is
            not set.
    """
    folder = os.path.isdir(path)
    side = None if folder else read_sidecar(path)
    _check_options(path, arch, mean, std, side)
    _check_convention(arch, convention)
    state, mark = (load_bossnet_state(path), None) if folder else load_state(path)
    arch = _layout_of(path, state, mark, side, arch, force_arch)
    _check_convention(arch, convention)
    if arch in BOSS_ARCHS:
        model = import_torch_state_dict(state, source=path, arch=arch)
        norm, record = bossnet_record(model, path, arch, convention)
        _take_run_folder(out_dir, overwrite)
        save_model_atomic(model, os.path.join(out_dir, "best.keras"))
        write_json(os.path.join(out_dir, NORMALIZATION), norm)
        write_json(os.path.join(out_dir, RUN_RECORD), record)
        return os.path.join(out_dir, "best.keras")
    scaling = "none" if side is None else side["input_scaling"]
    if side is not None:
        mean, std = side["mean"], side["std"]
    elif not LAYOUTS[arch].published:
        mean, std = check_target_stats(PAPER_MEAN if mean is None else mean,
                                       PAPER_STD if std is None else std)
    model = import_torch_state_dict(state, mean, std, source=path, arch=arch,
                                    input_scaling=scaling)
    _take_run_folder(out_dir, overwrite)
    save_model_atomic(model, os.path.join(out_dir, "best.keras"))
    _write_run_record(out_dir, path, arch, mean, std, scaling, side)
    return os.path.join(out_dir, "best.keras")


def _write_run_record(out_dir, path, arch, mean, std, scaling, side) -> None:
    """normalization.json and run.json of an imported run."""
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


def _check_options(path, arch, mean, std, side) -> None:
    """The options of an import, checked before the file is read."""
    given = mean is not None or std is not None
    if side is not None:
        where = sidecar_path(path)
        if arch is not None and arch != side["arch"]:
            raise ApnetError(f"--arch {arch}: {where} says {path} holds --arch {side['arch']} "
                             "weights (written by save_torch); leave --arch out")
        if given:
            raise ApnetError(f"--mean/--std: {where} holds the run's target statistics; "
                             "leave --mean and --std out")
        return
    if arch is not None and arch not in LAYOUTS:
        raise ApnetError(f"--arch {arch}: choose one of {', '.join(LAYOUTS)}")
    if given and (arch is None or LAYOUTS[arch].published):
        raise ApnetError("--mean/--std: a published network carries its authors' constants; "
                         "they go with --arch apnet only")
    if given:
        check_target_stats(PAPER_MEAN if mean is None else mean,
                           PAPER_STD if std is None else std)


def _check_convention(arch, convention) -> None:
    """``convention``, if given, names a pipeline of APOGEE Net III / BOSS Net (``arch`` None:
    not known yet)."""
    if convention is None:
        return
    if convention not in CONVENTIONS:
        raise ApnetError(f"--convention {convention}: choose one of {', '.join(CONVENTIONS)}")
    if arch is not None and arch not in BOSS_ARCHS:
        raise ApnetError("--convention: it goes with --arch anet3 or bossnet (APOGEE Net I and "
                         "II have one pipeline each)")


def _layout_of(path, state, mark, side, arch, force) -> str:
    """The layout to read the loaded ``state`` as (see ``import_torch``)."""
    if side is not None:  # the sidecar says apnet: the keys must be exactly that
        return choose_layout(state, f"{path} (with {sidecar_path(path)})", "apnet", force=True)
    if mark is not None and not (force and arch is not None):
        raise ApnetError(f"{path}: written by apnet-tf (save_torch) with a sidecar "
                         f"{sidecar_path(path)} holding its layout, input scaling and target "
                         "mean and std, which is missing; put the sidecar back beside it")
    return choose_layout(state, path, arch, force)


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
    only, so its code loads it strictly, marked as this package's in its ``_metadata``) and
    its sidecar ``path + ".json"``: arch
    "apnet", input_scaling and the target mean and std. ``import_torch`` of ``path`` then
    rebuilds the same model. Returns the sidecar's path.

    Raises:
        ApnetError: PyTorch is missing, the model cannot be read, or it is not the package's
            Appendix B network (an imported published network: share its original file).
    """
    torch = torch_module()
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
    state = marked_state({k: torch.from_numpy(v)
                          for k, v in keras_to_torch_state_dict(model).items()},
                         {"format": 1, "arch": "apnet", "sidecar": sidecar_path(
                             os.path.basename(str(path)))})
    with atomic_path(str(path)) as tmp:
        torch.save(state, tmp)
        write_json(sidecar_path(path), side)  # before the rename: never a .pt without it
    return sidecar_path(path)


def _take_run_folder(out_dir: str, overwrite: bool) -> None:
    def old_run(folder):
        return os.path.exists(os.path.join(folder, NORMALIZATION))

    if check(out_dir, "run", legacy=old_run) and not overwrite:
        raise ApnetError(f"{out_dir}: already holds a run; pass --overwrite to replace it, "
                         "or choose a new folder")
    if claim(out_dir, "run", legacy=old_run):
        remove_made(out_dir, RUN_FILES)
