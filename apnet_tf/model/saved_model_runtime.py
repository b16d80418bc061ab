"""The SavedModel runtime: an apnet-tf export (``export.model_export``) run through its
signatures, serving_default for plain predictions and monte_carlo for the Monte Carlo, with the
metadata, calibration and novelty reference copied into its assets.extra."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from apnet_tf.constants import RENAMED, TARGETS
from apnet_tf.errors import ApnetError
from apnet_tf.io.files import read_json
from apnet_tf.model.bossnet_mc import MC_STYLES as BOSSNET_STYLES
from apnet_tf.model.calibration import CALIBRATION
from apnet_tf.model.novelty import read_novelty
from apnet_tf.model.runtime import ExportedRuntime, read_calibration
from apnet_tf.model.uncertainty import SUMMARIES, draw_seed, mask_into_errors

__all__ = ["SavedModelRuntime", "load_saved_model", "version_folder"]


@dataclasses.dataclass(kw_only=True, eq=False)
class SavedModelRuntime(ExportedRuntime):
    """A loaded SavedModel (``saved``) with its export's metadata and calibration."""

    kind = "saved_model"
    saved: object  # what tf.saved_model.load returns

    @property
    def outputs(self) -> list[str]:
        """The names serving_default returns, in order: TARGETS, then rv for BOSS Net."""
        sig = self.saved.signatures["serving_default"]
        return list(TARGETS) + (["rv"] if "rv" in sig.structured_outputs else [])

    def predict(self, flux: np.ndarray, photometry: np.ndarray | None = None) -> np.ndarray:
        inputs = self.network_inputs(flux, photometry)
        out = self.saved.signatures["serving_default"](
            **{k: tf.constant(v) for k, v in inputs.items()})
        return np.stack([out[t].numpy() for t in self.outputs], axis=1)

    def monte_carlo(self, flux, err, bad, mc: int, *, seed=0, photometry=None,
                    mc_dropout: bool = False, wavelength=None) -> dict[str, np.ndarray]:
        mc, phot = self.exported_mc_inputs(mc, photometry, mc_dropout, wavelength)
        sig = self.saved.signatures.get("monte_carlo")
        if sig is None:
            raise ApnetError(f"{self.path}: exported by an older apnet-tf (no monte_carlo "
                             "signature); export it again")
        extra = {} if phot is None else {"photometry": tf.constant(phot)}
        if wavelength is not None:
            extra["wavelength"] = tf.constant(wavelength, tf.float32)
        # Net I's and II's Monte Carlo takes no pixel mask (as on the other runtimes); APOGEE
        # Net III's and BOSS Net's takes the pixels that get no noise, as infinite errors
        mask = bad if self.mc_style in ("apnet",) + BOSSNET_STYLES else None
        # an export of the release before the draws' input was named "mc"
        count = next(k for k in sig.structured_input_signature[1] if RENAMED.get(k, k) == "mc")
        out = sig(flux=tf.constant(flux, tf.float32),
                  err=tf.constant(mask_into_errors(err, mask)),
                  seed=tf.constant(draw_seed(seed), tf.int64),
                  **{count: tf.constant(mc, tf.int32)}, **extra)
        return {k: np.stack([out[f"{t}_{k}"].numpy() for t in self.outputs], axis=1)
                for k in SUMMARIES if f"teff_{k}" in out}


def version_folder(path: str) -> str:
    """The SavedModel folder at ``path``: ``path`` itself, or in a folder of versions the
    newest.

    Raises:
        ApnetError: neither.
    """
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = sorted(int(d) for d in os.listdir(path) if d.isdigit()
                      and os.path.exists(os.path.join(path, d, "saved_model.pb")))
    if not versions:
        raise ApnetError(f"{path}: not a run folder (best.keras) or a SavedModel")
    return os.path.join(path, str(versions[-1]))


def load_saved_model(path: str, calibration: bool = True) -> SavedModelRuntime:
    """An exported SavedModel: its version folder, or the folder of versions (the newest).
    ``calibration=False`` leaves any calibration.json unread.

    Raises:
        ApnetError: no SavedModel there, one that apnet-tf did not export, or an invalid
            calibration.json.
    """
    version_dir = version_folder(path)
    extra = os.path.join(version_dir, "assets.extra")
    meta = read_json(os.path.join(extra, "export_metadata.json"))
    cal = read_calibration(os.path.join(extra, CALIBRATION), calibration)
    saved = tf.saved_model.load(version_dir)
    inputs = _serving_inputs(saved, version_dir)
    return SavedModelRuntime(saved=saved, path=version_dir, calibration=cal, metadata=meta,
                             novelty=read_novelty(extra),
                             conventions=(meta or {}).get("conventions"),
                             takes_photometry="photometry" in inputs)


def _serving_inputs(saved, path: str) -> set[str]:
    """The names of serving_default's inputs of a SavedModel that apnet-tf exported:
    serving_default takes flux (and photometry), returns the targets."""
    sig = getattr(saved, "signatures", {}).get("serving_default")
    inputs = set(sig.structured_input_signature[1]) if sig is not None else set()
    outputs = set(sig.structured_outputs) if sig is not None else set()
    if "flux" not in inputs or not set(TARGETS) <= outputs:
        raise ApnetError(f"{path}: a SavedModel whose serving_default signature does not take "
                         f"flux and return {', '.join(TARGETS)} (inputs {sorted(inputs)}): not "
                         "exported by apnet-tf; export a run with apnet-tf export")
    return inputs
