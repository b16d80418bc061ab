"""The TFLite runtime: a .tflite file of an export run by LiteRT's interpreter, with the
package's one Monte Carlo run eagerly around it, and the export's metadata and calibration
from beside the file."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from apnet_tf.errors import ApnetError, first_line
from apnet_tf.io.files import read_json
from apnet_tf.io.photometry import PHOT_COLUMNS
from apnet_tf.model.bossnet_conventions import conventions as bossnet_conventions
from apnet_tf.model.bossnet_mc import MC_STYLES as BOSSNET_STYLES
from apnet_tf.model.bossnet_mc import bossnet_monte_carlo
from apnet_tf.model.calibration import CALIBRATION
from apnet_tf.model.novelty import read_novelty
from apnet_tf.model.published import conventions as published_conventions
from apnet_tf.model.runtime import ExportedRuntime, read_calibration
from apnet_tf.model.uncertainty import clean_errors, draw_seed, monte_carlo
from apnet_tf.quiet import native_stderr_silenced

__all__ = ["TFLiteRuntime", "load_tflite", "TFLITE_CHUNK"]

#: Rows per interpreter call.
TFLITE_CHUNK = 1024


@dataclasses.dataclass(kw_only=True, eq=False)
class TFLiteRuntime(ExportedRuntime):
    """A LiteRT signature runner (``runner``) with its export's metadata and calibration."""

    kind = "tflite"
    runner: object  # ai_edge_litert's SignatureRunner of serving_default
    network: object = None  # APOGEE Net III and BOSS Net: the runner of their "network"
    n_outputs: int = 3

    def predict(self, flux: np.ndarray, photometry: np.ndarray | None = None) -> np.ndarray:
        return self._rows(**self.network_inputs(flux, photometry))

    def monte_carlo(self, flux, err, bad, mc: int, *, seed=0, photometry=None,
                    mc_dropout: bool = False, wavelength=None) -> dict[str, np.ndarray]:
        mc, phot = self.exported_mc_inputs(mc, photometry, mc_dropout, wavelength)
        if self.mc_style in BOSSNET_STYLES:
            return self._bossnet_monte_carlo(flux, err, bad, mc, seed, wavelength)
        err, bad = clean_errors(err, bad)
        # the one Monte Carlo, run eagerly, with the interpreter as the network
        out = monte_carlo(lambda x, m=None: tf.constant(self._rows(
            x.numpy(), None if m is None else m.numpy())), tf.constant(flux, tf.float32), err,
            bad, mc, tf.constant(draw_seed(seed), tf.int64), style=self.mc_style,
            photometry=phot)
        return {k: v.numpy() for k, v in out.items()}

    def _bossnet_monte_carlo(self, flux, err, bad, mc, seed, wavelength):
        """``bossnet_mc.bossnet_monte_carlo`` run eagerly, the interpreter's ``network``
        signature as the network."""
        conv = self.conventions
        if self.network is None:
            raise ApnetError(f"{self.path}: no 'network' signature for APOGEE Net III's or BOSS "
                             "Net's Monte Carlo (exported by an older apnet-tf); export again")
        flux = np.asarray(flux, np.float32)
        bad = np.zeros(flux.shape, bool) if bad is None else np.asarray(bad, bool)
        out = bossnet_monte_carlo(
            lambda x: tf.constant(self._chunks(self.network, "scaled", x.numpy(), "z")),
            flux, np.asarray(err, np.float32), bad, mc, tf.constant(draw_seed(seed), tf.int64),
            order=conv["output_order"], mean=conv["mean"], std=conv["std"],
            clip_together=conv["mc"]["style"] == "astra", wavelength=wavelength)
        return {k: v.numpy() for k, v in out.items()}

    def _chunks(self, runner, name: str, rows: np.ndarray, output: str) -> np.ndarray:
        """``runner`` on ``rows`` fed as ``name``, ``TFLITE_CHUNK`` rows per call."""
        outs = [runner(**{name: np.ascontiguousarray(rows[i:i + TFLITE_CHUNK])})[output]
                for i in range(0, len(rows), TFLITE_CHUNK)]
        return np.concatenate(outs) if outs else np.empty((0, self.n_outputs), np.float32)

    def _rows(self, flux: np.ndarray, photometry: np.ndarray | None = None) -> np.ndarray:
        """(B, 3) of the interpreter, ``TFLITE_CHUNK`` rows per call."""
        outs = []
        for i in range(0, len(flux), TFLITE_CHUNK):
            feed = {"flux": np.ascontiguousarray(flux[i:i + TFLITE_CHUNK])}
            if photometry is not None:
                feed["photometry"] = np.ascontiguousarray(photometry[i:i + TFLITE_CHUNK],
                                                          np.float32)
            outs.append(self.runner(**feed)["labels"])
        return np.concatenate(outs) if outs else np.empty((0, self.n_outputs), np.float32)


def load_tflite(path: str, calibration: bool = True) -> TFLiteRuntime:
    """A .tflite file, with export_metadata.json and calibration.json from its folder.
    ``calibration=False`` leaves any calibration.json unread.

    Raises:
        ApnetError: no such file, one LiteRT cannot run, or an invalid calibration.json.
    """
    if not os.path.exists(path):
        raise ApnetError(f"{path}: no such file")
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_path=path, num_threads=os.cpu_count())
        runner = interp.get_signature_runner("serving_default")
        details = runner.get_input_details()
        feed = {"flux": np.zeros((1, int(details["flux"]["shape_signature"][-1])), np.float32)}
        if "photometry" in details:
            feed["photometry"] = np.zeros((1, len(PHOT_COLUMNS)), np.float32)
        with native_stderr_silenced():  # LiteRT's one XNNPACK INFO line, on the first call
            n_outputs = int(runner(**feed)["labels"].shape[-1])
        network = (interp.get_signature_runner("network")
                   if "network" in interp.get_signature_list() else None)
    except Exception as exc:
        raise ApnetError(f"{path}: not a usable TFLite model ({first_line(exc)})") from None
    meta = read_json(os.path.join(os.path.dirname(path), "export_metadata.json"))
    cal = read_calibration(os.path.join(os.path.dirname(path), CALIBRATION), calibration)
    conv = (meta or {}).get("conventions")
    if meta is None and network is not None:  # the file alone: APOGEE Net III or BOSS Net,
        conv = bossnet_conventions("bossnet" if n_outputs == 4 else "anet3")  # astra's
    elif meta is None and "photometry" in feed:  # the file alone: taken for the published
        conv = published_conventions("anet2")  # Net II (a fitted one's MC is the package's)
    return TFLiteRuntime(runner=runner, path=path, calibration=cal, metadata=meta,
                         novelty=read_novelty(os.path.dirname(path) or "."),
                         conventions=conv, takes_photometry="photometry" in feed,
                         network=network, n_outputs=n_outputs)
