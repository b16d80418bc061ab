"""Streaming inference: models in, a catalog with uncertainties and flags out (paper Table 4).

Inputs are apStar files, folders, globs, or TFRecord folders from ``make-records``. They stream in
batches; an unreadable file is reported and the rest go on. The catalog is written atomically as
CSV or FITS (astropy).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

import numpy as np
from astropy.table import Table

from .catalog import model_identity, write_catalog  # noqa: F401 (write_catalog: public API)
from .constants import LABEL_COLUMNS, N_PIXELS, TARGETS
from .errors import ApnetError, first_line, require_at_least
from .files import read_json
from .spectra import DEFAULT_MASK_BITS

#: Paper 4.1: the (Teff, log g) triangle that selects YSO candidates.
YSO_TRIANGLE = ((2200.0, 4.4), (4500.0, 3.9), (3200.0, 1.7))
#: Paper 4.2: log g bin edges and the ages they stand for.
AGE_BIN_EDGES = (3.6, 3.8, 4.0, 4.2)
AGE_BIN_LABELS = ("<1 Myr", "1-2 Myr", "2-3 Myr", "3-5 Myr", ">5 Myr")
#: Paper 3.5: predictions above this Teff sit at the grid edge.
TEFF_EDGE_K = 6700.0
#: Paper 3.6: below this S/N the uncertainties are not reliable.
LOW_SNR = 20.0
#: Used for the BAD flag when a model carries no training label range.
FALLBACK_LABEL_RANGE = ((2000.0, 9000.0), (-1.0, 6.0), (-3.0, 1.0))
#: How far outside the training label range (as a fraction of its width) counts as "far".
BAD_RANGE_MARGIN = 0.2

CATALOG_COLUMNS = ("APOGEE_ID", "RA", "DEC", "TEFF", "TEFF_ERR", "LOGG", "LOGG_ERR", "FE_H",
                   "FE_H_ERR", "SNR")


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

    def label_range(self) -> tuple[tuple[float, float], ...]:
        norm = self.normalization or {}
        lo, hi = norm.get("min"), norm.get("max")
        if lo and hi and None not in lo and None not in hi:
            return tuple(zip(map(float, lo), map(float, hi)))
        return FALLBACK_LABEL_RANGE

    def predict(self, flux: np.ndarray) -> np.ndarray:
        flux = np.asarray(flux, np.float32)
        if self.kind == "keras":
            if not hasattr(self, "_plain"):
                from .model import predictor

                self._plain = predictor(self.model)
            return self._plain(flux)
        if self.kind == "saved_model":
            import tensorflow as tf

            out = self.model.signatures["serving_default"](flux=tf.constant(flux))
            return np.stack([out[t].numpy() for t in TARGETS], axis=1)
        return _tflite_rows(self.model, flux)

    def monte_carlo(self, flux, err, bad, realizations: int, mc_dropout: bool = False,
                    seed=0) -> dict[str, np.ndarray]:
        """Raw Monte Carlo summaries (B, 3) of flux, err, bad (B, 8575). ``seed``: an int or a
        tuple of ints (e.g. the job's seed and the batch; ``uncertainty.stateless_seed``), or
        None for fresh draws: the same seed gives the same numbers from a run folder, its
        SavedModel and its TFLite file."""
        import tensorflow as tf

        from .uncertainty import MonteCarloPredictor, check_realizations, clean_errors
        from .uncertainty import monte_carlo as run_mc
        from .uncertainty import stateless_seed

        realizations = check_realizations(realizations)
        if self.kind == "keras":
            key = (realizations, mc_dropout)
            if getattr(self, "_mc_key", None) != key:
                self._mc = MonteCarloPredictor(self.model, realizations, mc_dropout=mc_dropout)
                self._mc_key = key
            return self._mc(flux, err, bad, seed)
        if mc_dropout:
            raise ApnetError(f"{self.path}: MC dropout needs the Keras model (a run folder); "
                             "exported models carry input noise only")
        flux = tf.constant(flux, tf.float32)
        seed = tf.constant(stateless_seed(seed) if seed is not None else
                           np.random.default_rng().integers(0, 2**62, 2), tf.int64)
        if self.kind == "saved_model":
            from .uncertainty import mask_into_errors

            sig = self.model.signatures.get("monte_carlo")
            if sig is None:
                raise ApnetError(f"{self.path}: exported by an older apnet-tf (no monte_carlo "
                                 "signature); export it again")
            out = sig(flux=flux, err=tf.constant(mask_into_errors(err, bad)), seed=seed,
                      realizations=tf.constant(realizations, tf.int32))
            return {k: np.stack([out[f"{t}_{k}"].numpy() for t in TARGETS], axis=1)
                    for k in ("mean", "std", "p16", "p50", "p84")}
        # TFLite: the same function, run eagerly, with the interpreter as the model
        err, bad = clean_errors(err, bad)
        out = run_mc(lambda x: tf.constant(_tflite_rows(self.model, x.numpy())), flux, err, bad,
                     realizations, seed)
        return {k: v.numpy() for k, v in out.items()}


def _tflite_rows(runner, rows: np.ndarray, chunk: int = 1024) -> np.ndarray:
    outs = [runner(flux=np.ascontiguousarray(rows[i:i + chunk]))["labels"]
            for i in range(0, len(rows), chunk)]
    return np.concatenate(outs) if outs else np.empty((0, 3), np.float32)


def _read_calibration(path: str, wanted: bool):
    """The calibration.json at ``path`` (checked), or None when absent or not wanted."""
    from .calibration import Calibration

    return Calibration.load(path) if wanted and os.path.exists(path) else None


def load_model(path: str, calibration: bool = True) -> LoadedModel:
    """Load a run folder (best.keras, normalization.json, calibration.json), a .keras file, an
    exported SavedModel (its version folder, or the folder of versions: the newest), or a
    .tflite file. ``calibration=False`` leaves any calibration.json unread.

    Raises:
        ApnetError: nothing loadable at ``path``, or an invalid calibration.json.
    """
    from .calibration import CALIBRATION

    if path.endswith(".tflite"):
        if not os.path.exists(path):
            raise ApnetError(f"{path}: no such file")
        from ai_edge_litert.interpreter import Interpreter

        from .quiet import native_stderr_silenced

        try:
            interp = Interpreter(model_path=path, num_threads=os.cpu_count())
            runner = interp.get_signature_runner("serving_default")
            with native_stderr_silenced():  # LiteRT's one XNNPACK INFO line, on the first call
                runner(flux=np.zeros((1, N_PIXELS), np.float32))
        except Exception as exc:
            raise ApnetError(f"{path}: not a usable TFLite model ({first_line(exc)})") from None
        meta = read_json(os.path.join(os.path.dirname(path), "export_metadata.json"))
        cal = _read_calibration(os.path.join(os.path.dirname(path), CALIBRATION), calibration)
        return LoadedModel(runner, path, "tflite", calibration=cal, metadata=meta)
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "best.keras")):
        version_dir = path
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            versions = sorted((int(d) for d in os.listdir(path) if d.isdigit()
                               and os.path.exists(os.path.join(path, d, "saved_model.pb"))))
            if not versions:
                raise ApnetError(f"{path}: not a run folder (best.keras) or a SavedModel")
            version_dir = os.path.join(path, str(versions[-1]))
        import tensorflow as tf

        meta = read_json(os.path.join(version_dir, "assets.extra", "export_metadata.json"))
        cal = _read_calibration(os.path.join(version_dir, "assets.extra", CALIBRATION),
                                calibration)
        return LoadedModel(tf.saved_model.load(version_dir), version_dir, "saved_model",
                           calibration=cal, metadata=meta)

    if os.path.isdir(path):
        keras_path = os.path.join(path, "best.keras")
        norm = read_normalization(os.path.join(path, "normalization.json"))
        cal = _read_calibration(os.path.join(path, CALIBRATION), calibration)
    elif path.endswith(".keras") and os.path.exists(path):
        keras_path, norm, cal = path, None, None
    else:
        raise ApnetError(f"{path}: not a run folder, .keras, SavedModel or .tflite file")
    return LoadedModel(load_keras(keras_path), path, "keras", norm, cal)


def load_keras(path: str):
    """A .keras file as a keras.Model, with the package's layers registered.

    Raises:
        ApnetError: the file is missing, not a complete .keras (zip) archive, or Keras cannot
            build the model from it; the message names the file.
    """
    import zipfile

    import keras

    from . import model as _model  # noqa: F401  (registers the custom layers)

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
    try:
        mean = np.asarray(norm["mean"], dtype=float)
        std = np.asarray(norm["std"], dtype=float)
    except (KeyError, TypeError, ValueError):
        raise ApnetError(f"{path}: needs 'mean' and 'std', three numbers each") from None
    if mean.shape != (3,) or std.shape != (3,) or not (np.isfinite(mean).all()
                                                       and np.isfinite(std).all()
                                                       and (std > 0).all()):
        raise ApnetError(f"{path}: 'mean' and 'std' must be three finite numbers each, std "
                         f"positive; got {norm['mean']!r}, {norm['std']!r}")
    return norm


def in_triangle(teff, logg, triangle=YSO_TRIANGLE) -> np.ndarray:
    """Bool: (teff, logg) inside the triangle (paper 4.1); NaN gives False."""
    (x1, y1), (x2, y2), (x3, y3) = triangle
    x, y = np.asarray(teff, float), np.asarray(logg, float)

    def side(ax, ay, bx, by):
        return (x - bx) * (ay - by) - (ax - bx) * (y - by)

    d1, d2, d3 = side(x1, y1, x2, y2), side(x2, y2, x3, y3), side(x3, y3, x1, y1)
    neg = (d1 < 0) | (d2 < 0) | (d3 < 0)
    pos = (d1 > 0) | (d2 > 0) | (d3 > 0)
    return ~(neg & pos) & np.isfinite(x) & np.isfinite(y)


def age_bin(logg, candidate) -> np.ndarray:
    """Paper 4.2 age bin of each YSO candidate from log g; "" for other stars."""
    idx = np.digitize(np.asarray(logg, float), AGE_BIN_EDGES)
    labels = np.array(AGE_BIN_LABELS, dtype=object)[np.clip(idx, 0, 4)]
    return np.where(np.asarray(candidate, bool), labels, "")


def flags(teff, logg, fe_h, sigma, snr, label_range) -> dict[str, np.ndarray]:
    """YSO_CANDIDATE, AGE_BIN, TEFF_EDGE, LOW_SNR and BAD for a catalog. sigma: (N, 3)."""
    values = np.stack([teff, logg, fe_h], axis=1)
    finite = np.isfinite(values).all(axis=1) & (np.isfinite(sigma).all(axis=1) | np.isnan(
        sigma).all(axis=1))
    far = np.zeros(len(values), dtype=bool)
    for k, (lo, hi) in enumerate(label_range):
        margin = BAD_RANGE_MARGIN * (hi - lo)
        with np.errstate(invalid="ignore"):
            far |= (values[:, k] < lo - margin) | (values[:, k] > hi + margin)
    yso = in_triangle(teff, logg)
    with np.errstate(invalid="ignore"):
        return {"YSO_CANDIDATE": yso, "AGE_BIN": age_bin(logg, yso),
                "TEFF_EDGE": np.asarray(teff) > TEFF_EDGE_K,
                "LOW_SNR": np.asarray(snr, float) < LOW_SNR, "BAD": ~finite | far}


@dataclasses.dataclass
class InferenceResult:
    catalog: Table
    failures: list[str]


def predict_catalog(model: LoadedModel, inputs: Sequence[str], mc: int = 100,
                    batch_size: int = 256, calibrated: bool | None = None,
                    mc_dropout: bool = False, seed: int | None = None,
                    split_filter: Sequence[str] | None = None,
                    work_dir: str | None = None, on_progress: Callable[[int, int], None] | None
                    = None, workers: int = 0, listing=None,
                    mask_bits: Sequence[int] = DEFAULT_MASK_BITS) -> InferenceResult:
    """Predict Teff, log g, [Fe/H] (with Monte Carlo sigmas when mc > 0) for every input spectrum.

    Args:
        mc: realizations per star (paper: 100); 0 gives point predictions and NaN sigmas.
        calibrated: None (default): calibrated sigmas when the model has a calibration, else the
            raw Monte Carlo sigma; True: calibrated (an error without a calibration); False: the
            paper's raw Monte Carlo sigma.
        mc_dropout: add MC-dropout spread in quadrature (raw sigmas only).
        seed: the noise draws of batch k come from (seed, k): the same seed gives the same
            catalog however the job is cut, resumed or spread. None draws one.
        split_filter: for record folders, keep only the labelled stars of these splits.
        work_dir: keep each finished batch here; a re-run reuses them only if the model's
            content, the inputs and every setting are the same (see ``workdir``).
        workers: processes that read FITS files ahead of the model (0: in this process); they
            are spawned, so a script that uses them needs the ``if __name__ == "__main__":``.
        listing: a ``reading.Listing`` of an input table (``survey_table.read_listing``).
        mask_bits: apStar PIXMASK bits that mark a pixel bad in FITS inputs (as make-records';
            use the bits the training records were made with).

    Returns:
        The catalog (paper Table 4 columns, percentiles, flags; labels, split and category when
        the input is labelled records) and one line per unreadable file or missing input.
    """
    require_at_least(mc, 0, "--mc")
    require_at_least(batch_size, 1, "--batch-size")
    from . import workdir as wd
    from .calibration import sigma_settings
    from .reading import iter_units, plan_units

    calibrated, sigma_meta = sigma_settings(model, mc, calibrated, mc_dropout, seed)
    plan = plan_units(inputs, batch_size, split_filter, listing)
    settings = {"mc": mc, "batch_size": batch_size, "calibrated": calibrated,
                "mc_dropout": mc_dropout, "seed": seed, "splits": list(split_filter or [])}
    if tuple(mask_bits) != tuple(DEFAULT_MASK_BITS):
        settings["mask_bits"] = sorted(int(b) for b in mask_bits)
    seed = wd.prepare(work_dir, model, plan, settings) if work_dir else wd.new_seed(seed)
    sigma_meta["MCSEED"] = seed
    if seed is not None and mc_dropout:
        import keras

        keras.utils.set_random_seed(seed)  # dropout draws are not keyed by batch
    failures, parts, done = list(plan.failures), [], 0
    todo = [u for u in plan.units if not (work_dir and wd.has_part(work_dir, u.key))]
    reader = iter_units(todo, workers, mask_bits)
    try:
        for unit in plan.units:
            part = wd.load_part(work_dir, unit.key) if work_dir else None
            if part is None:
                got, batch, bad_files = next(reader)
                assert got.key == unit.key
                part = unit_part(model, batch, bad_files, mc, calibrated, mc_dropout,
                                 (seed, unit.key))
                if work_dir:
                    wd.save_part(work_dir, unit.key, part)
            failures.extend(str(f) for f in part.pop("_failures"))
            if part:
                parts.append(part)
            done += len(unit.paths) if unit.kind == "fits" else len(part.get("APOGEE_ID", ()))
            if on_progress:
                on_progress(min(done, plan.total), plan.total)
    finally:
        reader.close()
    return InferenceResult(catalog_from_parts(parts, failures, model, mc, sigma_meta), failures)


def unit_part(model: LoadedModel, batch, failures: list[str], mc: int, calibrated: bool,
              mc_dropout: bool, seed) -> dict[str, np.ndarray]:
    """The catalog columns of one unit's batch (none if no file was readable), and its
    unreadable files under "_failures"."""
    part = {} if batch is None else _predict_part(model, batch, mc, calibrated, mc_dropout, seed)
    part["_failures"] = np.array(failures, dtype=object)
    return part


def catalog_from_parts(parts: list[dict], failures: list[str], model: LoadedModel,
                       mc: int, sigma_meta: dict | None = None) -> Table:
    """One astropy Table from the parts of the units, in unit order; ``sigma_meta`` (from
    ``calibration.sigma_settings``) says what its sigmas are."""
    if not parts:
        raise ApnetError("no spectrum could be read: " + (failures[0] if failures else
                                                           "the inputs hold none"))
    names = list(dict.fromkeys(k for p in parts for k in p))  # records add label columns
    table = Table({k: np.concatenate([p[k] if k in p else _blank(parts, k, len(p["TEFF"]))
                                      for p in parts]) for k in names})
    for k, unit in zip(LABEL_COLUMNS, ("K", "dex", "dex")):
        for suffix in ("", "_ERR"):
            # 'dex' is no FITS unit, so it goes into the description where FITS keeps it
            table[k + suffix].description = unit
    table.meta["TARGETS"] = ",".join(TARGETS)
    table.meta["MC"] = mc
    table.meta.update(sigma_meta or {})
    table.meta.update(model_identity(model.path))
    return table


def _predict_part(model: LoadedModel, batch, mc: int, calibrated: bool,
                  mc_dropout: bool, seed=None) -> dict[str, np.ndarray]:
    """The catalog columns of one batch; ``seed`` (a pair of ints) keys its noise draws.

    A spectrum with no usable pixel (no finite flux or no finite error) gets NaN values and
    sigmas and the BAD flag: the network would otherwise give it a confident number.
    """
    if mc > 0:
        res = model.monte_carlo(batch.flux, batch.err, batch.bad, mc, mc_dropout, seed=seed)
        if calibrated is None:  # a caller that did not ask sigma_settings (the Ray engine)
            calibrated = model.calibration is not None and not mc_dropout
        if calibrated:
            from .calibration import calibrated_summaries

            res = calibrated_summaries(res, model.calibration)
        value, sigma = res["mean"], res["std"]
        pct = {p: res[p] for p in ("p16", "p50", "p84") if p in res}
    else:
        value = model.predict(batch.flux)
        sigma = np.full_like(value, np.nan)
        pct = {}
    dead = np.asarray(batch.bad).all(axis=1)
    if dead.any():
        value, sigma = _nan_rows(value, dead), _nan_rows(sigma, dead)
        pct = {p: _nan_rows(v, dead) for p, v in pct.items()}
    part = {"APOGEE_ID": batch.apogee_id, "RA": batch.ra, "DEC": batch.dec}
    for k, col in enumerate(LABEL_COLUMNS):
        part[col] = value[:, k]
        part[f"{col}_ERR"] = sigma[:, k]
    part["SNR"] = batch.snr
    for p, arr in pct.items():
        for k, col in enumerate(LABEL_COLUMNS):
            part[f"{col}_{p.upper()}"] = arr[:, k]
    part.update(flags(value[:, 0], value[:, 1], value[:, 2], sigma, batch.snr,
                      model.label_range()))
    if batch.labels is not None:
        for k, col in enumerate(LABEL_COLUMNS):
            part[f"{col}_LABEL"] = batch.labels[:, k]
        part["SPLIT"], part["CATEGORY"] = batch.split, batch.category
    part.update(batch.extra or {})
    part["FILE"] = batch.source
    return part


def _blank(parts: list[dict], name: str, n: int) -> np.ndarray:
    """n empty values (NaN, False or "") for a column that other parts have."""
    like = next(p[name] for p in parts if name in p)
    if like.dtype.kind in "fc":
        return np.full(n, np.nan, like.dtype)
    return np.zeros(n, bool) if like.dtype.kind == "b" else np.full(n, "", dtype=object)


def _nan_rows(arr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = np.array(arr, dtype=np.result_type(arr.dtype, np.float32))
    out[rows] = np.nan
    return out

