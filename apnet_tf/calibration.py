"""Calibrated uncertainties: the Monte Carlo sigma widened by a model-error floor.

The paper's Monte Carlo sigma (3.5) sees only the input noise and underestimates the scatter by
about four (3.6), by an amount that depends on S/N and on the kind of star: at high S/N the
network's own error dominates, which no input noise shows. A calibration holds, per parameter,
per Kiel-diagram region R of the *predicted* Teff and log g and per S/N tercile j (so it uses only
what is known at inference time),

    sigma = f[R, j] * sqrt((noise[R] * sigma_MC)^2 + floor[R]^2).

Its *shape* (how the error changes from region to region and with S/N) is fitted on the training
split, whose stars are ten times as many as dev's; its *level* on dev, because a network fits its
training stars better than new ones:

1. on the training stars, one noise factor and one floor per region by maximum likelihood (a
   grid), the noise factor shared by all regions;
2. per region, the factor that makes 68.3% of its training stars fall within sigma, then per
   region and S/N tercile (edges from the training stars' S/N) the factor, relative to that, of
   its own stars (f, 1 for a cell with fewer than MIN_REGION_STARS);
3. on dev, one factor per parameter: the 68.3% quantile of |prediction - label| / sigma over all
   dev stars. It multiplies noise and floor.

A region with fewer than MIN_REGION_STARS training stars, and a star whose prediction has no
region, take the values of all stars (``all``); a star without S/N takes f = 1. When the training
split has fewer than MIN_SHAPE_STARS labelled stars (a record folder of dev stars only), dev gives
the shape too. It is stored as ``calibration.json`` in a run folder (and copied beside exported
models), and ``infer`` applies it by default.
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
FORMAT = "apnet-tf calibration 3"
#: The fraction of a Gaussian within 1 sigma: the target of calibrated coverage.
ONE_SIGMA = 0.6826894921370859
#: Regions of the Kiel diagram of the predictions (see ``kiel_region``).
REGIONS = ("pms", "cool_dwarf", "giant", "dwarf")
#: Paper section 2: the Payne's labels hold for Teff > 4000 K or log g < 3.5; cooler dwarfs had
#: photometric labels.
COOL_TEFF, DWARF_LOGG = 4000.0, 3.5
#: Keys of a calibration's per-region values: the regions, and all dev stars.
KEYS = REGIONS + ("all",)
#: A region, and a region's S/N tercile, needs this many stars for values of its own.
MIN_REGION_STARS = 30
#: The training split gives the calibration's shape when it has this many stars with each label.
MIN_SHAPE_STARS = 50


class TooFewStars(ApnetError):
    """The dev split cannot support a calibration."""


METHOD = ("sigma = f * sqrt((noise * sigma_MC)^2 + floor^2); noise, floor per Kiel region of the "
          "prediction, f per region and S/N tercile; shape fitted on train, level on dev")


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
    """sigma = f * sqrt((noise * sigma_MC)^2 + floor^2) per region, S/N tercile and parameter
    (module doc).

    ``noise[key]`` and ``floor[key]`` are (3,) for each key of KEYS, ``snr_factor[key]`` (3, 3)
    (parameter, S/N tercile) and ``snr_edges`` the two inner S/N edges of the terciles;
    ``stars[key]`` counts the shape stars behind a region's values (0 where it takes those of
    ``all``), ``shape_split`` names the split that gave the shape and ``dev_stars`` the dev stars
    that gave the level.
    """

    noise: dict[str, list[float]]
    floor: dict[str, list[float]]
    snr_factor: dict[str, list[list[float]]]
    snr_edges: list[float]
    stars: dict[str, int]
    shape_split: str
    realizations: int
    seed: int
    dev_stars: int
    coverage_dev_raw: list[float]
    coverage_dev_calibrated: list[float]
    method: str = METHOD
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
        for key, shape in (("noise", (3,)), ("floor", (3,)), ("snr_factor", (3, 3)),
                           ("stars", ())):
            if not isinstance(d[key], dict) or set(d[key]) != set(KEYS):
                raise ValueError(f"{key} must have exactly the keys {', '.join(KEYS)}")
            for region, v in d[key].items():
                _numbers(v, f"{key}.{region}", shape, positive=key in ("noise", "snr_factor"))
                if key == "floor" and np.any(np.asarray(v, float) < 0):
                    raise ValueError(f"floor.{region} must not be negative, got {v!r}")
        # null edges: the shape stars had no S/N, and every star takes f = 1
        edges = _numbers(d["snr_edges"], "snr_edges", (2,), positive=False, allow_nan=True)
        if np.isfinite(edges).any() and not (np.isfinite(edges).all() and 0 < edges[0] <= edges[1]):
            raise ValueError(f"snr_edges must be two positive S/N in increasing order (or null), "
                             f"got {d['snr_edges']!r}")
        if d["shape_split"] not in ("train", "dev"):
            raise ValueError(f"shape_split must be train or dev, got {d['shape_split']!r}")
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


#: The grids of the maximum-likelihood fit: noise factors, and floors relative to the residuals'
#: standard deviation.
NOISE_GRID = np.exp(np.linspace(-2.0, 3.0, 101))
FLOOR_GRID = np.exp(np.linspace(-6.0, 1.0, 141))


def _max_likelihood(res: np.ndarray, sig: np.ndarray) -> tuple[float, float]:
    """(noise, floor) maximising the Gaussian likelihood of residuals res (N,) given the raw
    Monte Carlo sigmas sig (N,), on a grid."""
    floors = (float(np.std(res)) or 1.0) * FLOOR_GRID
    best = (np.inf, 1.0, floors[0])
    for a in NOISE_GRID:
        var = (a * sig[None]) ** 2 + floors[:, None] ** 2
        nll = np.sum(0.5 * np.log(var) + 0.5 * res[None] ** 2 / var, axis=1)
        i = int(np.argmin(nll))
        if nll[i] < best[0]:
            best = (nll[i], float(a), float(floors[i]))
    return best[1], best[2]


def _quantile_ratio(res: np.ndarray, sigma: np.ndarray) -> float:
    """The factor that puts 68.3% of |res| within factor * sigma."""
    return float(np.quantile(np.abs(res) / sigma, ONE_SIGMA))


def _shape(res: np.ndarray, sig: np.ndarray, region: np.ndarray, tercile: np.ndarray):
    """Steps 1 and 2 of the module doc for one parameter on the shape stars (all finite, sig > 0).

    Returns:
        noise (K,), floor (K,), snr_factor (K, 3) and stars (K,) for K = len(KEYS): a region with
        fewer than MIN_REGION_STARS stars gets the values of ``all`` (the last row) and 0 stars.
    """
    k = len(KEYS)
    noise, floor, factor, stars = np.zeros(k), np.zeros(k), np.ones((k, 3)), np.zeros(k, int)
    for key in reversed(range(k)):  # ``all`` first: small regions take its values
        sel = region == key if key < len(REGIONS) else np.ones(len(res), bool)
        if sel.sum() < MIN_REGION_STARS and key < len(REGIONS):
            noise[key], floor[key], factor[key] = noise[-1], floor[-1], factor[-1]
            continue
        a, b = _max_likelihood(res[sel], sig[sel])
        base = np.sqrt((a * sig[sel]) ** 2 + b**2)
        scale = _quantile_ratio(res[sel], base)
        noise[key], floor[key], stars[key] = a * scale, b * scale, int(sel.sum())
        for j in range(3):
            cell = tercile[sel] == j
            if cell.sum() >= MIN_REGION_STARS:
                factor[key, j] = _quantile_ratio(res[sel][cell], scale * base[cell])
    return noise, floor, factor, stars


def fit_calibration(pred: np.ndarray, sigma: np.ndarray, labels: np.ndarray,
                    realizations: int, seed: int, snr=None, shape=None) -> Calibration:
    """Fit a Calibration (module doc): its level on the dev stars, its shape on ``shape``.

    Args:
        pred, sigma, labels: the dev stars' predictions, raw Monte Carlo sigmas and labels,
            (N, 3) each; snr: their S/N, (N,) (None: unknown).
        shape: (pred, sigma, labels, snr) of the training stars, (M, 3) x 3 and (M,); None, or
            fewer than MIN_SHAPE_STARS stars with some label: the dev stars give the shape too.
    """
    snr = np.full(len(pred), np.nan) if snr is None else np.asarray(snr, float)
    dev = (pred, sigma, labels, snr)
    for t in range(3):
        n = _usable(pred, sigma, labels, t).sum()
        if n < 5:
            raise TooFewStars(f"too few labelled dev stars to calibrate ({int(n)} with "
                              f"{TARGETS[t]}; a calibration needs 5 with each label)")
    use_train = shape is not None and all(
        _usable(shape[0], shape[1], shape[2], t).sum() >= MIN_SHAPE_STARS for t in range(3))
    sp, ss, sl, sn = (np.asarray(x, float) for x in (shape if use_train else dev))
    finite = sn[np.isfinite(sn) & (sn > 0)]
    edges = np.quantile(finite, [1 / 3, 2 / 3]) if finite.size >= 3 else np.full(2, np.nan)
    region = kiel_region(sp[:, 0], sp[:, 1])
    region = np.where(region < 0, len(REGIONS), region)  # no region: only in ``all``
    tercile = snr_bin(sn, edges) if np.isfinite(edges).all() else np.full(len(sn), -1)
    noise, floor, factor = (np.zeros((len(KEYS), 3)), np.zeros((len(KEYS), 3)),
                            np.ones((len(KEYS), 3, 3)))
    stars = np.zeros(len(KEYS), int)
    for t in range(3):
        ok = _usable(sp, ss, sl, t)
        noise[:, t], floor[:, t], factor[:, t], n = _shape(
            sp[ok, t] - sl[ok, t], ss[ok, t], region[ok], tercile[ok])
        stars = np.maximum(stars, n)
    cal = Calibration(noise=_by_key(noise), floor=_by_key(floor), snr_factor=_by_key(factor),
                      snr_edges=_floats(edges), stars=dict(zip(KEYS, map(int, stars))),
                      shape_split="train" if use_train else "dev",
                      realizations=int(realizations), seed=int(seed), dev_stars=int(len(pred)),
                      coverage_dev_raw=_floats(coverage(pred, sigma, labels)),
                      coverage_dev_calibrated=[])
    # the level: one factor per parameter on dev (1 when dev gave the shape)
    level = fit_scale(pred, cal.sigma(pred, sigma, snr), labels)
    for key in KEYS:
        cal.noise[key] = [v * f for v, f in zip(cal.noise[key], level)]
        cal.floor[key] = [v * f for v, f in zip(cal.floor[key], level)]
    cal.coverage_dev_calibrated = _floats(coverage(pred, cal.sigma(pred, sigma, snr), labels))
    return cal


def _usable(pred, sigma, labels, t: int) -> np.ndarray:
    """Stars with a finite prediction, label and positive raw sigma of parameter t, (N,) bool."""
    res = np.asarray(pred, float)[:, t] - np.asarray(labels, float)[:, t]
    sig = np.asarray(sigma, float)[:, t]
    return np.isfinite(res) & np.isfinite(sig) & (sig > 0)


def _by_key(values: np.ndarray) -> dict:
    """{key: values[i].tolist()} for the rows of a (len(KEYS), ...) array."""
    return {k: np.asarray(v, float).tolist() for k, v in zip(KEYS, values)}


def _floats(values) -> list[float]:
    return [float(v) if math.isfinite(v) else None for v in values]


def calibrated_summaries(summaries: dict[str, np.ndarray], calibration: Calibration,
                         snr=None) -> dict[str, np.ndarray]:
    """Monte Carlo summaries with sigma calibrated: ``std`` replaced by ``calibration.sigma``,
    and p16/p84 moved away from p50 by the same ratio (by sigma itself where the raw one is 0).
    The mean and p50 are unchanged. ``snr``: the stars' S/N, (N,) (None: unknown)."""
    std = calibration.sigma(summaries["mean"], summaries["std"], snr)
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
        meta["SIGCAL"] = (f"f*sqrt((noise*sigma_MC)^2+floor^2) per Kiel region and S/N tercile; "
                          f"shape from {cal.shape_split}, level from {cal.dev_stars} dev stars "
                          "(calibration.json)")
        meta["CALMC"] = cal.realizations
    return use, meta


def calibrate(model_path: str, records_dir: str, realizations: int = 100,
              seed: int = 0) -> Calibration:
    """Fit a calibration on ``records_dir`` (its shape on the train split, its level on dev; see
    the module doc) and save ``calibration.json`` in the run folder ``model_path``.

    The Monte Carlo runs over the train and dev stars, so this costs about as much as ``infer``
    over them.

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
                          split_filter=("train", "dev")).catalog
    labels, pred, sigma = catalog_arrays(cat)
    snr, split = np.asarray(cat["SNR"], float), np.asarray(cat["SPLIT"]).astype(str)
    dev, train = split == "dev", split == "train"
    cal = fit_calibration(pred[dev], sigma[dev], labels[dev], realizations, seed, snr=snr[dev],
                          shape=(pred[train], sigma[train], labels[train], snr[train]))
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
