"""The settings of one inference job, as one frozen object: built once by the command line
(``infer``) or by a Python caller (``predict.predict_catalog``'s keywords), and carried as it
is to the local engine, the Ray engine and each of its actors.

They are what the catalog's numbers depend on besides the model and the inputs, so their
``fingerprint`` keys the finished batches of a work folder (``workdir``). Where the job runs
(the work folder, reader processes, the Ray cluster) and how it reports (a progress callback,
which lives in the caller's process) are the engines' own arguments, not settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from apnet_tf.constants import MC_DRAWS
from apnet_tf.errors import require_at_least
from apnet_tf.io.photometry import fingerprint
from apnet_tf.io.spectra import DEFAULT_MASK_BITS
from apnet_tf.model.network_inputs import check_mc_bad_pixels
from apnet_tf.model.precision import check_inference_precision

__all__ = ["InferenceSettings"]


@dataclasses.dataclass(frozen=True)
class InferenceSettings:
    """What an inference job computes.

    Args:
        mc: Monte Carlo draws per star (paper: 100); 0 gives point predictions and NaN sigmas;
            None: ``MC_DRAWS``, or 0 for a TFLite model (``for_model``).
        batch_size: spectra per batch (a record shard is one batch).
        calibrated: None: calibrated sigmas when the model has a calibration, else the raw
            Monte Carlo sigma; True: calibrated (an error without a calibration); False: the
            paper's raw Monte Carlo sigma.
        mc_dropout: add MC-dropout spread in quadrature (raw sigmas only).
        seed: the noise draws of batch k come from (seed, k): the same seed gives the same
            catalog however the job is cut, resumed or spread. None draws one.
        split_filter: for record folders, keep only the labelled stars of these splits
            (None: every star).
        mask_bits: apStar PIXMASK bits that mark a pixel bad in FITS inputs (use the bits the
            training records were made with); None: ``spectra.DEFAULT_MASK_BITS``.
        photometry: APOGEE_ID -> (7,) raw photometry (``io.photometry.read_photometry``) for
            a two-input model (Net II); it wins over an input table's photometry.
        precision: the network's compute precision, plain and Monte Carlo alike: float32,
            mixed_bfloat16 or auto (``predict.job_precision``).
        mc_bad_pixels: APOGEE Net III's and BOSS Net's Monte Carlo at a file's bad pixels:
            "noise" (their authors' code) or "fill" (``model.network_inputs``).
    """

    mc: int | None = None
    batch_size: int = 256
    calibrated: bool | None = None
    mc_dropout: bool = False
    seed: int | None = None
    split_filter: Sequence[str] | None = None
    mask_bits: Sequence[int] | None = None
    photometry: Mapping | None = None
    precision: str = "float32"
    mc_bad_pixels: str = "noise"

    def __post_init__(self):
        # tuples, so that the frozen settings hold no list a caller could still change
        for name in ("split_filter", "mask_bits"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))

    @property
    def mask_bits_used(self) -> tuple[int, ...]:
        """The PIXMASK bits FITS inputs are read with: ``mask_bits``, or the default ones."""
        return tuple(DEFAULT_MASK_BITS if self.mask_bits is None else self.mask_bits)

    def for_model(self, model) -> InferenceSettings:
        """These settings with ``mc`` decided for ``model`` (a ``runtime.Runtime``) when None:
        the network's own number of draws (astra's 20 for APOGEE Net III and BOSS Net), else
        ``MC_DRAWS``; 0 for a TFLite model.

        Raises:
            ApnetError: ``mc_bad_pixels`` the network does not take.
        """
        check_mc_bad_pixels(self.mc_bad_pixels, model.conventions)
        if self.mc is not None:
            return self
        own = ((model.conventions or {}).get("mc") or {}).get("mc", MC_DRAWS)
        return dataclasses.replace(self, mc=0 if model.kind == "tflite" else int(own))

    def check(self) -> InferenceSettings:
        """Raise ApnetError, naming the option, for a bad ``mc``, ``batch_size`` or
        ``precision``; return the settings."""
        if self.mc is not None:
            require_at_least(self.mc, 0, "--mc")
        require_at_least(self.batch_size, 1, "--batch-size")
        check_inference_precision(self.precision)
        check_mc_bad_pixels(self.mc_bad_pixels)
        return self

    def fingerprint(self) -> dict:
        """What a job's finished parts depend on besides the model and the inputs
        (``workdir``), for both engines: a plain JSON object."""
        # a float32 job's settings are those of before --precision, so its old parts stay
        # reusable, and likewise for the default mask bits and no photometry table
        out = {"mc": self.mc, "batch_size": self.batch_size, "calibrated": self.calibrated,
               "mc_dropout": self.mc_dropout, "seed": self.seed,
               "splits": list(self.split_filter or []),
               **({} if self.precision == "float32" else {"precision": self.precision}),
               **({} if self.mc_bad_pixels == "noise" else {"mc_bad_pixels": "fill"})}
        if self.mask_bits_used != tuple(DEFAULT_MASK_BITS):
            out["mask_bits"] = sorted(int(b) for b in self.mask_bits_used)
        if self.photometry is not None:
            out["photometry"] = fingerprint(self.photometry)
        return out
