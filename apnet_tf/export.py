"""Export: a SavedModel for TF Serving, TFLite variants for LiteRT, and PyTorch weight exchange.

The SavedModel lives in ``saved_models/<name>/<version>/``, the layout TF Serving expects, with
signatures that need nothing from this package:

* ``serving_default``: ``flux`` float32 [None, 8575] -> ``teff``, ``logg``, ``fe_h`` (K, dex, dex);
* ``monte_carlo``: ``flux``, ``err`` float32 [None, 8575], ``seed`` int64 [2] and
  ``realizations`` int32 [] -> ``{target}_mean``, ``_std``, ``_p16``, ``_p50``, ``_p84``: the
  package's one Monte Carlo (``uncertainty.monte_carlo``), in chunks of bounded size. Masked
  pixels are given as err = inf (or >= 1e9), which is what a mask means to the noise model;
* ``predict_with_uncertainty``: ``flux`` and ``err`` -> the same outputs, with R fixed at export
  time and seed (0, 0), for clients that send rows only (TF Serving's REST row format).

TFLite files (float32; float16 dense weights; the converter's dynamic-range int8; int8 fc1
weights), ``export_metadata.json`` and the run's ``calibration.json`` sit beside the version
folders; the last two also travel in ``<version>/assets.extra/``.
"""

from __future__ import annotations

import datetime
import os
import shutil
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from . import folders
from .constants import (CONV_FILTERS, CONV_KERNEL, DENSE_UNITS, MC_ERROR_CAP, MC_REALIZATIONS,
                        N_PIXELS, TARGET_UNITS, TARGETS)
from .errors import ApnetError, first_line, require_at_least
from .files import write_file, write_json
from .model import build_model, flatten_length
from .calibration import CALIBRATION
from .uncertainty import clean_errors, monte_carlo

TFLITE_VARIANTS = ("float32", "float16", "int8", "int8-weights")
METADATA = "export_metadata.json"
#: Paper Table 1: the default target statistics of an imported PyTorch model.
PAPER_MEAN = (4716.92, 2.88, -0.22)
PAPER_STD = (733.01, 1.16, 0.30)


def _outputs(y: tf.Tensor, suffix: str = "") -> dict[str, tf.Tensor]:
    return {f"{name}{suffix}": y[:, k] for k, name in enumerate(TARGETS)}


def build_archive(model: keras.Model, mc_realizations: int = MC_REALIZATIONS,
                  error_cap: float = MC_ERROR_CAP) -> keras.export.ExportArchive:
    """An ExportArchive with the ``serving_default``, ``monte_carlo`` and
    ``predict_with_uncertainty`` endpoints (see the module docstring)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec([None, N_PIXELS], tf.float32, name="flux")
    err_spec = tf.TensorSpec([None, N_PIXELS], tf.float32, name="err")

    def serve(flux):
        return _outputs(model(flux, training=False))

    def mc(flux, err, seed, realizations):
        err, bad = clean_errors(err)
        out = monte_carlo(lambda x: model(x, training=False), flux, err, bad, realizations,
                          seed, error_cap=error_cap)
        return {k: v for key, y in out.items() for k, v in _outputs(y, f"_{key}").items()}

    def with_uncertainty(flux, err):
        return mc(flux, err, tf.zeros([2], tf.int64), tf.constant(mc_realizations, tf.int32))

    archive.add_endpoint("serving_default", serve, input_signature=[spec])
    archive.add_endpoint("monte_carlo", mc, input_signature=[
        spec, err_spec, tf.TensorSpec([2], tf.int64, name="seed"),
        tf.TensorSpec([], tf.int32, name="realizations")])
    archive.add_endpoint("predict_with_uncertainty", with_uncertainty,
                         input_signature=[spec, err_spec])
    return archive


def next_version(base: str) -> int:
    """1 + the largest numeric version folder under ``base`` (1 when there is none)."""
    if not os.path.isdir(base):
        return 1
    versions = [int(d) for d in os.listdir(base) if d.isdigit()]
    return max(versions, default=0) + 1


def tflite_variants(model: keras.Model, variants: Sequence[str]) -> dict[str, bytes]:
    """TFLite flatbuffers of the plain model (flux -> labels (B, 3)), one per variant.

    ``float32`` and ``int8`` (dynamic-range quantization: int8 weights everywhere, activations
    quantized to int8 on the fly) come from ``tf.lite.TFLiteConverter``; ``float16`` and
    ``int8-weights`` are the float32 flatbuffer with dense-layer weights stored in fewer bits
    (``compress_dense_weights``). The converter reads a SavedModel written for it: converting a
    Keras 3 model from a concrete function silently drops its weights (the outputs are NaN).
    """
    import tempfile

    for variant in variants:
        if variant not in TFLITE_VARIANTS:
            raise ApnetError(f"unknown TFLite variant {variant!r}; choose from "
                             f"{', '.join(TFLITE_VARIANTS)}")
    out = {}
    with tempfile.TemporaryDirectory(prefix="apnet-tflite-") as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default",
                             lambda flux: {"labels": model(flux, training=False)},
                             input_signature=[tf.TensorSpec([None, N_PIXELS], tf.float32,
                                                            name="flux")])
        archive.write_out(tmp, verbose=False)
        for variant in ("float32", "int8"):
            if variant in variants or variant == "float32":
                converter = tf.lite.TFLiteConverter.from_saved_model(
                    tmp, signature_keys=["serving_default"])
                if variant == "int8":
                    converter.optimizations = [tf.lite.Optimize.DEFAULT]
                out[variant] = converter.convert()
    for variant, dtype in (("float16", "float16"), ("int8-weights", "int8")):
        if variant in variants:
            out[variant] = compress_dense_weights(out["float32"], dtype)
    return {v: out[v] for v in variants}


def compress_dense_weights(float32_tflite: bytes, dtype: str) -> bytes:
    """A float32 flatbuffer with dense-layer weights stored as ``float16`` or ``int8``.

    ``float16``: the weights of fc1, fc2 and fc3 (99% of the parameters). ``int8``: fc1's weights
    (94% of the parameters), per output channel, symmetric. The interpreter turns them back into
    float32 once and computes in float32, and the convolutions keep float32 weights: on real apStar
    spectra, rounding the convolution weights alone to float16 moved predictions by up to 1.3% of
    a target's standard deviation (BENCHMARKS.md, 'Export').
    """
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer

    qt = quantizer.Quantizer(bytearray(float32_tflite))
    fully_connected = qtyping.TFLOperationName.FULLY_CONNECTED
    if dtype == "float16":
        qt.add_weight_only_config(".*", fully_connected, 16,
                                  algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
    elif dtype == "int8":
        # An op is matched by its output tensor's name, which holds its layer's: .../fc1_1/...
        qt.add_weight_only_config(r".*/fc1(_\d+)?/.*", fully_connected, 8)
    else:
        raise ApnetError(f"dense weights can be float16 or int8, not {dtype!r}")
    return bytes(qt.quantize(enable_progress_report=False).quantized_model)


def _is_old_export(folder: str) -> bool:
    """An export folder written before folders had markers: it holds export_metadata.json."""
    return os.path.exists(os.path.join(folder, METADATA))


def export_model(model_path: str, out: str, version: int | None = None,
                 tflite: Sequence[str] = (), mc_realizations: int = MC_REALIZATIONS) -> dict:
    """Export a run folder or .keras file to ``out/<version>/`` (+ TFLite files and metadata).

    Returns:
        The metadata written to ``out/export_metadata.json``.
    """
    from .model_loading import load_model

    require_at_least(mc_realizations, 2, "--mc")
    unknown = [v for v in tflite if v not in TFLITE_VARIANTS]
    if unknown:
        raise ApnetError(f"--tflite: unknown variant {unknown[0]!r}; choose from "
                         f"{', '.join(TFLITE_VARIANTS)}")
    if version is not None:
        require_at_least(int(version), 1, "--version")
    folders.check(out, "export", legacy=_is_old_export)
    loaded = load_model(model_path)
    model = loaded.model
    version = next_version(out) if version is None else int(version)
    final = os.path.join(out, str(version))
    if os.path.exists(final):
        raise ApnetError(f"{final}: version {version} exists; pick another --version")
    folders.claim(out, "export", legacy=_is_old_export)
    tmp = os.path.join(out, f".tmp-{version}")
    shutil.rmtree(tmp, ignore_errors=True)
    build_archive(model, mc_realizations).write_out(tmp, verbose=False)
    os.replace(tmp, final)

    name = os.path.basename(os.path.normpath(out))
    files = {}
    for variant, data in tflite_variants(model, tflite).items():
        path = os.path.join(out, f"{name}_{variant}.tflite")
        write_file(path, data)
        files[variant] = {"file": os.path.basename(path), "bytes": len(data)}
    meta = _export_metadata(name, version, model_path, loaded, mc_realizations, files)
    _write_metadata(meta, loaded.calibration, [os.path.join(final, "assets.extra"), out])
    return meta


def _export_metadata(name: str, version: int, model_path: str, loaded, mc_realizations: int,
                     tflite_files: dict) -> dict:
    """What ``export_metadata.json`` says of an export: source, versions, inputs and their
    shapes, signatures, Monte Carlo settings, target statistics, calibration, TFLite files."""
    norm = loaded.normalization or {}
    return {
        "name": name, "version": version, "source": os.path.abspath(model_path),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tensorflow": tf.__version__, "keras": keras.__version__,
        "inputs": {"flux": [None, N_PIXELS], "err": [None, N_PIXELS]},
        "targets": list(TARGETS), "units": list(TARGET_UNITS),
        "signatures": {"serving_default": "flux -> teff, logg, fe_h",
                       "monte_carlo": "flux, err, seed, realizations -> {target}_{mean,std,"
                                      "p16,p50,p84}; err = inf at masked pixels",
                       "predict_with_uncertainty": "flux, err -> {target}_{mean,std,p16,p50,"
                                                   "p84}; R fixed, seed (0, 0)"},
        "mc_realizations": mc_realizations, "mc_error_cap": MC_ERROR_CAP,
        "target_mean": norm.get("mean"), "target_std": norm.get("std"),
        "calibration": None if loaded.calibration is None else CALIBRATION,
        "tflite": tflite_files,
    }


def _write_metadata(meta: dict, calibration, dirs: list[str]) -> None:
    """Write the metadata, and the calibration (or remove an earlier export's), to each of
    ``dirs`` (the version folder's assets.extra first, which is made here).

    A copy travels inside the version folder, where TF Serving ignores extra files; infer
    applies the calibration to every kind of model, so it travels the same way.
    """
    os.makedirs(dirs[0], exist_ok=True)
    for folder in dirs:
        write_json(os.path.join(folder, METADATA), meta)
        if calibration is not None:
            calibration.save(os.path.join(folder, CALIBRATION))
        elif os.path.exists(os.path.join(folder, CALIBRATION)):  # an earlier export's
            os.remove(os.path.join(folder, CALIBRATION))


# --------------------------------------------------------------------------- PyTorch weights


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
    from .folders import check, claim, remove_made
    from .training import NORMALIZATION, RUN_FILES, save_model_atomic

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
