"""One ``infer`` job end to end: the output name checked first, one writer per output (a lock),
the local or the Ray engine, finished batches kept until the catalog is written atomically; the
rows of an input table whose file is missing listed beside the catalog (``MISSING_SUFFIX``)."""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Callable, Sequence

from apnet_tf.data.manifest import read_manifest, records_hold_photometry
from apnet_tf.data.planning import is_records
from apnet_tf.data.records import check_mask_bits
from apnet_tf.errors import ApnetError, check_seed, require_at_least
from apnet_tf.inference.predict import InferenceResult, predict_settings
from apnet_tf.inference.ray_engine import predict_catalog_ray
from apnet_tf.inference.screening import novelty_notes
from apnet_tf.inference.settings import InferenceSettings
from apnet_tf.io.boss_table import read_boss_listing
from apnet_tf.io.catalog import check_catalog_name, write_catalog
from apnet_tf.io.files import exclusive_lock
from apnet_tf.io.folders import reading_lock
from apnet_tf.io.photometry import PHOT_COLUMNS, check_matches, read_photometry
from apnet_tf.io.survey_table import (
    MISSING_SHOWN,
    Listing,
    is_missing_list,
    missing_note,
    read_listing,
    shown,
    write_missing_list,
)
from apnet_tf.model.calibration import sigma_settings
from apnet_tf.model.loading import load_model
from apnet_tf.model.network_inputs import check_mc_bad_pixels
from apnet_tf.model.precision import check_inference_precision
from apnet_tf.model.runtime import Runtime

__all__ = ["ENGINES", "MISSING_SUFFIX", "run_infer", "infer_catalog", "table_listing",
           "check_inputs", "remove_work_dir"]

ENGINES = ("local", "ray")
#: The list of an input table's rows with no file: the catalog's name plus this.
MISSING_SUFFIX = ".missing.txt"


def run_infer(model: str, out: str, spectra: Sequence[str] = (),
              settings: InferenceSettings | None = None, table: str | None = None,
              root: str | None = None, engine: str = "local", ray_address: str | None = None,
              workers: int | None = None,
              on_progress: Callable[[int, int], None] | None = None,
              photometry: str | None = None) -> InferenceResult:
    """Predict a catalog for apStar files, folders, globs and record folders (``spectra``)
    and/or the files an allStar/allField ``table`` lists under ``root``; write it to ``out``.
    For BOSS Net the files are BOSS spec files, and ``table`` an spAll-like table
    (``io.boss_table``).

    Args:
        settings: what to compute (``settings.InferenceSettings``; None: its defaults, e.g.
            ``mc`` 100, or 0 for a TFLite model). Its ``mask_bits`` need the local engine.
        engine: "local" (this machine; FITS reads in ``workers`` processes) or "ray" (Ray Data
            on the cluster at ``ray_address``, or a local Ray instance when None).
        on_progress: called as on_progress(spectra done, total) as batches finish.
        photometry: a table (FITS, CSV) of APOGEE_ID and ``PHOT_COLUMNS`` for a two-input
            model, read into the settings' ``photometry``; ``table``, or record folders made
            with photometry, may carry them instead.

    Finished batches wait in ``out + ".parts"`` until the catalog is written, so the same call
    after a kill resumes (``workdir``); ``out + ".lock"`` keeps a second job off ``out``, and
    the model's readers' lock (``folders.reading_lock``) keeps writers off the model. A
    ``photometry`` table of none of the stars stops the job (``photometry_join``).
    Rows of ``table`` whose file is not under ``root`` are left out: they are listed in
    ``out + MISSING_SUFFIX`` (``survey_table.write_missing_list``) and said in one note, and
    they are no failure (``InferenceResult.failures`` holds the inputs that could not be read).

    Raises:
        ApnetError: a bad output name, option or input, another job writing ``out`` or the
            model, a table none of whose rows has its file, a photometry table of other
            stars, or no readable spectrum; checked before any prediction where it can be.
    """
    settings = InferenceSettings() if settings is None else settings
    check_catalog_name(out)
    check_inputs(spectra, table, root, settings, engine, workers)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    work_dir = out + ".parts"
    notes: list[str] = []
    with exclusive_lock(out + ".lock", out), reading_lock(model):
        # a raw-sigma job never reads calibration.json, so an old or broken one cannot stop it
        loaded = load_model(model, calibration=settings.calibrated is not False)
        listing = table_listing(loaded, table, root)
        missing = _list_missing(listing, table, root, out, bool(spectra))
        if photometry is not None:
            settings = dataclasses.replace(settings,
                                           photometry=read_photometry(photometry, notes))
        result = infer_catalog(loaded, spectra, settings, listing=listing, table=table,
                               engine=engine, ray_address=ray_address, work_dir=work_dir,
                               workers=workers, on_progress=on_progress, model_path=model)
        write_catalog(result.catalog, out)
        remove_work_dir(work_dir)
    result.notes[:0] = notes  # the photometry table's, before the job's own
    result.notes.extend([missing_note(table, root, listing, missing)] if missing else [])
    return result


def infer_catalog(loaded: Runtime, spectra: Sequence[str], settings: InferenceSettings, *,
                  listing=None, table: str | None = None, engine: str = "local",
                  ray_address: str | None = None, work_dir: str | None = None,
                  workers: int | None = None,
                  on_progress: Callable[[int, int], None] | None = None,
                  model_path: str | None = None) -> InferenceResult:
    """The catalog of an ``infer`` job, not written: ``loaded`` (``loading.load_model``) on
    ``spectra`` and the files of ``listing`` (``table_listing`` of ``table``),
    under ``settings`` (checked by ``check_inputs``; ``photometry`` read), on the local or the
    Ray engine (whose workers load ``model_path``, by default the model's own). ``run_infer``
    writes it; the notebook API's ``Model.predict_files`` returns it.

    Raises:
        ApnetError: a two-input model without photometry, or photometry for a one-input one;
            a photometry table of none of the stars (``photometry_join``); no readable
            spectrum.
    """
    model_path = loaded.path if model_path is None else model_path
    _check_photometry(loaded, model_path, listing, settings.photometry, table, spectra)
    settings = settings.for_model(loaded)
    if engine == "ray":
        result = predict_catalog_ray(model_path, spectra, settings, listing=listing,
                                     address=ray_address, work_dir=work_dir,
                                     on_progress=on_progress, loaded=loaded)
    else:
        result = predict_settings(loaded, spectra, settings, work_dir=work_dir,
                                  on_progress=on_progress, workers=workers, listing=listing)
    if "SIGMA" not in result.catalog.meta:  # the Ray engine: say what the sigmas are
        result.catalog.meta.update(sigma_settings(
            loaded, settings.mc, settings.calibrated, settings.mc_dropout, settings.seed)[1])
    if settings.photometry is not None:  # a table of other stars: no catalog
        check_matches(settings.photometry, list(result.catalog["APOGEE_ID"]))
    result.notes.extend(listing.notes if listing is not None else [])
    result.notes.extend(novelty_notes(loaded))
    return result


def table_listing(loaded: Runtime, table: str | None, root: str | None) -> Listing | None:
    """The files that ``table`` lists under ``root`` (None without a table), read as the
    model's instrument lays its tables out: for BOSS Net an spAll-like table of BOSS spec files
    (``boss_table.read_boss_listing``), otherwise an allStar/allField table of the SAS
    TELESCOPE/FIELD/FILE layout (``survey_table.read_listing``). ``run_infer`` and the notebook
    API's ``Model.predict_files`` both read their table here, so the two agree."""
    if table is None:
        return None
    reader = read_boss_listing if loaded.instrument == "boss" else read_listing
    return reader(table, root)


def _list_missing(listing: Listing | None, table: str | None, root: str | None, out: str,
                  other_inputs: bool) -> str | None:
    """Write the list of the table's rows with no file beside ``out`` and return its name
    (None when every row has its file; a list an earlier job left there is then removed).

    Raises:
        ApnetError: no row of the table has its file, and there are no other inputs; a file
            that is not such a list sits where the list goes.
    """
    path = out + MISSING_SUFFIX
    if listing is None:
        return None
    if os.path.lexists(path) and not (os.path.isfile(path) and is_missing_list(path)):
        raise ApnetError(f"{path}: not a list of missing files that apnet-tf wrote, and a "
                         "job of this --out writes one there; move it away or choose another "
                         "--out")
    if not listing.missing:
        if os.path.lexists(path):
            os.remove(path)  # an earlier job's list of this catalog; nothing is missing now
        return None
    if not listing.paths and not other_inputs:
        stars = [m.star or f"row {m.row}" for m in listing.missing]
        raise ApnetError(f"{table}: none of its {len(listing.missing)} rows has its file under "
                         f"{root} ({shown(stars, MISSING_SHOWN)}); --root is the folder that "
                         "holds TELESCOPE/FIELD/FILE (the SAS stars/ folder)")
    return write_missing_list(path, table, root, listing.missing)


def _check_photometry(loaded, model: str, listing, phot: dict | None, table: str | None,
                      spectra: Sequence[str] = ()) -> None:
    """A two-input model needs photometry from --photometry, the --table or record folders
    made with photometry; refused before any work otherwise. A one-input model is given
    none."""
    has_table_phot = listing is not None and PHOT_COLUMNS[0] in listing.columns
    has_records_phot = any(is_records(p) and records_hold_photometry(read_manifest(p))
                           for p in spectra)
    if loaded.takes_photometry and phot is None and not (has_table_phot or has_records_phot):
        where = (f"{table} has no {PHOT_COLUMNS[0]} column; " if table else "")
        raise ApnetError(f"{model}: APOGEE Net II takes photometry as well as flux; {where}give "
                         f"--photometry TABLE (APOGEE_ID, {', '.join(PHOT_COLUMNS)}), --table "
                         "allField.fits with those columns, or records made with "
                         "make-records --photometry")
    if phot is not None and not loaded.takes_photometry:
        raise ApnetError(f"--photometry: {model} takes flux only (photometry goes to APOGEE "
                         "Net II models, import-torch --arch anet2)")


def check_inputs(spectra: Sequence[str], table: str | None, root: str | None,
                 settings: InferenceSettings, engine: str = "local",
                 workers: int | None = None) -> None:
    """Raise ApnetError for a bad input or option of a job, before it loads or reads anything."""
    check_inference_precision(settings.precision)
    check_mc_bad_pixels(settings.mc_bad_pixels)
    mask_bits = settings.mask_bits
    if engine not in ENGINES:
        raise ApnetError(f"--engine {engine}: choose one of {', '.join(ENGINES)}")
    if (table is None) != (root is None):
        raise ApnetError("--table and --root go together: the table and the folder holding "
                         "its files (an allStar table's TELESCOPE/FIELD/FILE layout, an spAll "
                         "table's spec files)")
    if mask_bits is not None and engine == "ray":
        raise ApnetError("--mask-bits works with --engine local only")
    if mask_bits is not None:
        check_mask_bits(mask_bits)
    if not spectra and table is None:
        raise ApnetError("no input: give --spectra and/or --table with --root")
    require_at_least(settings.batch_size, 1, "--batch-size")
    if settings.mc is not None:
        require_at_least(settings.mc, 0, "--mc")
    if workers is not None:
        require_at_least(workers, 0, "--workers")
    if settings.seed is not None:
        check_seed(settings.seed)


def remove_work_dir(work_dir: str) -> None:
    """Remove what ``workdir`` wrote there, and the folder if that leaves it empty."""
    for f in glob.glob(os.path.join(work_dir, "part-*.npz")) + [
            os.path.join(work_dir, "settings.json")]:
        if os.path.exists(f):
            os.remove(f)
    if os.path.isdir(work_dir) and not os.listdir(work_dir):
        os.rmdir(work_dir)
