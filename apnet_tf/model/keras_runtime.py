"""The Keras runtime: a run folder (best.keras, normalization.json, calibration.json) or a .keras
file, predicting with the Keras model itself, in float32 or as its bfloat16 twin."""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np

from apnet_tf.constants import N_PIXELS, TARGETS
from apnet_tf.errors import ApnetError, first_line
from apnet_tf.io.files import read_json
from apnet_tf.model.bossnet import BOSS_GRID
from apnet_tf.model.bossnet_mc import MC_STYLES as BOSSNET_STYLES
from apnet_tf.model.bossnet_mc import BossNetMonteCarlo
from apnet_tf.model.calibration import CALIBRATION
from apnet_tf.model.network import predictor, takes_photometry
from apnet_tf.model.novelty import read_novelty
from apnet_tf.model.precision import computing_in
from apnet_tf.model.published import conventions_of, read_conventions
from apnet_tf.model.runtime import Runtime, read_calibration
from apnet_tf.model.uncertainty import MonteCarloPredictor, check_mc, check_mc_dropout

__all__ = ["KerasRuntime", "load_keras_runtime", "load_keras", "read_normalization"]


@dataclasses.dataclass(kw_only=True, eq=False)
class KerasRuntime(Runtime):
    """A Keras model (``model``) with what its run folder says of it (``Runtime``)."""

    kind = "keras"
    model: keras.Model

    def __post_init__(self):
        self._predict = predictor(self.model)
        # the Monte Carlo predictor of the last (mc, mc_dropout) asked for: a job asks for one
        self._monte_carlo: tuple[tuple[int, bool], object] | None = None

    def predict(self, flux: np.ndarray, photometry: np.ndarray | None = None) -> np.ndarray:
        return self._predict(*self.network_inputs(flux, photometry).values())

    def monte_carlo(self, flux, err, bad, mc: int, *, seed=0, photometry=None,
                    mc_dropout: bool = False, wavelength=None) -> dict[str, np.ndarray]:
        mc = check_mc(mc)
        phot = self.network_photometry(photometry)
        self.refuse_wavelength(wavelength)
        if self.mc_style in BOSSNET_STYLES:
            if mc_dropout:
                raise ApnetError(f"{self.path}: APOGEE Net III and BOSS Net have no dropout")
            return self._monte_carlo_predictor(mc, False)(flux, err, bad, seed, wavelength)
        if mc_dropout:  # a trained run of fit --arch anet3 has none either
            check_mc_dropout(self.model, self.path)
        return self._monte_carlo_predictor(mc, mc_dropout)(flux, err, bad, seed,
                                                           photometry=phot)

    def _monte_carlo_predictor(self, mc: int, mc_dropout: bool):
        """The ``MonteCarloPredictor`` (or, for APOGEE Net III and BOSS Net, the
        ``BossNetMonteCarlo``) of the last (mc, mc_dropout) asked for."""
        key = (mc, mc_dropout)
        if self._monte_carlo is None or self._monte_carlo[0] != key:
            if self.mc_style in BOSSNET_STYLES:
                made = BossNetMonteCarlo(self.model, self.conventions, mc)
            else:
                made = MonteCarloPredictor(self.model, mc, mc_dropout=mc_dropout,
                                           style=self.mc_style)
            self._monte_carlo = key, made
        return self._monte_carlo[1]

    def in_precision(self, precision: str) -> KerasRuntime:
        """Itself for its own precision, else its twin computing in ``precision`` (one of
        ``PRECISIONS``; ``precision.computing_in``: same weights, float32 outputs)."""
        if precision == self.precision:
            return self
        return dataclasses.replace(self, model=computing_in(self.model, precision),
                                   precision=precision)


def load_keras_runtime(path: str, calibration: bool = True) -> KerasRuntime:
    """A run folder (best.keras, normalization.json, calibration.json; run.json's conventions)
    or a .keras file alone. ``calibration=False`` leaves any calibration.json unread.

    Raises:
        ApnetError: no loadable model there, or an invalid normalization or calibration.json.
    """
    if os.path.isdir(path):
        keras_path = os.path.join(path, "best.keras")
        norm = read_normalization(os.path.join(path, "normalization.json"))
        cal = read_calibration(os.path.join(path, CALIBRATION), calibration)
        novelty = read_novelty(path)
    else:
        keras_path, norm, cal, novelty = path, None, None, None
    model = load_keras(keras_path)
    _check_spectral(model, keras_path)
    conv = read_conventions(path) if os.path.isdir(path) else None
    return KerasRuntime(model=model, path=path, normalization=norm, calibration=cal,
                        novelty=novelty,
                        conventions=conv or conventions_of(model),
                        takes_photometry=takes_photometry(model))


#: (flux input, output) shapes of the spectral networks: apStar flux -> Teff, log g, [Fe/H];
#: BOSS Net's flux on its grid -> the same and RV.
_SPECTRAL_SHAPES = (((None, N_PIXELS), (None, len(TARGETS))),
                   ((None, BOSS_GRID[2]), (None, len(TARGETS) + 1)))


def _check_spectral(model: keras.Model, path: str) -> None:
    """ApnetError unless ``model`` takes apStar flux (B, 8575) and gives Teff, log g, [Fe/H]
    (or is BOSS Net): another network (the YSO photometric one) would load, then fail on the
    first spectra."""
    flux = model.input_shape[0] if takes_photometry(model) else model.input_shape
    if (tuple(flux), tuple(model.output_shape)) not in _SPECTRAL_SHAPES:
        raise ApnetError(f"{path}: not a network of apStar spectra (input {flux}, output "
                         f"{model.output_shape}; expected flux (None, {N_PIXELS}) -> "
                         f"{', '.join(TARGETS)}); the YSO photometric network goes to "
                         "yso-labels --model")


def load_keras(path: str) -> keras.Model:
    """A .keras file as a keras.Model, with the package's layers registered.

    Raises:
        ApnetError: the file is missing, not a complete .keras (zip) archive, or Keras cannot
            build the model from it; the message names the file.
    """
    import zipfile

    if not os.path.isfile(path):
        raise ApnetError(f"{path}: no such model file")
    # Keras reports a damaged archive as "File not found"; say what is wrong instead.
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ApnetError(f"{path}: not a complete .keras file (truncated or damaged: "
                         f"{first_line(exc)})") from None
    if damaged is not None:
        raise ApnetError(f"{path}: damaged .keras file ({damaged} fails its checksum)")
    try:
        return keras.models.load_model(path)
    except Exception as exc:  # keras raises many types for a bad file
        raise ApnetError(f"{path}: cannot load model ({first_line(exc)})") from None


def read_normalization(path: str) -> dict | None:
    """A run's normalization.json, checked: three finite means and positive stds.

    Returns None when the file is absent (a run folder may hold only best.keras).

    Raises:
        ApnetError: the file is present but unreadable or does not hold usable statistics.
    """
    if not os.path.exists(path):
        return None
    norm = read_json(path)
    if not isinstance(norm, dict):
        raise ApnetError(f"{path}: not readable JSON; re-run fit, or import-torch, to rewrite "
                         "it")
    for key in ("mean", "std", "min", "max"):
        values = norm.get(key)
        if key in ("mean", "std") or values is not None:
            if not isinstance(values, list) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool)
                    or (v is None and key in ("min", "max")) for v in values):
                raise ApnetError(f"{path}: '{key}' must be three numbers (teff, logg, fe_h), got "
                                 f"{values!r}; re-run fit, or import-torch, to rewrite it")
    mean = np.asarray(norm["mean"], dtype=float)
    std = np.asarray(norm["std"], dtype=float)
    if mean.shape != (3,) or std.shape != (3,) or not (np.isfinite(mean).all()
                                                       and np.isfinite(std).all()
                                                       and (std > 0).all()):
        raise ApnetError(f"{path}: 'mean' and 'std' must be three finite numbers each, std "
                         f"positive; got {norm['mean']!r}, {norm['std']!r}")
    return norm
