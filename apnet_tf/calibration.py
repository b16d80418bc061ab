"""Calibrated uncertainties: the Monte Carlo sigma widened by a model-error floor, fitted on dev.

The paper's Monte Carlo sigma (3.5) sees only the input noise and underestimates the scatter by
about four (3.6), by an amount that depends on S/N and on the kind of star: at high S/N the
network's own error dominates, which no input noise shows. A calibration holds, per parameter and
per Kiel-diagram region of the *predicted* Teff and log g (so it uses only what is known at
inference time),

    sigma = sqrt((noise * sigma_MC)^2 + floor^2).

``noise`` and ``floor`` are first fitted on all dev stars by maximum likelihood (a grid); then each
region's pair is multiplied by the 68.3% quantile of |prediction - label| / sigma over its dev
stars, shrunk towards that of all dev stars with a weight n / (n + SHRINK_STARS), so that a region
with few dev stars moves little. A region with fewer than MIN_REGION_STARS dev stars, and a star
whose prediction has no region, take the values of all dev stars (``all``). It is stored as
``calibration.json`` in a run folder (and copied beside exported models), and ``infer`` applies it
by default.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from .constants import TARGETS
from .errors import ApnetError
from .files import write_json

CALIBRATION = "calibration.json"
FORMAT = "apnet-tf calibration 2"
#: The fraction of a Gaussian within 1 sigma: the target of calibrated coverage.
ONE_SIGMA = 0.6826894921370859
#: Regions of the Kiel diagram of the predictions (see ``kiel_region``).
REGIONS = ("pms", "cool_dwarf", "giant", "dwarf")
#: Paper section 2: the Payne's labels hold for Teff > 4000 K or log g < 3.5; cooler dwarfs had
#: photometric labels.
COOL_TEFF, DWARF_LOGG = 4000.0, 3.5
#: Keys of a calibration's per-region values: the regions, and all dev stars.
KEYS = REGIONS + ("all",)
#: A region needs this many dev stars for values of its own ...
MIN_REGION_STARS = 10
#: ... and its factor is shrunk towards all stars' as if this many stars had that one.
SHRINK_STARS = 20


class TooFewStars(ApnetError):
    """The dev split cannot support a calibration."""


METHOD = ("sigma = sqrt((noise * sigma_MC)^2 + floor^2) per Kiel region of the prediction, "
          "fitted on dev")


def kiel_region(teff, logg) -> np.ndarray:
    """Index into REGIONS of each (predicted) star; -1 where a value is not finite. (N,) -> (N,).

    pms: inside the paper's YSO triangle (4.1); cool_dwarf: Teff < 4000 K and log g >= 3.5
    outside it (the M dwarfs); giant: log g < 3.5; dwarf: the rest (Teff >= 4000 K, log g >= 3.5).
    """
    from .inference import in_triangle

    teff, logg = np.asarray(teff, float), np.asarray(logg, float)
    out = np.where(logg < DWARF_LOGG, 2, np.where(teff < COOL_TEFF, 1, 3))
    out = np.where(in_triangle(teff, logg), 0, out)
    return np.where(np.isfinite(teff) & np.isfinite(logg), out, -1)


def snr_bin(snr, edges) -> np.ndarray:
    """Index of each star's S/N bin given the inner edges; -1 where S/N is not finite."""
    snr = np.asarray(snr, float)
    return np.where(np.isfinite(snr), np.searchsorted(np.asarray(edges, float), snr, "right"), -1)


def coverage(pred: np.ndarray, sigma: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Fraction of stars with |pred - label| < sigma, per parameter; shape (3,)."""
    out = np.full(3, np.nan)
    for k in range(3):
        ok = np.isfinite(labels[:, k]) & np.isfinite(pred[:, k]) & (sigma[:, k] > 0)
        if ok.any():
            out[k] = float(np.mean(np.abs(pred[ok, k] - labels[ok, k]) < sigma[ok, k]))
    return out


def fit_scale(pred: np.ndarray, sigma: np.ndarray, labels: np.ndarray,
              target: float = ONE_SIGMA, min_stars: int = 5) -> np.ndarray:
    """Per-parameter factor s such that |pred - label| < s * sigma for ``target`` of the stars;
    NaN for a parameter with fewer than ``min_stars`` usable stars. Shape (3,)."""
    out = np.full(3, np.nan)
    for k in range(3):
        ok = np.isfinite(labels[:, k]) & np.isfinite(pred[:, k]) & (sigma[:, k] > 0)
        if ok.sum() >= min_stars:
            out[k] = float(np.quantile(np.abs(pred[ok, k] - labels[ok, k]) / sigma[ok, k],
                                       target))
    return out


@dataclasses.dataclass
class Calibration:
    """sigma = sqrt((noise * sigma_MC)^2 + floor^2) per region and parameter (module doc).

    ``noise[key]`` and ``floor[key]`` are (3,) for each key of KEYS; ``stars[key]`` counts the dev
    stars behind them (0 where a region takes the values of ``all``).
    """

    noise: dict[str, list[float]]
    floor: dict[str, list[float]]
    stars: dict[str, int]
    realizations: int
    seed: int
    dev_stars: int
    coverage_dev_raw: list[float]
    coverage_dev_calibrated: list[float]
    method: str = METHOD
    targets: list[str] = dataclasses.field(default_factory=lambda: list(TARGETS))
    format: str = FORMAT

    def sigma(self, pred: np.ndarray, sigma_mc: np.ndarray) -> np.ndarray:
        """Calibrated sigma (N, 3) from the prediction (N, 3) and the raw Monte Carlo sigma."""
        region = kiel_region(pred[:, 0], pred[:, 1])
        noise = np.array([self.noise[k] for k in KEYS])[region]  # region -1 picks "all"
        floor = np.array([self.floor[k] for k in KEYS])[region]
        return np.sqrt((noise * sigma_mc) ** 2 + floor**2)

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
        if d.get("format") != FORMAT:
            raise ValueError(f"format is {d.get('format')!r}, expected {FORMAT!r} (a file from "
                             "an older apnet-tf: run 'apnet-tf calibrate' again)")
        names = {f.name for f in dataclasses.fields(cls)}
        if set(d) - names:
            raise ValueError(f"unknown key(s) {', '.join(sorted(set(d) - names))}")
        if names - set(d) - {"method"}:
            raise ValueError(f"missing key(s) {', '.join(sorted(names - set(d) - {'method'}))}")
        if list(d["targets"]) != list(TARGETS):
            raise ValueError(f"targets {d['targets']!r}, expected {list(TARGETS)!r}")
        for key, shape in (("noise", (3,)), ("floor", (3,)), ("stars", ())):
            if not isinstance(d[key], dict) or set(d[key]) != set(KEYS):
                raise ValueError(f"{key} must have exactly the keys {', '.join(KEYS)}")
            for region, v in d[key].items():
                _numbers(v, f"{key}.{region}", shape, positive=key == "noise")
                if key == "floor" and np.any(np.asarray(v, float) < 0):
                    raise ValueError(f"floor.{region} must not be negative, got {v!r}")
        for key in ("realizations", "seed", "dev_stars"):
            _numbers(d[key], key, (), positive=False)
        for key in ("coverage_dev_raw", "coverage_dev_calibrated"):
            _numbers(d[key], key, (3,), positive=False, allow_nan=True)
        return cls(**d)


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


def _max_likelihood(res: np.ndarray, sig: np.ndarray) -> tuple[float, float]:
    """(noise, floor) maximising the Gaussian likelihood of residuals res given sigma_MC sig."""
    spread = float(np.std(res)) or 1.0
    floors = spread * np.exp(np.linspace(-6.0, 1.0, 141))
    best = (np.inf, 1.0, spread)
    for a in np.exp(np.linspace(-2.0, 3.0, 101)):
        var = (a * sig[None]) ** 2 + floors[:, None] ** 2
        nll = np.sum(0.5 * np.log(var) + 0.5 * res[None] ** 2 / var, axis=1)
        i = int(np.argmin(nll))
        if nll[i] < best[0]:
            best = (nll[i], float(a), float(floors[i]))
    return best[1], best[2]


def fit_calibration(pred: np.ndarray, sigma: np.ndarray, labels: np.ndarray,
                    realizations: int, seed: int) -> Calibration:
    """Fit a Calibration on dev stars: pred, sigma (raw Monte Carlo), labels, each (N, 3)."""
    region = kiel_region(pred[:, 0], pred[:, 1])
    noise = {k: [1.0] * 3 for k in KEYS}
    floor = {k: [0.0] * 3 for k in KEYS}
    stars = {k: 0 for k in KEYS}
    for t in range(3):
        res, sig = pred[:, t] - labels[:, t], sigma[:, t]
        ok = np.isfinite(res) & np.isfinite(sig) & (sig > 0)
        if ok.sum() < 5:
            raise TooFewStars(f"too few labelled dev stars to calibrate ({int(ok.sum())} with "
                              f"{TARGETS[t]}; a calibration needs 5 with each label)")
        a, b = _max_likelihood(res[ok], sig[ok])
        ratio = np.abs(res) / np.sqrt((a * sig) ** 2 + b**2)
        c_all = float(np.quantile(ratio[ok], ONE_SIGMA))
        for key in KEYS:
            sel = ok & (region == KEYS.index(key)) if key != "all" else ok
            n = int(sel.sum())
            c = c_all
            if key != "all" and n >= MIN_REGION_STARS:
                c = (n * float(np.quantile(ratio[sel], ONE_SIGMA)) + SHRINK_STARS * c_all) / (
                    n + SHRINK_STARS)
                stars[key] = max(stars[key], n)
            elif key == "all":
                stars[key] = n
            noise[key][t], floor[key][t] = a * c, b * c
    cal = Calibration(noise=noise, floor=floor, stars=stars, realizations=int(realizations),
                      seed=int(seed), dev_stars=int(len(pred)),
                      coverage_dev_raw=_floats(coverage(pred, sigma, labels)),
                      coverage_dev_calibrated=[])
    cal.coverage_dev_calibrated = _floats(coverage(pred, cal.sigma(pred, sigma), labels))
    return cal


def _floats(values) -> list[float]:
    return [float(v) if math.isfinite(v) else None for v in values]


def calibrated_summaries(summaries: dict[str, np.ndarray],
                         calibration: Calibration) -> dict[str, np.ndarray]:
    """Monte Carlo summaries with sigma calibrated: ``std`` replaced by ``calibration.sigma``,
    and p16/p84 moved away from p50 by the same ratio (by sigma itself where the raw one is 0).
    The mean and p50 are unchanged."""
    std = calibration.sigma(summaries["mean"], summaries["std"])
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
    sigmas are: SIGMA (calibrated, raw MC, raw MC + dropout, none), MC (the realizations used),
    MCSEED, and for calibrated sigmas SIGCAL (how) and CALMC (the calibration's realizations).
    ``model`` is an ``inference.LoadedModel``."""
    if calibrated and model.calibration is None:
        raise ApnetError(f"{model.path}: no calibration.json; run 'apnet-tf calibrate' first, "
                         "or ask for the raw Monte Carlo sigma")
    if calibrated and mc_dropout:
        raise ApnetError("the calibration applies to the Monte Carlo sigma without MC dropout; "
                         "use one or the other")
    if calibrated and mc <= 0:
        raise ApnetError("calibrated sigmas need Monte Carlo realizations (mc > 0)")
    use = mc > 0 and not mc_dropout and model.calibration is not None and calibrated is not False
    meta = {"MC": int(mc), "MCSEED": seed,
            "SIGMA": "none" if mc <= 0 else "calibrated" if use else
            "raw MC + MC dropout" if mc_dropout else "raw MC"}
    if use:
        cal = model.calibration
        meta["SIGCAL"] = (f"sqrt((noise*sigma_MC)^2+floor^2) per Kiel region, fitted on "
                          f"{cal.dev_stars} dev stars (calibration.json)")
        meta["CALMC"] = cal.realizations
    return use, meta


def calibrate(model_path: str, records_dir: str, realizations: int = 100,
              seed: int = 0) -> Calibration:
    """Fit a calibration on the dev split of ``records_dir`` and save ``calibration.json`` in the
    run folder ``model_path``.

    Returns:
        The ``Calibration`` written.
    """
    from .evaluation import catalog_arrays
    from .inference import load_model, predict_catalog
    from .records import count_records

    from .errors import require_at_least

    require_at_least(realizations, 2, "--mc")  # a spread needs two realizations
    if not os.path.isdir(model_path):
        raise ApnetError(f"{model_path}: calibrate needs a run folder (it writes "
                         "calibration.json there)")
    if count_records(records_dir, ["dev"]) == 0:
        raise ApnetError(f"{records_dir}: no dev records to calibrate on")
    loaded = load_model(model_path, calibration=False)
    cat = predict_catalog(loaded, [records_dir], mc=realizations, calibrated=False, seed=seed,
                          split_filter=("dev",)).catalog
    labels, pred, sigma = catalog_arrays(cat)
    cal = fit_calibration(pred, sigma, labels, realizations, seed)
    cal.save(os.path.join(model_path, CALIBRATION))
    return cal


def calibrate_fitted_run(run_dir: str, records_dir: str, seed: int = 0) -> Calibration | None:
    """The last step of ``fit``: calibrate the run on its dev split (``calibrate``), so that
    ``infer`` gives calibrated sigmas by default. Returns None, and leaves no calibration.json,
    when the dev split has fewer labelled stars than a calibration needs."""
    try:
        return calibrate(run_dir, records_dir, seed=seed)
    except TooFewStars:
        return None
