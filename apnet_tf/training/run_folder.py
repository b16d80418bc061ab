"""The run folder's bookkeeping: what ``fit`` writes there, what a new stage clears, the folder
a worker writes in, normalization.json and run.json.

A run folder holds ``best.keras`` (always the best model by dev loss, never the last one),
``pretrained.keras``, ``normalization.json`` (the target statistics the model de-standardises
with, and the records it trained on), ``run.json`` (how it trained: the recipe, precision and
architecture, and the two-input network's photometry scaling),
``history.csv``, ``training.png``,
``finetune_rounds.csv`` and the paper's Tables 2 and 3 as CSV and Markdown. run.json of an
``anet3`` run also says what its network does (``inputs.ANET3_RECORD``).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import tempfile

import numpy as np

from apnet_tf.constants import (
    BEST_MODEL,
    HISTORY,
    NORMALIZATION,
    PRETRAIN_DONE,
    PRETRAIN_STATE,
    PRETRAINED_MODEL,
    ROUNDS,
    RUN_FILES,
    RUN_RECORD,
)
from apnet_tf.errors import ApnetError
from apnet_tf.io.files import atomic_path, read_json, write_json
from apnet_tf.io.folders import check, claim, remove_made
from apnet_tf.io.photometry import PHOT_COLUMNS
from apnet_tf.training.distribute import is_chief

__all__ = [
    "read_csv_rows", "write_csv_rows", "check_resume", "prepare_run_folder", "worker_folder",
    "model_stats", "write_normalization", "RUN_RECORD_FORMAT", "write_run_record",
    "read_run_record",
]

#: The format of run.json.
RUN_RECORD_FORMAT = 1


def read_csv_rows(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv_rows(path: str, rows: list[dict]) -> None:
    fields = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def check_resume(resume: bool, overwrite: bool) -> None:
    """ApnetError when both are asked for: one continues the run, the other deletes it."""
    if resume and overwrite:
        raise ApnetError("--resume and --overwrite: choose one (--resume continues the run in "
                         "--out, --overwrite deletes it and starts again)")


def prepare_run_folder(run_dir: str, stage: str, resume: bool, overwrite: bool) -> None:
    """Take ``run_dir`` for training (``folders.claim``), before anything is written.

    A new or empty folder is taken. A folder that holds a run is continued by ``resume`` or by
    ``stage="finetune"`` (which starts from its pretrained model), and replaced by
    ``overwrite``: its ``RUN_FILES`` are deleted. Anything else is refused, so a model is never
    retrained over silently. The old calibration.json is always deleted: it was fitted on a
    model that training is about to change.

    Raises:
        ApnetError: the folder holds a run and neither resume, finetune nor overwrite was asked
            for; or it is not a run folder.
    """
    def old_run(folder):
        return any(os.path.exists(os.path.join(folder, n)) for n in (NORMALIZATION, BEST_MODEL))

    held = check(run_dir, "run", legacy=old_run)
    if held and not (overwrite or resume or stage == "finetune"):
        raise ApnetError(f"{run_dir}: already holds a run; pass --overwrite to replace it, "
                         "--resume to continue it, or choose a new folder")
    claim(run_dir, "run", legacy=old_run)
    if held and overwrite:
        remove_made(run_dir, RUN_FILES)
    names = ["calibration.json", "novelty.json"]  # both describe the model training changes
    if not resume and stage == "finetune":
        # fine-tuning again keeps the pretraining record: pretrain.done, its early-stopping state
        # and its history rows; only the fine-tuning rounds and rows are replaced
        names += [ROUNDS, "backup"]
        history = os.path.join(run_dir, HISTORY)
        if os.path.exists(history):
            write_csv_rows(history, [r for r in read_csv_rows(history) if r["stage"] != "finetune"])
    elif not resume:  # a fresh start: the history and state of an earlier attempt go
        names += [HISTORY, ROUNDS, PRETRAIN_STATE, PRETRAIN_DONE, "backup"]
    remove_made(run_dir, names)


def worker_folder(strategy: str, run_dir: str, stage: str) -> str:
    """The folder this process writes the run in: ``run_dir`` on the chief (or a single
    process); a temporary folder on the other workers of a multi-worker run, so that they never
    write over the chief's files (``run_dir`` may be on a shared file system). For
    ``finetune`` that folder starts with a copy of the run's pretraining files."""
    if is_chief(strategy):
        return run_dir
    work_dir = tempfile.mkdtemp(prefix="apnet-worker-")
    if stage == "finetune":
        for name in (PRETRAINED_MODEL, NORMALIZATION, HISTORY, PRETRAIN_DONE):
            if os.path.exists(os.path.join(run_dir, name)):
                shutil.copy2(os.path.join(run_dir, name), work_dir)
    return work_dir


def model_stats(model) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std), each (3,), built into a model's de-standardisation layer."""
    labels = model.get_layer("labels")
    return np.asarray(labels.mean, dtype=float), np.asarray(labels.std, dtype=float)


def write_normalization(run_dir: str, records_dir: str, manifest: dict, mean, std,
                        keep_existing: bool = False) -> None:
    """Write normalization.json: the target statistics of the run's model and its records.

    With ``keep_existing`` (fine-tuning) the label range and the pretraining records of an
    existing file are kept, and the fine-tuning records are added as ``finetune_records``.
    """
    path = os.path.join(run_dir, NORMALIZATION)
    old = (read_json(path) or {}) if keep_existing else {}
    stats = manifest["target_stats"]
    norm = {"targets": manifest["targets"], "mean": list(map(float, mean)),
            "std": list(map(float, std)), "min": old.get("min", stats.get("min")),
            "max": old.get("max", stats.get("max")),
            "records": old.get("records", os.path.abspath(records_dir))}
    if keep_existing:
        norm["finetune_records"] = os.path.abspath(records_dir)
    write_json(path, norm)


def write_run_record(run_dir: str, recipe, precision: str, stage: str, arch: str = "apnet",
                     photometry=None, network: dict | None = None) -> None:
    """Write run.json: how the run's model trained (the recipe of the last stage run, the
    precision it computed in, the stages run so far, the architecture (``fit --arch``), for
    the two-input network its photometry scaling: (fill, mean, std) per column, and
    ``network``: what the architecture does that its name and the recipe do not say)."""
    path = os.path.join(run_dir, RUN_RECORD)
    old = read_json(path) or {}
    stages = [s for s in old.get("stages", []) if s != stage] + [stage]
    record = {"format": RUN_RECORD_FORMAT, "recipe": dataclasses.asdict(recipe),
              "precision": precision, "stages": stages, "arch": arch}
    if photometry is not None:
        fill, mean, std = photometry
        record["photometry"] = {"columns": list(PHOT_COLUMNS), "fill": list(fill),
                                "mean": list(mean), "std": list(std),
                                "scaling": "values >= 98 or not finite take the fill value; "
                                           "then (x - mean) / std, inside the model"}
    if network is not None:
        record["network"] = network
    write_json(path, record)


def read_run_record(run_dir: str) -> dict:
    """How a run trained: run.json, or for a run written before run.json existed, the recipe and
    precision its normalization.json held ({} when neither says)."""
    record = read_json(os.path.join(run_dir, RUN_RECORD))
    if isinstance(record, dict):
        return record
    norm = read_json(os.path.join(run_dir, NORMALIZATION)) or {}
    return {k: norm[k] for k in ("recipe", "precision") if k in norm}
