"""Streaming inference: models in, a catalog with uncertainties and flags out (paper Table 4).

Inputs are apStar files, BOSS spec files, folders, globs, or TFRecord folders from
``make-records``. They stream in batches; an unreadable file is reported and the rest go on. The
catalog is written atomically as CSV or FITS (astropy).

Models are loaded by ``model.loading``, a job's settings are one ``settings.InferenceSettings``,
and each batch becomes its catalog part in ``parts``, for this engine and the Ray engine alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from astropy.table import Table

from apnet_tf.constants import AUTO_PRECISION_PROBE, MC_DRAWS
from apnet_tf.data.planning import plan_units
from apnet_tf.data.pool import iter_units
from apnet_tf.data.readers import read_unit
from apnet_tf.inference import workdir as wd
from apnet_tf.inference.parts import batch_photometry, catalog_from_parts, input_bits, unit_part
from apnet_tf.inference.photometry_join import check_plan
from apnet_tf.inference.settings import InferenceSettings
from apnet_tf.io.catalog_flags import INPUT_GARBAGE
from apnet_tf.io.spectra import DEFAULT_MASK_BITS
from apnet_tf.model.calibration import sigma_settings
from apnet_tf.model.network_inputs import network_inputs
from apnet_tf.model.precision import (
    auto_line,
    auto_precision,
    check_inference_precision,
    label_spread,
    precision_shift,
)
from apnet_tf.model.runtime import Runtime

__all__ = ["InferenceResult", "predict_catalog", "predict_settings", "job_precision",
           "choose_precision", "seeded_job"]


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
    plan = plan_units(inputs, settings.batch_size, settings.split_filter, listing, rows,
                      model.instrument)
    check_plan(plan, settings.photometry if model.takes_photometry else None)
    model, line = job_precision(model, plan, settings.precision, settings.mask_bits_used,
                                settings.photometry)
    job = dataclasses.replace(settings, calibrated=calibrated, precision=model.precision)
    seed = (wd.prepare(work_dir, model, plan, job.fingerprint()) if work_dir
            else wd.new_seed(settings.seed))
    parts, failures = _predict_units(model, plan, seeded_job(job, seed, sigma_meta),
                                     work_dir, on_progress, workers)
    return InferenceResult(catalog_from_parts(parts, failures, model, settings.mc, sigma_meta,
                                              settings.mc_bad_pixels), failures,
                           notes=list(plan.notes), precision=line)


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
    return choose_precision(model, precision, lambda: _probe(plan, mask_bits, photometry, model))


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


def _probe(plan, mask_bits: Sequence[int], photometry: dict | None, model: Runtime,
           ) -> tuple | None:
    """Up to ``AUTO_PRECISION_PROBE`` usable spectra from the first units of ``plan`` (from at
    most as many of its files or shards), as ``model.predict``'s arguments (flux by the
    network's input rules, and photometry for a two-input model); None if they hold none."""
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
        good = (input_bits(batch) & INPUT_GARBAGE) == 0
        flux.append(network_inputs(model.conventions, batch).flux[good][:AUTO_PRECISION_PROBE - n])
        if model.takes_photometry:
            phot.append(batch_photometry(batch, photometry)[good][:len(flux[-1])])
        n += len(flux[-1])
        if n >= AUTO_PRECISION_PROBE:
            break
    if not n:
        return None
    return (np.concatenate(flux),) + ((np.concatenate(phot),) if model.takes_photometry else ())


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
            done += len(unit.paths) if unit.kind != "records" else len(part.get("FILE", ()))
            if on_progress:
                on_progress(min(done, plan.total), plan.total)
    finally:
        reader.close()
    return parts, failures
