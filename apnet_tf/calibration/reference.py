"""The novelty reference of a model (``model.novelty``), made where its calibration is: from
the train split of a record folder. For a run that ``fit`` trained, those are its training
stars; for a published network imported with ``import-torch``, the stars a user calibrates it
on with ``apnet-tf calibrate`` (the authors' training spectra are not published, so a published
network has no reference until it is calibrated)."""

from __future__ import annotations

import os

import numpy as np

from apnet_tf.data.planning import plan_units
from apnet_tf.data.readers import read_unit
from apnet_tf.io.spikes import find_spikes, mask_spikes
from apnet_tf.model.novelty import MAX_REFERENCE_STARS, NOVELTY, fit_reference

__all__ = ["TRAINING_STARS", "CALIBRATION_STARS", "write_novelty"]

#: What a reference was made from: a fitted run's own training split...
TRAINING_STARS = "training stars"
#: ... or the train split of the records a model was calibrated on.
CALIBRATION_STARS = "calibration stars"


def _train_spectra(records_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """flux, err, bad of the first ``MAX_REFERENCE_STARS`` train-split stars of a record folder
    (its shards were shuffled when written), spikes masked as infer masks them; None if none."""
    plan = plan_units([records_dir], 1024, ("train",))
    got, n = [], 0
    for unit in plan.units:
        batch, _ = read_unit(unit)
        if batch is None:
            continue
        got.append((batch.flux, batch.err, batch.bad))
        n += len(batch.flux)
        if n >= MAX_REFERENCE_STARS:
            break
    if not got:
        return None
    flux, err, bad = (np.concatenate(a)[:MAX_REFERENCE_STARS] for a in zip(*got))
    return mask_spikes(flux, err, bad, find_spikes(flux, err, bad))


def write_novelty(model_path: str, records_dir: str, source: str, seed: int = 0) -> bool:
    """Fit the novelty reference of the run folder ``model_path`` on the train split of
    ``records_dir`` and write it there as novelty.json (an earlier one is replaced, or removed
    when the split has too few stars). Returns whether one was written."""
    spectra = _train_spectra(records_dir)
    ref = None if spectra is None else fit_reference(*spectra, source=source, seed=seed)
    path = os.path.join(model_path, NOVELTY)
    if ref is None:
        if os.path.exists(path):
            os.remove(path)
        return False
    ref.save(path)
    return True
