"""Streaming inference: models in, a catalog with uncertainties and flags out (paper Table 4).

Inputs are apStar files, folders, globs, or TFRecord folders from ``make-records``. They stream in
batches; an unreadable file is reported and the rest go on. The catalog is written atomically as
CSV or FITS (astropy).

Models are loaded by ``model.loading``, a job's settings are one ``settings.InferenceSettings``
and the predictions are flagged by ``io.catalog_flags``; every column made here is one of
``io.catalog_schema.SCHEMA``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from astropy.table import Table

from apnet_tf.constants import AUTO_PRECISION_PROBE, LABEL_COLUMNS, MC_DRAWS, TARGETS
from apnet_tf.data.planning import plan_units
from apnet_tf.data.pool import iter_units
from apnet_tf.data.readers import read_unit
from apnet_tf.errors import ApnetError
from apnet_tf.inference import workdir as wd
from apnet_tf.inference.settings import InferenceSettings
from apnet_tf.io.catalog import model_identity
from apnet_tf.io.catalog_flags import (
    INPUT_GARBAGE,
    flag_value,
    flags,
    input_flags,
)
from apnet_tf.io.catalog_schema import schema_column, schema_position
from apnet_tf.io.photometry import PHOT_COLUMNS, filled_bits, lookup
from apnet_tf.io.spectra import DEFAULT_MASK_BITS
from apnet_tf.model.calibration import calibrated_summaries, sigma_settings
from apnet_tf.model.precision import (
    auto_line,
    auto_precision,
    check_inference_precision,
    label_spread,
    precision_shift,
)
from apnet_tf.model.runtime import Runtime

__all__ = [
    "InferenceResult", "predict_catalog", "predict_settings", "job_precision",
    "choose_precision", "seeded_job", "unit_part",
    "catalog_from_parts", "batch_photometry"
]


@dataclasses.dataclass
class InferenceResult:
    catalog: Table
    failures: list[str]  # skipped inputs: one line each
    notes: list[str] = dataclasses.field(default_factory=list)  # e.g. an input table's repeats
    precision: str = ""  # what --precision auto chose, and why, in one line ("" otherwise)


def predict_catalog(model: Runtime, inputs: Sequence[str], mc: int = MC_DRAWS,
                    batch_size: int = 256, calibrated: bool | None = None,
                    mc_dropout: bool = False, seed: int | None = None,
                    split_filter: Sequence[str] | None = None,
                    work_dir: str | None = None, on_progress: Callable[[int, int], None] | None
                    = None, workers: int = 0, listing=None,
                    mask_bits: Sequence[int] = DEFAULT_MASK_BITS,
                    photometry: dict | None = None,
                    rows: Mapping[str, Sequence[int]] | None = None,
                    precision: str = "float32") -> InferenceResult:
    """Predict Teff, log g, [Fe/H] (with Monte Carlo sigmas when mc > 0) for every input spectrum:
    ``predict_settings`` with the settings as keywords.

    ``mc``, ``batch_size``, ``calibrated``, ``mc_dropout``, ``seed``, ``split_filter``,
    ``mask_bits``, ``photometry`` and ``precision`` are the job's ``settings.InferenceSettings``
    (see there); ``work_dir``, ``on_progress``, ``workers``, ``listing`` and ``rows`` are as
    ``predict_settings``'s.

    Returns:
        The catalog (paper Table 4 columns, percentiles, flags; labels, split and category when
        the input is labelled records) and one line per unreadable file or missing input.
    """
    settings = InferenceSettings(mc=mc, batch_size=batch_size, calibrated=calibrated,
                                 mc_dropout=mc_dropout, seed=seed, split_filter=split_filter,
                                 mask_bits=mask_bits, photometry=photometry,
                                 precision=precision)
    return predict_settings(model, inputs, settings, work_dir=work_dir,
                            on_progress=on_progress, workers=workers, listing=listing,
                            rows=rows)


def predict_settings(model: Runtime, inputs: Sequence[str], settings: InferenceSettings, *,
                     work_dir: str | None = None,
                     on_progress: Callable[[int, int], None] | None = None,
                     workers: int | None = 0, listing=None,
                     rows: Mapping[str, Sequence[int]] | None = None) -> InferenceResult:
    """The local engine: the catalog of ``inputs`` under ``settings``, computed in this process.

    Args:
        work_dir: keep each finished batch here; a re-run reuses them only if the model's
            content, the inputs and every setting are the same (see ``workdir``).
        on_progress: called as on_progress(spectra done, total) after each batch.
        workers: processes that read FITS files ahead of the model (0: in this process; None:
            ``pool.default_workers``); they are spawned, so a script that uses them needs
            the ``if __name__ == "__main__":`` guard.
        listing: a ``survey_table.Listing`` of an input table (``survey_table.read_listing``).
        rows: for record folders, only these shards and of each only the records at these
            positions (``planning.plan_units``; the calibration's subset).

    Returns:
        The catalog and one line per unreadable file or missing input; for precision "auto",
        the line that says what it chose.
    """
    settings = settings.for_model(model).check()
    calibrated, sigma_meta = sigma_settings(model, settings.mc, settings.calibrated,
                                            settings.mc_dropout, settings.seed)
    plan = plan_units(inputs, settings.batch_size, settings.split_filter, listing, rows)
    model, line = job_precision(model, plan, settings.precision, settings.mask_bits_used,
                                settings.photometry)
    job = dataclasses.replace(settings, calibrated=calibrated, precision=model.precision)
    seed = (wd.prepare(work_dir, model, plan, job.fingerprint()) if work_dir
            else wd.new_seed(settings.seed))
    parts, failures = _predict_units(model, plan, seeded_job(job, seed, sigma_meta),
                                     work_dir, on_progress, workers)
    return InferenceResult(catalog_from_parts(parts, failures, model, settings.mc, sigma_meta),
                           failures, precision=line)


def seeded_job(job: InferenceSettings, seed: int, sigma_meta: dict) -> InferenceSettings:
    """``job`` drawing with ``seed``, which ``sigma_meta`` (the catalog's keywords) records as
    MCSEED; MC dropout, whose draws are not keyed by batch, is seeded with it here."""
    sigma_meta["MCSEED"] = seed
    if seed is not None and job.mc_dropout:
        import keras

        keras.utils.set_random_seed(seed)
    return dataclasses.replace(job, seed=seed)


def job_precision(model: Runtime, plan, precision: str,
                  mask_bits: Sequence[int] = DEFAULT_MASK_BITS, photometry: dict | None = None,
                  ) -> tuple[Runtime, str]:
    """The model a job predicts with, in ``precision``, and for "auto" the line that says
    what it chose and why ("" otherwise).

    "auto" is ``precision.auto_precision``'s rule, as in ``fit``: float32 unless the machine
    computes bfloat16 in hardware (and the model is a Keras one); then the job's first spectra
    (at most ``AUTO_PRECISION_PROBE`` usable ones, from the first units of ``plan``) run both
    ways, and bfloat16 is kept only if its shift is within the bound of
    ``precision.auto_choice`` for every label, in units of the label's spread
    (``precision.label_spread``). The probe is measured on this model and these spectra, so the
    choice holds for any model, published ones included.
    """
    return choose_precision(model, precision, lambda: _probe(plan, mask_bits, photometry,
                                                             model.takes_photometry))


def choose_precision(model: Runtime, precision: str, probe: Callable[[], tuple | None],
                     ) -> tuple[Runtime, str]:
    """``job_precision``'s choice, with the spectra to measure "auto" on from ``probe()``
    (``Runtime.predict`` arguments, or None when there is no usable spectrum), called only
    when the measurement is needed."""
    check_inference_precision(precision)
    if precision != "auto":
        return model.in_precision(precision), ""
    spread = label_spread(model.normalization, model.model if model.kind == "keras" else None)
    why = ("only a Keras model (run folder or .keras) computes in bfloat16"
           if model.kind != "keras" else "this machine has no bfloat16 hardware"
           if auto_precision() == "float32" else "the model says nothing of its label spread"
           if spread is None else "")
    measured_on = None if why else probe()
    if measured_on is None:
        return model, auto_line("float32", why=why or "no usable spectrum to measure on")
    twin = model.in_precision("mixed_bfloat16")
    median, largest = precision_shift(model.predict(*measured_on),
                                      twin.predict(*measured_on), spread)
    choice = auto_precision(median, largest)
    return (twin if choice == "mixed_bfloat16" else model), auto_line(choice, median, largest)


def _probe(plan, mask_bits: Sequence[int], photometry: dict | None, two_inputs: bool,
           ) -> tuple | None:
    """Up to ``AUTO_PRECISION_PROBE`` usable spectra from the first units of ``plan`` (from at
    most as many of its files or shards), as ``Runtime.predict`` arguments (flux, and
    photometry for a two-input model); None if they hold none."""
    flux, phot, n, tried = [], [], 0, 0
    for unit in plan.units:
        if tried >= AUTO_PRECISION_PROBE:
            break
        paths = unit.paths[:AUTO_PRECISION_PROBE - max(n, tried)]
        tried += len(paths)
        batch, _ = read_unit(dataclasses.replace(
            unit, paths=paths, extra=tuple((k, v[:len(paths)]) for k, v in unit.extra)),
            mask_bits)
        if batch is None:
            continue
        good = (input_flags(batch.flux, batch.err, batch.bad) & INPUT_GARBAGE) == 0
        flux.append(batch.flux[good][:AUTO_PRECISION_PROBE - n])
        if two_inputs:
            phot.append(batch_photometry(batch, photometry)[good][:len(flux[-1])])
        n += len(flux[-1])
        if n >= AUTO_PRECISION_PROBE:
            break
    if not n:
        return None
    return (np.concatenate(flux),) + ((np.concatenate(phot),) if two_inputs else ())


def _predict_units(model: Runtime, plan, settings: InferenceSettings, work_dir: str | None,
                   on_progress: Callable[[int, int], None] | None, workers: int | None,
                   ) -> tuple[list[dict], list[str]]:
    """The catalog parts of the units of ``plan`` (a ``planning.Plan``), in unit order, and the
    failure lines. Parts already in ``work_dir`` are reused; the others are read ahead by
    ``workers`` processes, predicted and, with a ``work_dir``, kept there."""
    failures, parts, done = list(plan.failures), [], 0
    todo = [u for u in plan.units if not (work_dir and wd.has_part(work_dir, u.key))]
    reader = iter_units(todo, workers, settings.mask_bits_used)
    try:
        for unit in plan.units:
            part = wd.load_part(work_dir, unit.key) if work_dir else None
            if part is None:
                got, batch, bad_files = next(reader)
                assert got.key == unit.key
                part = unit_part(model, batch, bad_files, settings, unit.key)
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
    return parts, failures


def unit_part(model: Runtime, batch, failures: list[str], settings: InferenceSettings,
              key: int) -> dict[str, np.ndarray]:
    """The catalog columns of unit ``key``'s batch (none if no file was readable), and its
    unreadable files under "_failures". Its noise draws come from (``settings.seed``, key)."""
    if batch is not None and model.takes_photometry:
        batch.photometry = batch_photometry(batch, settings.photometry)
    part = {} if batch is None else _predict_part(model, batch, settings.mc, settings.calibrated,
                                                  settings.mc_dropout, (settings.seed, key))
    part["_failures"] = np.array(failures, dtype=object)
    return part


def batch_photometry(batch, table: dict | None) -> np.ndarray:
    """(B, 7) raw photometry of a batch: a ``--photometry`` table's row for each star in it,
    else the input table's, else NaN (which Net II fills)."""
    n = len(batch.apogee_id)
    phot = (np.full((n, len(PHOT_COLUMNS)), np.nan) if batch.photometry is None
            else np.array(batch.photometry, dtype=np.float64))
    if table is not None:
        found = np.array([str(i).strip() in table for i in batch.apogee_id], dtype=bool)
        if found.any():
            phot[found] = lookup(table, np.asarray(batch.apogee_id)[found])
    return phot


def catalog_from_parts(parts: list[dict], failures: list[str], model: Runtime,
                       mc: int, sigma_meta: dict | None = None) -> Table:
    """One astropy Table from the parts of the units, in unit order; ``sigma_meta`` (from
    ``calibration.sigma_settings``) says what its sigmas are."""
    if not parts:
        raise ApnetError("no spectrum could be read: " + (failures[0] if failures else
                                                           "the inputs hold none"))
    names = list(dict.fromkeys(k for p in parts for k in p))  # records add label columns
    for name in names:
        if schema_column(name) is None:  # a programming error, never a user's
            raise AssertionError(f"catalog column {name} is not in io.catalog_schema.SCHEMA")
    names.sort(key=schema_position)  # the order the schema, and so the guide, gives
    table = Table({k: np.concatenate([p[k] if k in p else _blank(parts, k, len(p["TEFF"]))
                                      for p in parts]) for k in names})
    for name in table.colnames:
        col = schema_column(name)
        if col.source == "model" and col.unit and not name.endswith(("_P16", "_P50", "_P84")):
            # 'dex' is no FITS unit, so it goes into the description where FITS keeps it
            table[name].description = col.unit
    table.meta["TARGETS"] = ",".join(TARGETS)
    table.meta["MC"] = mc
    table.meta["PRECISN"] = model.precision
    if model.conventions:  # a published network: whose conventions
        table.meta["NETWORK"] = model.conventions["arch"]
    table.meta["MCVALUE"] = ("single pass" if mc == 0 else
                             "median" if model.mc_style == "anet2" else "mean")
    table.meta.update(sigma_meta or {})
    table.meta.update(model_identity(model.path))
    return table


def _predict_part(model: Runtime, batch, mc: int, calibrated: bool,
                  mc_dropout: bool, seed=None) -> dict[str, np.ndarray]:
    """The catalog columns of one batch; ``seed`` (a pair of ints) keys its noise draws.

    A spectrum that ``catalog_flags.input_flags`` finds garbage (no usable pixel, all-zero or
    mostly non-positive flux, no usable error, an implausible flux scale) gets NaN values and
    sigmas, the reason in APNET_FLAG and BAD: the network would otherwise give it a confident
    number. The same checks run for every kind of model, with or without Monte Carlo.
    """
    raw = None
    phot = {} if batch.photometry is None or not model.takes_photometry else \
        {"photometry": batch.photometry}
    if mc > 0:
        res = model.monte_carlo(batch.flux, batch.err, batch.bad, mc, seed=seed,
                                mc_dropout=mc_dropout, **phot)
        raw = res["std"]
        if calibrated is None:  # a caller that did not ask sigma_settings (the Ray engine)
            calibrated = model.calibration is not None and not mc_dropout
        if calibrated:
            res = calibrated_summaries(res, model.calibration, batch.snr)
        value, sigma = res.get("value", res["mean"]), res["std"]
        pct = {p: res[p] for p in ("p16", "p50", "p84") if p in res}
    else:
        value = model.predict(batch.flux, **phot)
        sigma = np.full_like(value, np.nan)
        pct = {}
    input_bits = input_flags(batch.flux, batch.err, batch.bad)
    dead = (input_bits & INPUT_GARBAGE) != 0
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
                      model.label_range(), input_bits, raw))
    if batch.labels is not None:
        for k, col in enumerate(LABEL_COLUMNS):
            part[f"{col}_LABEL"] = batch.labels[:, k]
        part["SPLIT"], part["CATEGORY"] = batch.split, batch.category
    part.update(batch.extra or {})
    if phot:
        part["PHOT_FILLED"] = filled_bits(batch.photometry)
        part["APNET_FLAG"] = part["APNET_FLAG"] | np.where(
            part["PHOT_FILLED"] != 0, flag_value("PHOT_FILLED"), 0).astype(part["APNET_FLAG"].dtype)
    part["FILE"] = batch.source
    return part


def _blank(parts: list[dict], name: str, n: int) -> np.ndarray:
    """n empty values (NaN, False, 0 or "") for a column that other parts have."""
    like = next(p[name] for p in parts if name in p)
    if like.dtype.kind in "fc":
        return np.full(n, np.nan, like.dtype)
    if like.dtype.kind in "iu":
        return np.zeros(n, like.dtype)
    return np.zeros(n, bool) if like.dtype.kind == "b" else np.full(n, "", dtype=object)


def _nan_rows(arr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = np.array(arr, dtype=np.result_type(arr.dtype, np.float32))
    out[rows] = np.nan
    return out
