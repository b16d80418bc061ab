"""The one protocol every model runtime (Keras, SavedModel, TFLite) implements, and what the
runtimes share.

A ``Runtime`` predicts (B, 3) labels in physical units from raw flux (and, for a two-input
network, raw photometry) with ``predict``, and gives the Monte Carlo summaries of
``uncertainty.monte_carlo`` with ``monte_carlo``, the same for every runtime. Whose Monte Carlo
it runs is the network's conventions' (``mc_style``), so a new network needs a conventions
entry (``published.conventions``), not a branch here. ``load_model`` (``loading``) picks the
runtime from the path; each runtime lives in a module of its own (``keras_runtime``,
``saved_model_runtime``, ``tflite_runtime``).
"""

from __future__ import annotations

import abc
import dataclasses
import os
from typing import ClassVar

import numpy as np

from apnet_tf.data.manifest import read_manifest, records_hold_photometry
from apnet_tf.errors import ApnetError
from apnet_tf.model.calibration import Calibration
from apnet_tf.model.novelty import NoveltyReference
from apnet_tf.model.published import mc_style
from apnet_tf.model.uncertainty import check_mc

__all__ = ["FALLBACK_LABEL_RANGE", "Runtime", "ExportedRuntime", "read_calibration"]

#: Used for the BAD flag when a model carries no training label range.
FALLBACK_LABEL_RANGE = ((2000.0, 9000.0), (-1.0, 6.0), (-3.0, 1.0))


@dataclasses.dataclass(kw_only=True, eq=False)
class Runtime(abc.ABC):
    """A model to predict with, whatever runs it.

    ``predict(flux)`` gives (B, 3) physical units; ``monte_carlo(...)`` gives the summaries of
    ``uncertainty.monte_carlo`` (value, mean, std, p16, p50, p84), the same for every runtime.
    """

    #: "keras", "saved_model" or "tflite": what runs the network.
    kind: ClassVar[str]
    path: str
    normalization: dict | None = None  # a run's normalization.json
    calibration: Calibration | None = None
    novelty: NoveltyReference | None = None  # where its training (or calibration) stars lie
    metadata: dict | None = None  # export_metadata.json of a SavedModel or TFLite export
    conventions: dict | None = None  # a published network's (``published.conventions``)
    takes_photometry: bool = False  # a two-input model: flux and (B, 7) raw photometry
    precision: str = "float32"  # the forward pass's compute precision (``in_precision``)
    sha256: str = ""  # of the files it was loaded from (``loading.load_model``)

    @abc.abstractmethod
    def predict(self, flux: np.ndarray, photometry: np.ndarray | None = None) -> np.ndarray:
        """(B, 3) physical units of flux (B, 8575) and, for Net II, raw photometry (B, 7)."""

    @abc.abstractmethod
    def monte_carlo(self, flux, err, bad, mc: int, *, seed=0, photometry=None,
                    mc_dropout: bool = False, wavelength=None) -> dict[str, np.ndarray]:
        """Raw Monte Carlo summaries (B, P) of flux, err, bad (B, 8575). ``seed``: an int or a
        tuple of ints (e.g. the job's seed and the batch; ``uncertainty.stateless_seed``), or
        None for fresh draws: the same seed gives the same numbers from a run folder, its
        SavedModel and its TFLite file. ``photometry``: (B, 7) raw, for Net II. The Monte
        Carlo is the model's own (``mc_style``). BOSS Net: flux, err, bad and ``wavelength``
        (B, L) on the native pixels, NaN after each spectrum's last (``bossnet_mc``)."""

    @abc.abstractmethod
    def in_precision(self, precision: str) -> Runtime:
        """This model with its forward pass (plain and Monte Carlo alike) in ``precision``."""

    @property
    def mc_style(self) -> str:
        return mc_style(self.conventions)

    @property
    def instrument(self) -> str:
        """The spectrograph whose files the network reads: "apogee" (apStar) or "boss"."""
        return (self.conventions or {}).get("instrument", "apogee")

    def refuse_wavelength(self, wavelength) -> None:
        """ApnetError for wavelengths given to a network of apStar pixels."""
        if wavelength is not None and self.instrument != "boss":
            raise ApnetError(f"{self.path}: this network reads apStar pixels; wavelengths go "
                             "with BOSS Net")

    def label_range(self) -> tuple[tuple[float, float], ...]:
        """The training label range, (lo, hi) per target: a run's normalization.json, an
        export's metadata (``target_min``, ``target_max``); ``FALLBACK_LABEL_RANGE`` without,
        so that an export flags BAD as its run folder does."""
        norm, meta = self.normalization or {}, self.metadata or {}
        lo, hi = norm.get("min"), norm.get("max")
        if lo is None and hi is None:
            lo, hi = meta.get("target_min"), meta.get("target_max")
        if lo and hi and None not in lo and None not in hi:
            return tuple(zip(map(float, lo), map(float, hi)))
        return FALLBACK_LABEL_RANGE

    def network_photometry(self, photometry) -> np.ndarray | None:
        """``photometry`` as the network's float32 (B, 7) input; None for a flux-only model.

        Raises:
            ApnetError: a two-input model given none.
        """
        if not self.takes_photometry:
            return None
        if photometry is None:
            raise ApnetError(f"{self.path}: this model (APOGEE Net II) takes photometry as "
                             "well as flux")
        return np.asarray(photometry, np.float32)

    def network_inputs(self, flux, photometry=None) -> dict[str, np.ndarray]:
        """The network's named float32 inputs: flux, and photometry for a two-input model."""
        inputs = {"flux": np.asarray(flux, np.float32)}
        phot = self.network_photometry(photometry)
        if phot is not None:
            inputs["photometry"] = phot
        return inputs

    def refuse_without_photometry(self, what: str, records_dir: str) -> None:
        """ApnetError for a two-input model (APOGEE Net II, fit --arch anet2) in a job on a
        record folder made without photometry: its fill values would stand in for every
        star's, silently."""
        if self.takes_photometry and not records_hold_photometry(read_manifest(records_dir)):
            raise ApnetError(f"{self.path}: {what} needs photometry for this two-input model "
                             f"(APOGEE Net II layout), and {records_dir} holds none; make the "
                             "records with make-records --photometry, or run infer with "
                             "--photometry or --table")


@dataclasses.dataclass(kw_only=True, eq=False)
class ExportedRuntime(Runtime):
    """A runtime of an exported graph (SavedModel, TFLite): its precision is fixed at export,
    and it carries input noise only (no dropout)."""

    def in_precision(self, precision: str) -> Runtime:
        """Itself for its own precision.

        Raises:
            ApnetError: any other precision: the exported graph is fixed.
        """
        if precision == self.precision:
            return self
        raise ApnetError(f"{self.path}: --precision {precision} needs a Keras model (a run "
                         f"folder or .keras file); a {self.kind.replace('_', ' ')} computes "
                         f"in the precision it was exported with")

    def refuse_mc_dropout(self, mc_dropout: bool) -> None:
        if mc_dropout:
            raise ApnetError(f"{self.path}: MC dropout needs the Keras model (a run folder); "
                             "exported models carry input noise only")

    def exported_mc_inputs(self, mc, photometry, mc_dropout: bool,
                           wavelength) -> tuple[int, np.ndarray | None]:
        """An exported model's Monte Carlo arguments checked, in the order both export
        runtimes check them: (mc, the network's photometry or None)."""
        mc = check_mc(mc)
        phot = self.network_photometry(photometry)
        self.refuse_mc_dropout(mc_dropout)
        self.refuse_wavelength(wavelength)
        return mc, phot


def read_calibration(path: str, wanted: bool) -> Calibration | None:
    """The calibration.json at ``path`` (checked), or None when absent or not wanted."""
    return Calibration.load(path) if wanted and os.path.exists(path) else None
