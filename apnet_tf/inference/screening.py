"""What a batch's spectra are checked for besides the input bits of ``io.catalog_flags``:
spikes, masked before the network (``io.spikes``), and how far each spectrum lies from the
stars the model was trained or calibrated on (``model.novelty``). Both run in the one place
every engine builds a batch's catalog columns (``parts.unit_part``), so a run folder, a
SavedModel, a TFLite file and a published network get the same tests."""

from __future__ import annotations

import numpy as np

from apnet_tf.io.spikes import find_spikes, mask_spikes
from apnet_tf.model.runtime import ExportedRuntime, Runtime

__all__ = ["NO_REFERENCE", "masks_spikes", "mask_batch_spikes", "batch_novelty",
           "screening_keywords", "novelty_notes"]

#: The catalog's NOVREF keyword for a model without a novelty reference.
NO_REFERENCE = "none (calibrate the model to make one)"


def masks_spikes(model: Runtime) -> bool:
    """Whether spikes are masked before ``model``: the package's own networks, yes; a published
    network (one with its authors' conventions), no: its numbers are the authors' own, whose
    code masks nothing, and real apStar files hold such pixels (a few in most DR13 stars), so
    masking would move every such star off the authors' catalog. Its spikes are still found,
    counted and flagged."""
    return model.conventions is None


def mask_batch_spikes(batch, mask: bool = True) -> np.ndarray:
    """Find the spikes of ``batch``'s spectra and, with ``mask``, mask them in place as the file
    masks a bad pixel (flux 0, error 1e10, bad), so that the network sees them as the paper's
    masked pixels; returns how many each spectrum had, int64 (B,)."""
    if getattr(batch, "n_pixels", None) is not None:  # BOSS spectra: another instrument
        return np.zeros(len(batch.flux), np.int64)
    spikes = find_spikes(batch.flux, batch.err, batch.bad)
    if mask and spikes.any():
        batch.flux, batch.err, batch.bad = mask_spikes(batch.flux, batch.err, batch.bad, spikes)
    return spikes.sum(axis=1).astype(np.int64)


def batch_novelty(model: Runtime, batch, dead: np.ndarray) -> np.ndarray:
    """NOVELTY of ``batch``'s spectra (``model.novelty``; spikes masked first): float (B,), NaN
    for a model without a reference and for the ``dead`` rows (garbage input)."""
    if model.novelty is None or getattr(batch, "n_pixels", None) is not None:
        return np.full(len(batch.flux), np.nan)
    out = model.novelty.novelty(batch.flux, batch.err, batch.bad)
    return np.where(dead, np.nan, out)


def screening_keywords(model: Runtime) -> dict:
    """The catalog keywords that say whether spikes were masked (SPIKES) and what NOVELTY was
    measured against (NOVREF)."""
    ref = model.novelty
    return {"SPIKES": "masked" if masks_spikes(model) else "flagged only (authors' input)",
            "NOVREF": NO_REFERENCE if ref is None else f"{ref.stars} {ref.source}"}


def novelty_notes(model: Runtime) -> list[str]:
    """The one line a job's notes carry when its catalog's NOVELTY will be empty (NaN), with
    what gives the model a reference; none when it has one. A run or export with no
    novelty.json (a published network never calibrated, a run made before novelty.json
    existed) infers all the same, so without this line nothing on the command line says why
    the column is empty. BOSS spectra are never measured (``batch_novelty``): BOSS Net's line
    says so instead of pointing at a calibration that would not fill the column."""
    if model.instrument == "boss":
        return [f"{model.path}: NOVELTY is empty (NaN): it is measured on APOGEE spectra only, "
                "and BOSS Net reads BOSS spectra"]
    if model.novelty is not None:
        return []
    if isinstance(model, ExportedRuntime):
        how = ("apnet-tf calibrate --model RUN --records RECORDS on its run folder writes one; "
               "then export again")
    else:
        how = (f"apnet-tf calibrate --model {model.path} --records RECORDS writes one (from the "
               "records' train split)")
    return [f"{model.path}: no novelty reference (novelty.json), so the catalog's NOVELTY is "
            f"empty (NaN) and never sets NOVEL or FAR_FROM_TRAINING; {how}"]
