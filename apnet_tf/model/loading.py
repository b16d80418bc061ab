"""Loading a model to predict with: a run folder, a .keras file, an exported SavedModel or a
TFLite file, each with its normalisation and sigma calibration where it carries them.

Importing this module does not import TensorFlow; loading a model does.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from apnet_tf.constants import N_PIXELS, RENAMED, TARGETS
from apnet_tf.data.manifest import read_manifest, records_hold_photometry
from apnet_tf.errors import ApnetError, first_line
from apnet_tf.io.files import read_json
from apnet_tf.io.photometry import PHOT_COLUMNS
from apnet_tf.model.calibration import CALIBRATION, Calibration
from apnet_tf.model.network import predictor, takes_photometry
from apnet_tf.model.precision import computing_in
from apnet_tf.model.published import conventions as published_conventions
from apnet_tf.model.published import (
    conventions_of,
    mc_style,
    read_conventions,
)
from apnet_tf.model.uncertainty import (
    SUMMARIES,
    MonteCarloPredictor,
    check_mc,
    clean_errors,
    mask_into_errors,
    stateless_seed,
)
from apnet_tf.model.uncertainty import monte_carlo as run_mc
from apnet_tf.quiet import native_stderr_silenced

__all__ = ["FALLBACK_LABEL_RANGE", "LoadedModel", "load_model", "load_keras", "read_normalization"]

#: Used for the BAD flag when a model carries no training label range.
FALLBACK_LABEL_RANGE = ((2000.0, 9000.0), (-1.0, 6.0), (-3.0, 1.0))


@dataclasses.dataclass
class LoadedModel:
    """A model to predict with: a Keras model (run folder or .keras), a SavedModel, or TFLite.

    ``predict(flux)`` gives (B, 3) physical units; ``monte_carlo(...)`` gives the summaries of
    ``uncertainty.monte_carlo`` (mean, std, p16, p50, p84), the same for every kind of model.
    """

    model: object  # keras.Model, a loaded SavedModel, or a LiteRT signature runner
    path: str
    kind: str = "keras"  # "keras", "saved_model" or "tflite"
    normalization: dict | None = None
    calibration: object | None = None  # calibration.Calibration
    metadata: dict | None = None  # export_metadata.json of a SavedModel or TFLite export
    conventions: dict | None = None  # a published network's (``published.conventions``)
    takes_photometry: bool = False  # a two-input model: flux and (B, 7) raw photometry
    precision: str = "float32"  # the forward pass's compute precision (``in_precision``)

    def in_precision(self, precision: str) -> LoadedModel:
        """This model with its forward pass (plain and Monte Carlo alike) in ``precision``, one
        of ``PRECISIONS``: itself for float32, else a Keras model's bfloat16 twin
        (``precision.computing_in``; same weights, float32 outputs).

        Raises:
            ApnetError: bfloat16 asked of a SavedModel or TFLite file, whose graph is fixed.
        """
        if precision == self.precision:
            return self
        if self.kind != "keras":
            raise ApnetError(f"{self.path}: --precision {precision} needs a Keras model (a run "
                             f"folder or .keras file); a {self.kind.replace('_', ' ')} computes "
                             f"in the precision it was exported with")
        return dataclasses.replace(self, model=computing_in(self.model, precision),
                                   precision=precision)

    def refuse_without_photometry(self, what: str, records_dir: str) -> None:
        """ApnetError for a two-input model (APOGEE Net II, fit --arch anet2) in a job on a
        record folder made without photometry: its fill values would stand in for every
        star's, silently."""
        if self.takes_photometry and not records_hold_photometry(read_manifest(records_dir)):
            raise ApnetError(f"{self.path}: {what} needs photometry for this two-input model "
                             f"(APOGEE Net II layout), and {records_dir} holds none; make the "
                             "records with make-records --photometry, or run infer with "
                             "--photometry or --table")

    @property
    def mc_style(self) -> str:
        return mc_style(self.conventions)

    def label_range(self) -> tuple[tuple[float, float], ...]:
        norm = self.normalization or {}
        lo, hi = norm.get("min"), norm.get("max")
        if lo and hi and None not in lo and None not in hi:
            return tuple(zip(map(float, lo), map(float, hi)))
        return FALLBACK_LABEL_RANGE

    def predict(self, flux: np.ndarray, photometry: np.ndarray | None = None) -> np.ndarray:
        """(B, 3) physical units of flux (B, 8575) and, for Net II, raw photometry (B, 7)."""
        flux = np.asarray(flux, np.float32)
        inputs = {"flux": flux}
        if self.takes_photometry:
            if photometry is None:
                raise ApnetError(f"{self.path}: this model (APOGEE Net II) takes photometry as "
                                 "well as flux")
            inputs["photometry"] = np.asarray(photometry, np.float32)
        if self.kind == "keras":
            if not hasattr(self, "_plain"):
                self._plain = predictor(self.model)
            return self._plain(*inputs.values())
        if self.kind == "saved_model":
            import tensorflow as tf

            out = self.model.signatures["serving_default"](
                **{k: tf.constant(v) for k, v in inputs.items()})
            return np.stack([out[t].numpy() for t in TARGETS], axis=1)
        return _tflite_rows(self.model, **inputs)

    def monte_carlo(self, flux, err, bad, mc: int, mc_dropout: bool = False,
                    seed=0, photometry=None) -> dict[str, np.ndarray]:
        """Raw Monte Carlo summaries (B, 3) of flux, err, bad (B, 8575). ``seed``: an int or a
        tuple of ints (e.g. the job's seed and the batch; ``uncertainty.stateless_seed``), or
        None for fresh draws: the same seed gives the same numbers from a run folder, its
        SavedModel and its TFLite file. ``photometry``: (B, 7) raw, for Net II. The Monte
        Carlo is the model's own (``mc_style``)."""
        import tensorflow as tf

        mc = check_mc(mc)
        if self.takes_photometry and photometry is None:
            raise ApnetError(f"{self.path}: this model (APOGEE Net II) takes photometry as "
                             "well as flux")
        phot = None if not self.takes_photometry else np.asarray(photometry, np.float32)
        if self.kind == "keras":
            key = (mc, mc_dropout)
            if getattr(self, "_mc_key", None) != key:
                self._mc = MonteCarloPredictor(self.model, mc, mc_dropout=mc_dropout,
                                               style=self.mc_style)
                self._mc_key = key
            return self._mc(flux, err, bad, seed, photometry=phot)
        if mc_dropout:
            raise ApnetError(f"{self.path}: MC dropout needs the Keras model (a run folder); "
                             "exported models carry input noise only")
        flux = tf.constant(flux, tf.float32)
        seed = tf.constant(stateless_seed(seed) if seed is not None else
                           np.random.default_rng().integers(0, 2**62, 2), tf.int64)
        if self.kind == "saved_model":
            sig = self.model.signatures.get("monte_carlo")
            if sig is None:
                raise ApnetError(f"{self.path}: exported by an older apnet-tf (no monte_carlo "
                                 "signature); export it again")
            extra = {} if phot is None else {"photometry": tf.constant(phot)}
            # the published networks' Monte Carlo takes no pixel mask (as on the other paths)
            mask = bad if self.mc_style == "apnet" else None
            # an export of the release before the draws' input was named "mc"
            count = next(k for k in sig.structured_input_signature[1]
                         if RENAMED.get(k, k) == "mc")
            out = sig(flux=flux, err=tf.constant(mask_into_errors(err, mask)), seed=seed,
                      **{count: tf.constant(mc, tf.int32)}, **extra)
            return {k: np.stack([out[f"{t}_{k}"].numpy() for t in TARGETS], axis=1)
                    for k in SUMMARIES if f"teff_{k}" in out}
        # TFLite: the same function, run eagerly, with the interpreter as the model
        err, bad = clean_errors(err, bad)
        out = run_mc(lambda x, m=None: tf.constant(_tflite_rows(
            self.model, x.numpy(), None if m is None else m.numpy())), flux, err, bad,
            mc, seed, style=self.mc_style, photometry=phot)
        return {k: v.numpy() for k, v in out.items()}


def _tflite_rows(runner, flux: np.ndarray, photometry: np.ndarray | None = None,
                 chunk: int = 1024) -> np.ndarray:
    outs = []
    for i in range(0, len(flux), chunk):
        feed = {"flux": np.ascontiguousarray(flux[i:i + chunk])}
        if photometry is not None:
            feed["photometry"] = np.ascontiguousarray(photometry[i:i + chunk], np.float32)
        outs.append(runner(**feed)["labels"])
    return np.concatenate(outs) if outs else np.empty((0, 3), np.float32)


def _read_calibration(path: str, wanted: bool):
    """The calibration.json at ``path`` (checked), or None when absent or not wanted."""
    return Calibration.load(path) if wanted and os.path.exists(path) else None


def load_model(path: str, calibration: bool = True) -> LoadedModel:
    """Load a run folder (best.keras, normalization.json, calibration.json), a .keras file, an
    exported SavedModel (its version folder, or the folder of versions: the newest), or a
    .tflite file. ``calibration=False`` leaves any calibration.json unread.

    Raises:
        ApnetError: nothing loadable at ``path``, or an invalid calibration.json.
    """
    if path.endswith(".tflite"):
        if not os.path.exists(path):
            raise ApnetError(f"{path}: no such file")
        from ai_edge_litert.interpreter import Interpreter

        try:
            interp = Interpreter(model_path=path, num_threads=os.cpu_count())
            runner = interp.get_signature_runner("serving_default")
            feed = {"flux": np.zeros((1, N_PIXELS), np.float32)}
            if "photometry" in runner.get_input_details():
                feed["photometry"] = np.zeros((1, len(PHOT_COLUMNS)), np.float32)
            with native_stderr_silenced():  # LiteRT's one XNNPACK INFO line, on the first call
                runner(**feed)
        except Exception as exc:
            raise ApnetError(f"{path}: not a usable TFLite model ({first_line(exc)})") from None
        meta = read_json(os.path.join(os.path.dirname(path), "export_metadata.json"))
        cal = _read_calibration(os.path.join(os.path.dirname(path), CALIBRATION), calibration)
        conv = (meta or {}).get("conventions")
        if meta is None and "photometry" in feed:  # the file alone: taken for the published
            conv = published_conventions("anet2")  # Net II (a fitted one's MC is the package's)
        return LoadedModel(runner, path, "tflite", calibration=cal, metadata=meta,
                           conventions=conv, takes_photometry="photometry" in feed)
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "best.keras")):
        version_dir = path
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            versions = sorted((int(d) for d in os.listdir(path) if d.isdigit()
                               and os.path.exists(os.path.join(path, d, "saved_model.pb"))))
            if not versions:
                raise ApnetError(f"{path}: not a run folder (best.keras) or a SavedModel")
            version_dir = os.path.join(path, str(versions[-1]))
        import tensorflow as tf

        extra = os.path.join(version_dir, "assets.extra")
        meta = read_json(os.path.join(extra, "export_metadata.json"))
        cal = _read_calibration(os.path.join(extra, CALIBRATION), calibration)
        saved, inputs = _check_signature(tf.saved_model.load(version_dir), version_dir)
        return LoadedModel(saved, version_dir, "saved_model", calibration=cal, metadata=meta,
                           conventions=(meta or {}).get("conventions"),
                           takes_photometry="photometry" in inputs)
    if os.path.isdir(path):
        keras_path = os.path.join(path, "best.keras")
        norm = read_normalization(os.path.join(path, "normalization.json"))
        cal = _read_calibration(os.path.join(path, CALIBRATION), calibration)
    elif path.endswith(".keras") and os.path.exists(path):
        keras_path, norm, cal = path, None, None
    else:
        raise ApnetError(f"{path}: not a run folder, .keras, SavedModel or .tflite file")
    model = load_keras(keras_path)
    conv = read_conventions(path) if os.path.isdir(path) else None
    return LoadedModel(model, path, "keras", norm, cal,
                       conventions=conv or conventions_of(model),
                       takes_photometry=takes_photometry(model))


def load_keras(path: str):
    """A .keras file as a keras.Model, with the package's layers registered.

    Raises:
        ApnetError: the file is missing, not a complete .keras (zip) archive, or Keras cannot
            build the model from it; the message names the file.
    """
    import zipfile

    import keras

    if not os.path.isfile(path):
        raise ApnetError(f"{path}: no such model file")
    # Keras reports a damaged archive as "File not found"; say what is wrong instead.
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ApnetError(f"{path}: not a complete .keras file (truncated or damaged: "
                         f"{first_line(exc)})") from None
    if damaged is not None:
        raise ApnetError(f"{path}: damaged .keras file ({damaged} fails its checksum)")
    try:
        return keras.models.load_model(path)
    except Exception as exc:  # keras raises many types for a bad file
        raise ApnetError(f"{path}: cannot load model ({first_line(exc)})") from None


def _check_signature(saved, path: str):
    """(saved, the names of serving_default's inputs) for a SavedModel that apnet-tf exported:
    serving_default takes flux (and photometry), returns the targets."""
    sig = getattr(saved, "signatures", {}).get("serving_default")
    inputs = set(sig.structured_input_signature[1]) if sig is not None else set()
    outputs = set(sig.structured_outputs) if sig is not None else set()
    if "flux" not in inputs or not set(TARGETS) <= outputs:
        raise ApnetError(f"{path}: a SavedModel whose serving_default signature does not take "
                         f"flux and return {', '.join(TARGETS)} (inputs {sorted(inputs)}): not "
                         "exported by apnet-tf; export a run with apnet-tf export")
    return saved, inputs


def read_normalization(path: str) -> dict | None:
    """A run's normalization.json, checked: three finite means and positive stds.

    Returns None when the file is absent (a run folder may hold only best.keras).

    Raises:
        ApnetError: the file is present but unreadable or does not hold usable statistics.
    """
    if not os.path.exists(path):
        return None
    norm = read_json(path)
    if not isinstance(norm, dict):
        raise ApnetError(f"{path}: not readable JSON; re-run fit, or import-torch, to rewrite "
                         "it")
    for key in ("mean", "std", "min", "max"):
        values = norm.get(key)
        if key in ("mean", "std") or values is not None:
            if not isinstance(values, list) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool)
                    or (v is None and key in ("min", "max")) for v in values):
                raise ApnetError(f"{path}: '{key}' must be three numbers (teff, logg, fe_h), got "
                                 f"{values!r}; re-run fit, or import-torch, to rewrite it")
    mean = np.asarray(norm["mean"], dtype=float)
    std = np.asarray(norm["std"], dtype=float)
    if mean.shape != (3,) or std.shape != (3,) or not (np.isfinite(mean).all()
                                                       and np.isfinite(std).all()
                                                       and (std > 0).all()):
        raise ApnetError(f"{path}: 'mean' and 'std' must be three finite numbers each, std "
                         f"positive; got {norm['mean']!r}, {norm['std']!r}")
    return norm
