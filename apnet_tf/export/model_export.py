"""Export: a SavedModel for TF Serving and TFLite variants for LiteRT.

The SavedModel lives in ``saved_models/<name>/<version>/``, the layout TF Serving expects, with
signatures that need nothing from this package:

* ``serving_default``: ``flux`` float32 [None, 8575] -> ``teff``, ``logg``, ``fe_h`` (K, dex, dex);
* ``monte_carlo``: ``flux``, ``err`` float32 [None, 8575], ``seed`` int64 [2] and
  ``mc`` int32 [] (draws per star) -> ``{target}_mean``, ``_std``, ``_p16``, ``_p50``, ``_p84``: the
  package's one Monte Carlo (``uncertainty.monte_carlo``), in chunks of bounded size. Masked
  pixels are given as err = inf (or >= 1e9), which is what a mask means to the noise model;
* ``predict_with_uncertainty``: ``flux`` and ``err`` -> the same outputs, with ``mc`` fixed at
  export time and seed (0, 0), for clients that send rows only (TF Serving's REST row format).

APOGEE Net III and BOSS Net (``model.bossnet``) keep their authors' pipeline: ``serving_default``
takes raw apStar flux (APOGEE Net III) or flux on BOSS Net's 3,900-point grid (a client
resamples each spectrum first: ``io.boss_grid.resample_boss``, whose doc shows the three lines),
and returns ``rv`` too for BOSS Net; ``monte_carlo`` and ``predict_with_uncertainty`` take the
native pixels (BOSS Net: ``flux``, ``err`` and ``wavelength`` [None, None], each spectrum padded
with NaN after its last pixel) and run their authors' Monte Carlo (``model.bossnet_mc``:
``{target}_value``, the un-noised pass, ``_mean``, ``_std``, ``_p16``, ``_p50``, ``_p84``); an
infinite ``err`` marks a pixel that gets no noise. Their TFLite files hold a second signature,
``network``: log-scaled, clipped flux -> the standardised outputs, which the Monte Carlo around
the interpreter needs.

TFLite files (float32; float16 dense weights; the converter's dynamic-range int8; the largest
dense layer's weights in int8), ``export_metadata.json`` and the run's ``calibration.json`` sit
beside the version folders; the last two also travel in ``<version>/assets.extra/``.

The PyTorch weight exchange is in ``model.torch_weights``.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
from collections.abc import Sequence

import keras
import tensorflow as tf

from apnet_tf.constants import MC_DRAWS, MC_ERROR_CAP, N_PIXELS, TARGET_UNITS, TARGETS
from apnet_tf.errors import ApnetError, first_line, require_at_least
from apnet_tf.io import folders
from apnet_tf.io.files import locks_output, write_file, write_json
from apnet_tf.io.photometry import PHOT_COLUMNS
from apnet_tf.model.bossnet import is_bossnet, standardised_network
from apnet_tf.model.bossnet_mc import bossnet_monte_carlo
from apnet_tf.model.calibration import CALIBRATION
from apnet_tf.model.loading import load_model
from apnet_tf.model.network import model_photometry
from apnet_tf.model.novelty import NOVELTY, NOVELTY_FORMAT
from apnet_tf.model.uncertainty import clean_errors, monte_carlo

__all__ = [
    "TFLITE_VARIANTS", "METADATA", "build_archive", "next_version", "tflite_variants",
    "compress_dense_weights", "int8_weight_layer", "export_model"
]

TFLITE_VARIANTS = ("float32", "float16", "int8", "int8-weights")
METADATA = "export_metadata.json"


def _outputs(y: tf.Tensor, suffix: str = "", names=TARGETS) -> dict[str, tf.Tensor]:
    return {f"{name}{suffix}": y[:, k] for k, name in enumerate(names)}


def build_archive(model: keras.Model, mc: int = MC_DRAWS,
                  error_cap: float = MC_ERROR_CAP, style: str = "apnet",
                  conventions: dict | None = None) -> keras.export.ExportArchive:
    """An ExportArchive with the ``serving_default``, ``monte_carlo`` and
    ``predict_with_uncertainty`` endpoints (see the module docstring). A two-input model (APOGEE
    Net II) takes ``photometry`` float32 [None, 7] (raw: parallax mas, G, BP, RP, J, H, K) as
    the last input of each; ``style`` is the model's own Monte Carlo (``uncertainty``).
    APOGEE Net III and BOSS Net: ``bossnet_archive`` with their ``conventions``."""
    if is_bossnet(model):
        return bossnet_archive(model, conventions, mc)
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec([None, N_PIXELS], tf.float32, name="flux")
    err_spec = tf.TensorSpec([None, N_PIXELS], tf.float32, name="err")
    two = isinstance(model.input_shape, list)
    phot = [tf.TensorSpec([None, model.input_shape[1][-1]], tf.float32, name="photometry")] \
        if two else []

    def predict(flux, photometry=None):
        return model(flux if photometry is None else [flux, photometry], training=False)

    def serve(flux, photometry=None):
        return _outputs(predict(flux, photometry))

    def draws(flux, err, seed, mc, photometry=None):
        err, bad = clean_errors(err)
        out = monte_carlo(predict, flux, err, bad, mc, seed, error_cap=error_cap,
                          style=style, photometry=photometry)
        return {k: v for key, y in out.items() for k, v in _outputs(y, f"_{key}").items()}

    def with_uncertainty(flux, err, photometry=None):
        return draws(flux, err, tf.zeros([2], tf.int64), tf.constant(mc, tf.int32),
                     photometry)

    archive.add_endpoint("serving_default", serve, input_signature=[spec] + phot)
    archive.add_endpoint("monte_carlo", draws, input_signature=[
        spec, err_spec, tf.TensorSpec([2], tf.int64, name="seed"),
        tf.TensorSpec([], tf.int32, name="mc")] + phot)
    archive.add_endpoint("predict_with_uncertainty", with_uncertainty,
                         input_signature=[spec, err_spec] + phot)
    return archive


def bossnet_archive(model: keras.Model, conventions: dict, mc: int = MC_DRAWS,
                    ) -> keras.export.ExportArchive:
    """The three endpoints of APOGEE Net III or BOSS Net (the module's doc), their Monte Carlo
    ``bossnet_mc.bossnet_monte_carlo`` under ``conventions``."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    names = model.get_layer("labels").names
    n_model = int(model.input_shape[-1])
    network = standardised_network(model)
    boss = conventions["arch"] == "bossnet"
    native = [None, None if boss else n_model]
    extra = [tf.TensorSpec([None, None], tf.float32, name="wavelength")] if boss else []

    def serve(flux):
        return _outputs(model(flux, training=False), names=names)

    def draws(flux, err, seed, mc, wavelength=None):
        bad = ~tf.math.is_finite(err)
        out = bossnet_monte_carlo(
            lambda x: network(tf.ensure_shape(x, [None, n_model]), training=False), flux,
            tf.where(bad, tf.zeros_like(err), err), bad, mc, seed,
            order=conventions["output_order"], mean=conventions["mean"],
            std=conventions["std"], clip_together=conventions["mc"]["style"] == "astra",
            wavelength=wavelength)
        return {k: v for key, y in out.items() for k, v in _outputs(y, f"_{key}", names).items()}

    def with_uncertainty(flux, err, wavelength=None):
        return draws(flux, err, tf.zeros([2], tf.int64), tf.constant(mc, tf.int32), wavelength)

    spec = [tf.TensorSpec([None, n_model], tf.float32, name="flux")]
    mc_in = [tf.TensorSpec(native, tf.float32, name="flux"),
             tf.TensorSpec(native, tf.float32, name="err")]
    counts = [tf.TensorSpec([2], tf.int64, name="seed"), tf.TensorSpec([], tf.int32, name="mc")]
    archive.add_endpoint("serving_default", serve, input_signature=spec)
    if boss:
        archive.add_endpoint("monte_carlo", lambda flux, err, seed, mc, wavelength: draws(
            flux, err, seed, mc, wavelength), input_signature=mc_in + counts + extra)
        archive.add_endpoint("predict_with_uncertainty", lambda flux, err, wavelength:
                             with_uncertainty(flux, err, wavelength),
                             input_signature=mc_in + extra)
    else:
        archive.add_endpoint("monte_carlo", lambda flux, err, seed, mc: draws(
            flux, err, seed, mc), input_signature=mc_in + counts)
        archive.add_endpoint("predict_with_uncertainty", lambda flux, err: with_uncertainty(
            flux, err), input_signature=mc_in)
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
        _tflite_archive(model).write_out(tmp, verbose=False)
        # APOGEE Net III and BOSS Net: also ``network``, which their Monte Carlo runs
        keys = ("serving_default", "network") if is_bossnet(model) else ("serving_default",)
        for variant in ("float32", "int8"):
            if variant in variants or variant == "float32":
                converter = tf.lite.TFLiteConverter.from_saved_model(
                    tmp, signature_keys=list(keys))
                if variant == "int8":
                    converter.optimizations = [tf.lite.Optimize.DEFAULT]
                out[variant] = converter.convert()
    for variant, dtype in (("float16", "float16"), ("int8-weights", "int8")):
        if variant in variants:
            out[variant] = compress_dense_weights(out["float32"], dtype, int8_weight_layer(model))
    return {v: out[v] for v in variants}


def int8_weight_layer(model: keras.Model) -> str:
    """The dense layer whose weights the int8-weights file stores in int8: the largest, with most
    of the network's weights (Appendix B's fc1, 94%; APOGEE Net III's and BOSS Net's linear0,
    92%). Taken from the model: a name the quantizer matches nowhere leaves the file float32."""
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    return max(dense, key=lambda layer: layer.count_params()).name


def _tflite_archive(model: keras.Model) -> keras.export.ExportArchive:
    """The SavedModel the TFLite converter reads: ``serving_default`` flux (and photometry)
    -> ``labels``; APOGEE Net III and BOSS Net also ``network``, ``scaled`` -> ``z``."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    two = isinstance(model.input_shape, list)  # Net II: flux and photometry
    specs = [tf.TensorSpec([None, shape[-1]], tf.float32, name=name) for shape, name in zip(
        model.input_shape if two else [model.input_shape], ("flux", "photometry"))]
    if two:
        archive.add_endpoint("serving_default", lambda flux, photometry: {
            "labels": model([flux, photometry], training=False)}, input_signature=specs)
        return archive
    archive.add_endpoint("serving_default", lambda flux: {"labels": model(flux, training=False)},
                         input_signature=specs)
    if is_bossnet(model):
        network = standardised_network(model)
        archive.add_endpoint("network", lambda scaled: {"z": network(scaled, training=False)},
                             input_signature=[tf.TensorSpec(specs[0].shape, tf.float32,
                                                            name="scaled")])
    return archive


def compress_dense_weights(float32_tflite: bytes, dtype: str, layer: str) -> bytes:
    """A float32 flatbuffer with dense-layer weights stored as ``float16`` or ``int8``.

    ``float16``: the weights of every dense layer (Appendix B's fc1, fc2 and fc3: 99% of the
    parameters). ``int8``: the weights of ``layer`` (``int8_weight_layer``; Appendix B's fc1,
    94% of the parameters), per output channel, symmetric. The interpreter turns them back into
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
        qt.add_weight_only_config(rf".*/{re.escape(layer)}(_\d+)?/.*", fully_connected, 8)
    else:
        raise ApnetError(f"dense weights can be float16 or int8, not {dtype!r}")
    return bytes(qt.quantize(enable_progress_report=False).quantized_model)


def _is_old_export(folder: str) -> bool:
    """An export folder written before folders had markers: it holds export_metadata.json."""
    return os.path.exists(os.path.join(folder, METADATA))


@folders.reads_input("model_path")
@locks_output("out")
def export_model(model_path: str, out: str, version: int | None = None,
                 tflite: Sequence[str] = (), mc: int | None = None) -> dict:
    """Export a run folder or .keras file to ``out/<version>/`` (+ TFLite files and metadata).

    The version folder is built whole (SavedModel, assets.extra with metadata and calibration)
    under ``out/.tmp-<version>``, and the TFLite files are converted, before one rename makes it
    ``out/<version>``: a killed export leaves no version that looks complete. What follows the
    rename (the TFLite files and metadata beside it) is written file by file, atomically.

    Returns:
        The metadata written to ``out/export_metadata.json``.

    Raises:
        ApnetError: a bad option, a model that is not a Keras model (a SavedModel or TFLite
            file), a version that exists, or a write that fails (a full disk), naming the path.
    """
    if mc is not None:
        require_at_least(mc, 2, "--mc")
    unknown = [v for v in tflite if v not in TFLITE_VARIANTS]
    if unknown:
        raise ApnetError(f"--tflite: unknown variant {unknown[0]!r}; choose from "
                         f"{', '.join(TFLITE_VARIANTS)}")
    if version is not None:
        require_at_least(int(version), 1, "--version")
    folders.check(out, "export", legacy=_is_old_export)
    loaded = load_model(model_path)
    if loaded.kind != "keras":
        raise ApnetError(f"--model {model_path}: a {loaded.kind} model; export needs a run "
                         "folder or a .keras file (export the run it came from)")
    if mc is None:  # the network's own number of draws (astra's 20), else the paper's
        mc = int(((loaded.conventions or {}).get("mc") or {}).get("mc", MC_DRAWS))
    version = next_version(out) if version is None else int(version)
    final = os.path.join(out, str(version))
    if os.path.exists(final):
        raise ApnetError(f"{final}: version {version} exists; pick another --version")
    folders.claim(out, "export", legacy=_is_old_export)
    tmp = os.path.join(out, f".tmp-{version}")
    name = os.path.basename(os.path.normpath(out))
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        build_archive(loaded.model, mc, style=loaded.mc_style,
                      conventions=loaded.conventions).write_out(tmp, verbose=False)
        blobs = tflite_variants(loaded.model, tflite)
        files = {v: {"file": f"{name}_{v}.tflite", "bytes": len(b)} for v, b in blobs.items()}
        meta = _export_metadata(name, version, model_path, loaded, mc, files)
        _write_metadata(meta, loaded, [os.path.join(tmp, "assets.extra")])
        os.replace(tmp, final)
        for variant, data in blobs.items():
            write_file(os.path.join(out, files[variant]["file"]), data)
        _write_metadata(meta, loaded, [out])
    except (OSError, tf.errors.OpError) as exc:  # a full disk: one line naming the folder
        shutil.rmtree(tmp, ignore_errors=True)
        raise ApnetError(f"{out}: cannot write the export ({first_line(exc)})") from None
    return meta


def _export_metadata(name: str, version: int, model_path: str, loaded, mc: int,
                     tflite_files: dict) -> dict:
    """What ``export_metadata.json`` says of an export: source, versions, inputs and their
    shapes, signatures, Monte Carlo settings, target statistics, calibration, TFLite files."""
    norm = loaded.normalization or {}
    phot = model_photometry(loaded.model)
    return {
        "name": name, "version": version, "source": os.path.abspath(model_path),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tensorflow": tf.__version__, "keras": keras.__version__,
        "conventions": loaded.conventions,
        # the two-input model's photometry scaling (inside the model; here to be read)
        "photometry_scaling": None if phot is None else dict(
            zip(("columns", "fill", "mean", "std"), (list(PHOT_COLUMNS), *phot))),
        **(_bossnet_io(loaded) if is_bossnet(loaded.model) else {
            "inputs": {"flux": [None, N_PIXELS], "err": [None, N_PIXELS],
                       **({"photometry": [None, 7]} if loaded.takes_photometry else {})},
            "targets": list(TARGETS), "units": list(TARGET_UNITS),
            "signatures": {"serving_default": "flux -> teff, logg, fe_h",
                           "monte_carlo": "flux, err, seed, mc -> {target}_{mean,std,"
                                          "p16,p50,p84}; err = inf at masked pixels",
                           "predict_with_uncertainty": "flux, err -> {target}_{mean,std,p16,"
                                                       "p50,p84}; mc fixed, seed (0, 0)"}}),
        "mc": mc, "mc_error_cap": MC_ERROR_CAP,
        "target_mean": norm.get("mean"), "target_std": norm.get("std"),
        # the training label range, which the BAD flag of every runtime uses
        "target_min": norm.get("min"), "target_max": norm.get("max"),
        "calibration": None if loaded.calibration is None else CALIBRATION,
        # where the training (or calibration) stars lie, for the NOVEL bits: a file beside
        # this one, read as the run folder's is (``model.novelty``)
        "novelty": None if loaded.novelty is None else {
            "file": NOVELTY, "format": NOVELTY_FORMAT, "source": loaded.novelty.source,
            "stars": loaded.novelty.stars, "threshold": loaded.novelty.threshold},
        "tflite": tflite_files,
    }


def _bossnet_io(loaded) -> dict:
    """export_metadata.json's inputs, targets, units and signatures of APOGEE Net III or BOSS
    Net (the module's doc), with what a serving client does to a BOSS spectrum."""
    names = loaded.model.get_layer("labels").names
    boss = loaded.instrument == "boss"
    native = [None, None] if boss else [None, N_PIXELS]
    outs = ", ".join(names)
    mc_in = "flux, err" + (", wavelength" if boss else "")
    return {
        "inputs": {"flux": [None, int(loaded.model.input_shape[-1])],
                   "monte_carlo": {"flux": native, "err": native,
                                   **({"wavelength": native} if boss else {})}},
        "targets": names, "units": list(TARGET_UNITS) + (["km/s"] if boss else []),
        "signatures": {
            "serving_default": f"flux -> {outs}",
            "monte_carlo": f"{mc_in}, seed, mc -> {{target}}_{{value,mean,std,p16,p50,p84}}; "
                           "the native pixels, err = inf where a pixel gets no noise",
            "predict_with_uncertainty": f"{mc_in} -> the same; mc fixed, seed (0, 0)"},
        **({"serving_client": (
            "serving_default takes flux on BOSS Net's grid (conventions.input.grid): per "
            "spectrum, flux = apnet_tf.io.boss_grid.resample_boss(flux, 10 ** loglam) "
            "(astra's NaN rule; 'drop' for the authors' repository), or np.interp onto that "
            "grid; monte_carlo takes the native pixels, each row padded with NaN")}
           if boss else {}),
    }


def _write_metadata(meta: dict, loaded, dirs: list[str]) -> None:
    """Write the metadata, and the ``loaded`` model's calibration and novelty reference (or
    remove an earlier export's), to each of ``dirs`` (the version folder's assets.extra first,
    which is made here).

    A copy travels inside the version folder, where TF Serving ignores extra files; infer
    applies the calibration and the novelty test to every kind of model, so they travel the
    same way.
    """
    os.makedirs(dirs[0], exist_ok=True)
    for folder in dirs:
        write_json(os.path.join(folder, METADATA), meta)
        for name, part in ((CALIBRATION, loaded.calibration), (NOVELTY, loaded.novelty)):
            if part is not None:
                part.save(os.path.join(folder, name))
            elif os.path.exists(os.path.join(folder, name)):  # an earlier export's
                os.remove(os.path.join(folder, name))
