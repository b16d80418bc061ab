"""Calibrated uncertainties: calibration.json, and how it widens the Monte Carlo sigma.

The paper's Monte Carlo sigma (3.5) sees only the input noise and underestimates the scatter by
about four (3.6), by an amount that depends on S/N and on the kind of star. A calibration holds,
per parameter, per Kiel-diagram region R of the *predicted* Teff and log g and per S/N tercile j
(so it uses only what is known at inference time),

    sigma = f[R, j] * sqrt((noise[R] * sigma_MC)^2 + floor[R]^2).

This module holds that format (``Calibration``: its checks, its file) and its use at inference
(``calibrated_summaries``, ``sigma_settings``); ``calibration_fit`` fits it. It is stored as
``calibration.json`` in a run folder (and copied beside exported models), and ``infer`` applies it
by default. A star whose prediction has no region takes the values of all stars (``all``); a star
without S/N takes f = 1.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from apnet_tf.constants import TARGETS, renamed_keys
from apnet_tf.errors import ApnetError
from apnet_tf.io.files import write_json
from apnet_tf.kiel import in_triangle

__all__ = [
    "CALIBRATION", "FORMAT", "OLD_FORMATS", "ONE_SIGMA", "REGIONS", "KEYS", "METHOD",
    "kiel_region", "snr_bin", "usable", "quantile_ratio", "coverage", "fit_scale", "Calibration",
    "finite_or_none", "calibrated_summaries", "error_model_summaries", "sigma_summaries",
    "error_model", "sigma_settings"
]

CALIBRATION = "calibration.json"
FORMAT = "apnet-tf calibration 4"
#: Formats still read: 3 lacks ``coverage_dev_held_out`` (read as unknown, null).
OLD_FORMATS = ("apnet-tf calibration 3",)
#: The fraction of a Gaussian within 1 sigma: the target of calibrated coverage.
ONE_SIGMA = 0.6826894921370859
#: Regions of the Kiel diagram of the predictions (see ``kiel_region``).
REGIONS = ("pms", "cool_dwarf", "giant", "dwarf")
#: Paper section 2: the Payne's labels hold for Teff > 4000 K or log g < 3.5; cooler dwarfs had
#: photometric labels.
COOL_TEFF, DWARF_LOGG = 4000.0, 3.5
#: Keys of a calibration's per-region values: the regions, and all dev stars.
KEYS = REGIONS + ("all",)



METHOD = ("sigma = f * sqrt((noise * sigma_MC)^2 + floor^2); noise, floor per Kiel region of the "
          "prediction, f per region and S/N tercile; shape fitted on train, level on dev")


def kiel_region(teff, logg) -> np.ndarray:
    """Index into REGIONS of each (predicted) star; -1 where a value is not finite. (N,) -> (N,).

    pms: inside the paper's YSO triangle (4.1); cool_dwarf: Teff < 4000 K and log g >= 3.5
    outside it (the M dwarfs); giant: log g < 3.5; dwarf: the rest (Teff >= 4000 K, log g >= 3.5).
    """
    teff, logg = np.asarray(teff, float), np.asarray(logg, float)
    out = np.where(logg < DWARF_LOGG, 2, np.where(teff < COOL_TEFF, 1, 3))
    out = np.where(in_triangle(teff, logg), 0, out)
    return np.where(np.isfinite(teff) & np.isfinite(logg), out, -1)


def snr_bin(snr, edges) -> np.ndarray:
    """Index of each star's S/N bin given the inner edges; -1 where S/N is not finite or not
    positive (a placeholder such as -9999 is no S/N)."""
    snr = np.asarray(snr, float)
    known = np.isfinite(snr) & (snr > 0)
    return np.where(known, np.searchsorted(np.asarray(edges, float), snr, "right"), -1)


def usable(pred, sigma, labels, k: int) -> np.ndarray:
    """Stars with a finite prediction and label and a positive sigma of parameter k, (N,) bool."""
    pred, sigma, labels = (np.asarray(x, float) for x in (pred, sigma, labels))
    return np.isfinite(labels[:, k]) & np.isfinite(pred[:, k]) & (sigma[:, k] > 0)


def quantile_ratio(res: np.ndarray, sigma: np.ndarray, target: float = ONE_SIGMA) -> float:
    """The factor s that puts ``target`` of ``|res|`` within ``s * sigma``; res, sigma (N,)."""
    return float(np.quantile(np.abs(res) / sigma, target))


def coverage(pred: np.ndarray, sigma: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Fraction of stars with ``|pred - label| < sigma``, per parameter; shape (3,)."""
    out = np.full(3, np.nan)
    for k in range(3):
        ok = usable(pred, sigma, labels, k)
        if ok.any():
            out[k] = float(np.mean(np.abs(pred[ok, k] - labels[ok, k]) < sigma[ok, k]))
    return out


def fit_scale(pred: np.ndarray, sigma: np.ndarray, labels: np.ndarray,
              target: float = ONE_SIGMA, min_stars: int = 5) -> np.ndarray:
    """Per-parameter factor s such that ``|pred - label| < s * sigma`` for ``target`` of the stars;
    NaN for a parameter with fewer than ``min_stars`` usable stars. Shape (3,)."""
    out = np.full(3, np.nan)
    for k in range(3):
        ok = usable(pred, sigma, labels, k)
        if ok.sum() >= min_stars:
            out[k] = quantile_ratio(pred[ok, k] - labels[ok, k], sigma[ok, k], target)
    return out


@dataclasses.dataclass
class Calibration:
    """sigma = f * sqrt((noise * sigma_MC)^2 + floor^2) per region, S/N tercile and parameter
    (module doc).

    ``noise[key]`` and ``floor[key]`` are (3,) for each key of KEYS, ``snr_factor[key]`` (3, 3)
    (parameter, S/N tercile) and ``snr_edges`` the two inner S/N edges of the terciles;
    ``stars[key]`` counts the shape stars behind a region's values (0 where it takes those of
    ``all``), ``shape_split`` names the split that gave the shape and ``dev_stars`` the dev stars
    that gave the level. ``coverage_dev_raw`` is the raw sigma's 1-sigma coverage of those dev
    stars; ``coverage_dev_calibrated`` the calibrated one's on the same stars, 0.683 up to the
    quantile's granularity by construction, so it says nothing of how well the calibration
    holds; ``coverage_dev_held_out`` the calibrated one's on dev stars it was not fitted on (each
    half of dev calibrated on the other, ``calibration.fit.held_out_coverage``), which does.
    ``subset`` says how those stars were drawn from the splits (seed,
    stars per stratum, stars drawn and read per split; ``calibration.subset``), None in a file
    fitted on every star.
    """

    noise: dict[str, list[float]]
    floor: dict[str, list[float]]
    snr_factor: dict[str, list[list[float]]]
    snr_edges: list[float]
    stars: dict[str, int]
    shape_split: str
    mc: int
    seed: int
    dev_stars: int
    coverage_dev_raw: list[float]
    coverage_dev_calibrated: list[float]
    coverage_dev_held_out: list[float | None] | None = None
    method: str = METHOD
    subset: dict[str, int] | None = None
    targets: list[str] = dataclasses.field(default_factory=lambda: list(TARGETS))
    format: str = FORMAT

    def sigma(self, pred: np.ndarray, sigma_mc: np.ndarray, snr=None) -> np.ndarray:
        """Calibrated sigma (N, 3) from the prediction (N, 3), the raw Monte Carlo sigma (N, 3)
        and the S/N (N,); without S/N (None or NaN) a star takes f = 1."""
        region = kiel_region(pred[:, 0], pred[:, 1])
        noise = np.array([self.noise[k] for k in KEYS])[region]  # region -1 picks "all"
        floor = np.array([self.floor[k] for k in KEYS])[region]
        snr = np.full(len(pred), np.nan) if snr is None else np.asarray(snr, float)
        edges = np.asarray(self.snr_edges, float)  # null edges: no S/N when it was fitted
        tercile = snr_bin(snr, edges) if np.isfinite(edges).all() else np.full(len(pred), -1)
        factor = np.array([self.snr_factor[k] for k in KEYS])[region, :, tercile]  # (N, 3)
        factor = np.where((tercile >= 0)[:, None], factor, 1.0)
        return factor * np.sqrt((noise * sigma_mc) ** 2 + floor**2)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str) -> None:
        write_json(path, self.to_dict(), allow_nan=False)

    @classmethod
    def load(cls, path: str) -> Calibration:
        """Read and check a calibration.json; any problem is one ApnetError naming the file."""
        import json

        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, ValueError) as exc:
            raise ApnetError(f"{path}: cannot read calibration ({exc})") from None
        try:
            return cls.from_dict(d)
        except (ValueError, TypeError, KeyError) as exc:
            raise ApnetError(f"{path}: invalid calibration: {exc}") from None

    @classmethod
    def from_dict(cls, d) -> Calibration:
        """Check every field (raises ValueError naming the field) and build the calibration."""
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        d = renamed_keys(d)
        if d.get("format") in OLD_FORMATS and "coverage_dev_held_out" not in d:
            d = dict(d, format=FORMAT, coverage_dev_held_out=[None] * 3)
        if d.get("format") != FORMAT:
            raise ValueError(f"format is {d.get('format')!r}, expected {FORMAT!r} (a file from "
                             "an older apnet-tf: run 'apnet-tf calibrate' again)")
        names = {f.name for f in dataclasses.fields(cls)}
        if set(d) - names:
            raise ValueError(f"unknown key(s) {', '.join(sorted(set(d) - names))}")
        missing = names - set(d) - {"method", "subset"}  # a file of an older version has these
        if missing:
            raise ValueError(f"missing key(s) {', '.join(sorted(missing))}")
        if not isinstance(d["targets"], list) or d["targets"] != list(TARGETS):
            raise ValueError(f"targets {d['targets']!r}, expected {list(TARGETS)!r}")
        for key, shape in (("noise", (3,)), ("floor", (3,)), ("snr_factor", (3, 3)),
                           ("stars", ())):
            if not isinstance(d[key], dict) or set(d[key]) != set(KEYS):
                raise ValueError(f"{key} must have exactly the keys {', '.join(KEYS)}")
            for region, v in d[key].items():
                _numbers(v, f"{key}.{region}", shape, positive=key in ("noise", "snr_factor"))
                if key == "floor" and np.any(np.asarray(v, float) < 0):
                    raise ValueError(f"floor.{region} must not be negative, got {v!r}")
                if key == "stars":
                    _count(v, f"stars.{region}", 0)
        # [null, null] edges: the shape stars had no S/N, and every star takes f = 1
        edges = _numbers(d["snr_edges"], "snr_edges", (2,), positive=False, allow_nan=True)
        if np.isfinite(edges).any() and not (np.isfinite(edges).all() and 0 < edges[0] <= edges[1]):
            raise ValueError("snr_edges must be two positive S/N in increasing order (or two "
                             f"nulls), got {d['snr_edges']!r}")
        if d["shape_split"] not in ("train", "dev"):
            raise ValueError(f"shape_split must be train or dev, got {d['shape_split']!r}")
        for key, least in (("mc", 2), ("seed", None), ("dev_stars", 0)):
            _count(d[key], key, least)
        for key in ("coverage_dev_raw", "coverage_dev_calibrated", "coverage_dev_held_out"):
            _numbers(d[key], key, (3,), positive=False, allow_nan=True)
        if d.get("subset") is not None:
            if not isinstance(d["subset"], dict):
                raise ValueError(f"subset must be an object or null, got {d['subset']!r}")
            for key, value in d["subset"].items():
                _count(value, f"subset.{key}", 0)
        return cls(**d)


def _count(value, name: str, least: int | None) -> int:
    """``value`` as a whole number of at least ``least``; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or (least is not None
                                                                 and value < least):
        floor = "" if least is None else f" of at least {least}"
        raise ValueError(f"{name} must be a whole number{floor}, got {value!r}")
    return value


def _numbers(value, name: str, shape: tuple, positive: bool, allow_nan: bool = False):
    """``value`` as a float array of ``shape``; ValueError naming ``name`` otherwise."""
    try:
        arr = np.asarray(value, dtype=float)
        if isinstance(value, (str, bool)) or any(isinstance(v, (str, bool)) for v in
                                                 np.asarray(value, dtype=object).ravel()):
            raise TypeError
    except (TypeError, ValueError):
        raise ValueError(f"{name} must hold numbers, got {value!r}") from None
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(arr.shape)}")
    if not allow_nan and not np.isfinite(arr).all():
        raise ValueError(f"{name} holds a non-finite number: {value!r}")
    if positive and not (arr > 0).all():
        raise ValueError(f"{name} must be positive, got {value!r}")
    return arr


def finite_or_none(values) -> list[float | None]:
    """Floats for JSON: a non-finite value becomes None (null)."""
    return [float(v) if math.isfinite(v) else None for v in values]


def calibrated_summaries(summaries: dict[str, np.ndarray], calibration: Calibration,
                         snr=None) -> dict[str, np.ndarray]:
    """Monte Carlo summaries with sigma calibrated: ``std`` replaced by ``calibration.sigma``,
    and p16/p84 moved away from p50 by the same ratio (by sigma itself where the raw one is 0).
    The mean and p50 are unchanged. ``snr``: the stars' S/N, (N,) (None: unknown)."""
    return _with_sigma(summaries, calibration.sigma(summaries["mean"], summaries["std"], snr))


def error_model_summaries(summaries: dict[str, np.ndarray], model: dict,
                          ) -> dict[str, np.ndarray]:
    """Monte Carlo summaries with sigma = a x raw sigma + b per label, ``model`` {label: [a,
    b]} (astra's error model of APOGEE Net III, its conventions' catalog.error_model), the
    percentiles moved as ``calibrated_summaries`` moves them; a label it does not name keeps
    its raw sigma. Columns in TARGETS order (then RV)."""
    std = np.array(summaries["std"], dtype=float)
    for k, name in enumerate(TARGETS):
        if name in model:
            a, b = model[name]
            std[:, k] = a * std[:, k] + b
    return _with_sigma(summaries, std)


def sigma_summaries(summaries: dict[str, np.ndarray], calibration: Calibration | None,
                    conventions: dict | None, snr=None) -> dict[str, np.ndarray]:
    """The summaries with a model's sigmas: its calibration.json's (``calibrated_summaries``),
    else its conventions' error model (``error_model_summaries``), else unchanged."""
    if calibration is not None:
        return calibrated_summaries(summaries, calibration, snr)
    model = error_model(conventions)
    return summaries if model is None else error_model_summaries(summaries, model)


def error_model(conventions: dict | None) -> dict | None:
    """The error model a network's conventions carry (astra's APOGEE Net III), or None."""
    return ((conventions or {}).get("catalog") or {}).get("error_model") or None


def _with_sigma(summaries: dict[str, np.ndarray], std: np.ndarray) -> dict[str, np.ndarray]:
    out = dict(summaries, std=std)
    if "p50" in out:
        raw = summaries["std"]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(raw > 0, std / raw, np.nan)
        for p, sign in (("p16", -1.0), ("p84", 1.0)):
            moved = summaries["p50"] + ratio * (summaries[p] - summaries["p50"])
            out[p] = np.where(raw > 0, moved, summaries["p50"] + sign * std)
    return out


def sigma_settings(model, mc: int, calibrated: bool | None, mc_dropout: bool,
                   seed: int) -> tuple[bool, dict]:
    """Whether a catalog gets calibrated sigmas, and the table.meta entries that say what its
    sigmas are: SIGMA (calibrated, raw MC, raw MC + dropout, none), MC (the draws per star),
    MCSEED, and for calibrated sigmas SIGCAL (how) and CALMC (the calibration's draws per star).
    ``model`` is a ``runtime.Runtime``. A network whose conventions carry an error model
    (astra's, for APOGEE Net III) has it applied where a calibration would be: SIGMA says
    "astra error model"."""
    errors = (None if model.calibration is not None
              else error_model(getattr(model, "conventions", None)))
    if errors is not None and calibrated is not False and mc > 0 and not mc_dropout:
        return True, {"MC": int(mc), "MCSEED": seed, **_error_model_meta(errors)}
    if errors is not None and calibrated:
        raise ApnetError("astra's error model applies to the Monte Carlo sigma: it needs "
                         "draws (mc > 0) and no MC dropout")
    if calibrated and model.calibration is None:
        if getattr(model, "kind", "keras") != "keras":  # an export carries its run's calibration
            raise ApnetError(f"{model.path}: this export has no calibration (its run had none "
                             "when exported); calibrate the run (apnet-tf calibrate --model RUN) "
                             "and export it again, or use --raw-sigma")
        raise ApnetError(f"{model.path}: no calibration.json; run 'apnet-tf calibrate' first, "
                         "or ask for the raw Monte Carlo sigma")
    if calibrated and mc_dropout:
        raise ApnetError("the calibration applies to the Monte Carlo sigma without MC dropout; "
                         "use one or the other")
    if calibrated and mc <= 0:
        raise ApnetError("calibrated sigmas need Monte Carlo draws (mc > 0)")
    use = mc > 0 and not mc_dropout and model.calibration is not None and calibrated is not False
    meta = {"MC": int(mc), "MCSEED": seed,
            "SIGMA": "none" if mc <= 0 else "calibrated" if use else
            "raw MC + MC dropout" if mc_dropout else "raw MC"}
    if use:
        cal = model.calibration
        meta["SIGCAL"] = (f"f*sqrt((noise*sigma_MC)^2+floor^2) per Kiel region and S/N tercile; "
                          f"shape from {cal.shape_split}, level from {cal.dev_stars} dev stars "
                          "(calibration.json)")
        meta["CALMC"] = cal.mc
    return use, meta


def _error_model_meta(model: dict) -> dict:
    """SIGMA and SIGCAL of a catalog whose sigmas went through an error model."""
    terms = "; ".join(f"{k} {a:g} x raw + {b:g}" for k, (a, b) in model.items())
    return {"SIGMA": "astra error model", "SIGCAL": f"{terms} (run.json conventions)"}
