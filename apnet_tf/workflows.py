"""Chains of library steps that a user runs as one.

``fit``: ``training.fitting.fit`` (train and save the model), then Tables 2 and 3 with
training.png (``write_run_report``) and the sigma calibration (``calibration.fit``) in the run
folder: what ``apnet-tf fit`` does. Training itself knows nothing of evaluation or calibration.

``run_demo``: the main job end to end on the embedded synthetic survey (``apnet-tf demo``):
synth -> make-records -> fit (pretrain + rolling Payne fine-tuning) -> calibrate -> infer
(catalog with uncertainties) -> evaluate (Tables 2 and 3, coverage, PNG plots), all in one folder.
A re-run reuses what an earlier run finished: the spectra, the records' complete shards, a finished
run folder and its calibration, and the catalog and the evaluation when their inputs are unchanged
(``data.demo_cache``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable

from astropy.table import Table

from apnet_tf.calibration.fit import calibrate, calibrate_fitted_run
from apnet_tf.constants import HISTORY, ROUNDS
from apnet_tf.data.demo_cache import demo_fingerprint, reuse_or_make
from apnet_tf.data.records import make_records
from apnet_tf.data.synth import make_survey
from apnet_tf.errors import ApnetError, require_at_least
from apnet_tf.evaluation.plots import training_curve
from apnet_tf.evaluation.tables import (
    EVALUATION_FILES,
    evaluate,
    evaluation_tables,
    predict_records,
    read_evaluation,
    write_tables,
)
from apnet_tf.inference.predict import predict_catalog
from apnet_tf.io.catalog import write_catalog
from apnet_tf.io.files import output_lock
from apnet_tf.model.calibration import CALIBRATION, Calibration
from apnet_tf.model.loading import load_model
from apnet_tf.training import fitting
from apnet_tf.training.recipes import get_recipe

__all__ = ["fit", "write_run_report", "DemoResult", "run_demo"]


def fit(records_dir: str, run_dir: str, stage: str = "all", recipe=None, resume: bool = False,
        strategy: str = "default", on_epoch: Callable[[str, int, dict], None] | None = None,
        on_round: Callable[[dict], None] | None = None, overwrite: bool = False,
        on_progress: Callable[[int, int], None] | None = None,
        arch: str | None = None) -> fitting.FitResult:
    """Train (``training.fitting.fit``, same arguments), then write Tables 2 and 3 and
    training.png, and fit the sigma calibration, into ``run_dir``: ``apnet-tf fit``.

    Args:
        on_progress: called as on_progress(stars done, total) by the Monte Carlo of the sigma
            calibration (over the train and dev stars).

    Returns:
        The ``FitResult`` with ``table2``, ``table3`` and ``calibration`` filled (on the
        non-chief workers of a multi-worker run, which write nothing, they stay None).
    """
    # one writer per run folder, training to calibration (multi-worker runs: each worker's
    # own folder, locked by training.fitting.fit)
    with (output_lock(run_dir) if strategy != "multiworker" else contextlib.nullcontext()):
        result = fitting.fit(records_dir, run_dir, stage=stage, recipe=recipe, resume=resume,
                             strategy=strategy, on_epoch=on_epoch, on_round=on_round,
                             overwrite=overwrite, arch=arch)
        if not result.chief:
            return result
        table2, table3 = write_run_report(result.model, records_dir, run_dir, result.std)
        cal = calibrate_fitted_run(run_dir, records_dir, seed=result.recipe.seed,
                                   on_progress=on_progress)
    return dataclasses.replace(result, table2=table2, table3=table3, calibration=cal)


def write_run_report(model, records_dir: str, run_dir: str, std) -> tuple:
    """Tables 2 and 3 (CSV and Markdown) and training.png for the Keras ``model`` of a run;
    returns (table2, table3). ``std``: (3,) the train-split target std Table 2 standardises with.
    """
    res = predict_records(model, records_dir, splits=["train", "dev", "test"])
    table2, table3 = evaluation_tables(res["pred"], res["labels"], res["category"],
                                       res["split"], std)
    write_tables(run_dir, table2, table3)
    if os.path.exists(os.path.join(run_dir, HISTORY)):  # the kept model marked (finetune rounds)
        rounds = os.path.join(run_dir, ROUNDS)
        training_curve(os.path.join(run_dir, HISTORY), os.path.join(run_dir, "training.png"),
                       rounds_csv=rounds if os.path.exists(rounds) else None)
    return table2, table3


@dataclasses.dataclass
class DemoResult:
    """What ``run_demo`` made, all under its ``out_dir``."""

    run_dir: str  # the run folder (best.keras, calibration.json, Tables 2 and 3)
    catalog_path: str  # catalog.fits, calibrated sigmas
    catalog: Table  # the catalog as written: one row per star of the records
    evaluation_dir: str  # tables, coverage and PNG plots
    evaluation: dict  # table2, table3, coverage as written (``read_evaluation``), files
    #: what was reused from an earlier run, in order, from "spectra", "records", "run",
    #: "catalog", "evaluation"; empty when everything was made
    reused: list[str] = dataclasses.field(default_factory=list)


def run_demo(out_dir: str = "demo_out", n: int = 1500, epochs: int = 30, mc: int = 30,
             seed: int = 0,
             on_progress: Callable[[str, int, int | None], None] | None = None,
             on_epoch: Callable[[str, int, dict], None] | None = None,
             on_round: Callable[[dict], None] | None = None) -> DemoResult:
    """Run the demo in ``out_dir``: spectra/, records/, run/, catalog.fits, evaluation/.

    Args:
        n: stars in the synthetic survey. epochs: most epochs per stage or round.
        mc: Monte Carlo draws per star (calibration, catalog, evaluation).
        seed: the survey's, the training recipe's and the Monte Carlo draws' seed.
        on_progress: ``on_progress(step, done, total)`` for the steps "synth", "make-records",
            "calibrate" (the Monte Carlo of the sigma calibration), "infer" and "evaluate".
        on_epoch, on_round: passed to ``fit`` (each epoch's logs; each fine-tuning
            round's row).

    Every option is checked before any work starts. An unfinished run folder of the demo's own
    (no table3.csv) is trained again from the start. The catalog and the evaluation of an
    earlier run are reused (read back) when their files are there and the fingerprint of their
    inputs (run folder, records, mc, seed) is the one recorded (``data.demo_cache``);
    ``DemoResult.reused`` says what was.

    Raises:
        ApnetError: a bad option, or what a step raises.
    """
    recipe = get_recipe("default", epochs=epochs, seed=seed).validate()
    require_at_least(n, 1, "--n")
    require_at_least(mc, 2, "--mc")
    step = _stepper(on_progress)
    spectra_dir, records_dir, run_dir, evaluation_dir = (
        os.path.join(out_dir, name) for name in ("spectra", "records", "run", "evaluation"))
    reused = _make_data(spectra_dir, records_dir, n, seed, step)
    if _train(records_dir, run_dir, recipe, mc, seed, on_epoch, on_round, step("calibrate")):
        reused.append("run")
    fingerprint = demo_fingerprint(run_dir, records_dir, mc, seed)
    catalog_path = os.path.join(out_dir, "catalog.fits")
    catalog = reuse_or_make(out_dir, "catalog", fingerprint, [catalog_path], reused,
                            lambda: _predict(run_dir, records_dir, catalog_path, mc, seed,
                                             step("infer"))[1],
                            lambda: Table.read(catalog_path))
    reuse_or_make(out_dir, "evaluation", fingerprint,
                  [os.path.join(evaluation_dir, name) for name in EVALUATION_FILES], reused,
                  lambda: evaluate(run_dir, records_dir, evaluation_dir, mc=mc, seed=seed,
                                   on_progress=step("evaluate")), lambda: None)
    # read back as written, so that a re-run that reuses it shows the very same numbers
    evaluation = read_evaluation(evaluation_dir)
    return DemoResult(run_dir, catalog_path, catalog, evaluation_dir, evaluation, reused)


def _stepper(on_progress) -> Callable[[str], Callable[[int, int], None] | None]:
    """step(name) -> the ``on_progress(done, total)`` of that step (None without a callback)."""
    def step(name: str):
        if on_progress is None:
            return None
        return lambda done, total: on_progress(name, done, total)
    return step


def _make_data(spectra_dir: str, records_dir: str, n: int, seed: int, step) -> list[str]:
    """The survey (only if it has no labels.csv yet) and its records (complete shards kept).
    Returns what was reused: "spectra" (the survey), "records" (no shard written)."""
    labels = os.path.join(spectra_dir, "labels.csv")
    reused = ["spectra"] if os.path.exists(labels) else []
    if not reused:
        make_survey(spectra_dir, n, seed, on_progress=step("synth"))
    records = make_records([spectra_dir], records_dir, labels=labels,
                           on_progress=step("make-records"))
    return reused + ([] if records.written_shards else ["records"])


def _train(records_dir: str, run_dir: str, recipe, mc: int, seed: int, on_epoch,
           on_round, on_calibrate=None) -> bool:
    """Train unless the run folder holds table3.csv (fit writes it once training is over; an
    unfinished run of the demo's own is started again), then calibrate unless fit did (or an
    older apnet-tf wrote its calibration.json in another format). True: the run was reused
    as it was (neither trained nor calibrated)."""
    reused = os.path.exists(os.path.join(run_dir, "table3.csv"))
    if not reused:
        fit(records_dir, run_dir, stage="all", recipe=recipe, resume=False, strategy="default",
            overwrite=True, on_epoch=on_epoch, on_round=on_round, on_progress=on_calibrate)
    try:
        Calibration.load(os.path.join(run_dir, CALIBRATION))
    except ApnetError:  # missing, or not this version's: the demo's own run, so calibrate it
        calibrate(run_dir, records_dir, mc=mc, seed=seed, on_progress=on_calibrate)
        return False
    return reused


def _predict(run_dir: str, records_dir: str, out: str, mc: int, seed: int,
             on_progress) -> tuple[str, Table]:
    """The catalog of every star in the records with calibrated sigmas, written to ``out``;
    (its path, the table)."""
    result = predict_catalog(load_model(run_dir), [records_dir], mc=mc, calibrated=True,
                             seed=seed, on_progress=on_progress)
    return write_catalog(result.catalog, out), result.catalog
