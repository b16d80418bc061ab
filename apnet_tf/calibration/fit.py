"""Fitting a calibration (``calibration.Calibration``): its shape on the training split, its
level on dev.

At high S/N the network's own error dominates, which no input noise shows, so the raw Monte Carlo
sigma falls short most there; and the shortfall differs between kinds of star. The calibration's
*shape* (how the error changes from region to region and with S/N) is fitted on the training
split, whose stars are ten times as many as dev's; its *level* on dev, because a network fits its
training stars better than new ones:

1. per region of the training stars, a noise factor and a floor by maximum likelihood (a grid),
   scaled so that 68.3% of the region's stars fall within sigma;
2. per region and S/N tercile (edges from the training stars' S/N), the factor f, relative to
   that, of the cell's own stars (1 for a cell with fewer than MIN_REGION_STARS);
3. on dev, one factor per parameter: the 68.3% quantile of ``|prediction - label| / sigma`` over all
   dev stars. It multiplies noise and floor.

How well it holds is then measured on dev stars it was not fitted on (``held_out_coverage``: each
half of dev judged by the level fitted on the other half); on the stars that set the level the
coverage is 0.683 by construction and says nothing.

A region with fewer than MIN_REGION_STARS training stars takes the values of all stars (``all``).
When the training split has fewer than MIN_SHAPE_STARS labelled stars (a record folder of dev
stars only), dev gives the shape too.

``calibrate`` runs the Monte Carlo over a seeded, stratified subset of the train and dev stars
(``subset``), not over every star: a few hundred residuals fix each of these numbers, and the
Monte Carlo's cost then stays the same whatever the survey's size.
"""

from __future__ import annotations

import dataclasses
import operator
import os

import numpy as np

from apnet_tf.calibration.reference import CALIBRATION_STARS, TRAINING_STARS, write_novelty
from apnet_tf.calibration.subset import ALL_STARS, choose_subset, tercile_edges
from apnet_tf.constants import (
    CALIBRATION_MC_DRAWS,
    CALIBRATION_STARS_PER_STRATUM,
    TARGETS,
)
from apnet_tf.data.manifest import count_records
from apnet_tf.errors import ApnetError, check_seed, require_at_least
from apnet_tf.inference.predict import predict_catalog
from apnet_tf.io.catalog import catalog_arrays
from apnet_tf.io.files import locks_output
from apnet_tf.model.calibration import (
    CALIBRATION,
    KEYS,
    REGIONS,
    Calibration,
    coverage,
    finite_or_none,
    fit_scale,
    kiel_region,
    quantile_ratio,
    snr_bin,
    usable,
)
from apnet_tf.model.loading import load_model

__all__ = [
    "MIN_REGION_STARS", "MIN_SHAPE_STARS", "TooFewStars", "NOISE_GRID", "FLOOR_GRID",
    "max_likelihood", "fit_calibration", "dev_halves", "held_out_coverage", "calibrate",
    "check_per_stratum", "calibrate_fitted_run"
]

#: A region, and a region's S/N tercile, needs this many stars for values of its own.
MIN_REGION_STARS = 30
#: The training split gives the calibration's shape when it has this many stars with each label.
MIN_SHAPE_STARS = 50


class TooFewStars(ApnetError):
    """The dev split cannot support a calibration."""



#: The grids of the maximum-likelihood fit: noise factors, and floors relative to the residuals'
#: standard deviation.
NOISE_GRID = np.exp(np.linspace(-2.0, 3.0, 101))
FLOOR_GRID = np.exp(np.linspace(-6.0, 1.0, 141))


def max_likelihood(res: np.ndarray, sig: np.ndarray) -> tuple[float, float]:
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
        a, b = max_likelihood(res[sel], sig[sel])
        base = np.sqrt((a * sig[sel]) ** 2 + b**2)
        scale = quantile_ratio(res[sel], base)
        noise[key], floor[key], stars[key] = a * scale, b * scale, int(sel.sum())
        for j in range(3):
            cell = tercile[sel] == j
            if cell.sum() >= MIN_REGION_STARS:
                factor[key, j] = quantile_ratio(res[sel][cell], scale * base[cell])
    return noise, floor, factor, stars


def fit_calibration(pred: np.ndarray, sigma: np.ndarray, labels: np.ndarray,
                    mc: int, seed: int, snr=None, shape=None, snr_edges=None,
                    subset: dict | None = None) -> Calibration:
    """Fit a Calibration (module doc): its level on the dev stars, its shape on ``shape``, and
    its coverage on dev stars it was not fitted on (``held_out_coverage``).

    Args:
        pred, sigma, labels: the dev stars' predictions, raw Monte Carlo sigmas and labels,
            (N, 3) each; snr: their S/N, (N,) (None: unknown).
        shape: (pred, sigma, labels, snr) of the training stars, (M, 3) x 3 and (M,); None, or
            fewer than MIN_SHAPE_STARS stars with some label: the dev stars give the shape too.
        snr_edges: the S/N tercile edges (2,) of the training split, when ``shape`` is a subset
            of it drawn with its own mix of S/N (``subset.Subset``); None: from the shape stars.
        subset: how the stars were drawn (``Subset.record``), kept in the calibration.
        seed: the Monte Carlo's seed, kept in the calibration; it also splits dev in halves.
    """
    snr = np.full(len(pred), np.nan) if snr is None else np.asarray(snr, float)
    dev = tuple(np.asarray(x, float) for x in (pred, sigma, labels)) + (snr,)
    for t in range(3):
        n = _usable(pred, sigma, labels, t).sum()
        if n < 5:
            raise TooFewStars(f"too few labelled dev stars to calibrate ({int(n)} with "
                              f"{TARGETS[t]}; a calibration needs 5 with each label)")
    use_train = shape is not None and all(
        _usable(shape[0], shape[1], shape[2], t).sum() >= MIN_SHAPE_STARS for t in range(3))
    edges = snr_edges if use_train else None
    cal = _shape_fit(shape if use_train else dev, edges, "train" if use_train else "dev")
    cal = dataclasses.replace(cal, mc=int(mc), seed=int(seed), dev_stars=int(len(pred)),
                              coverage_dev_raw=finite_or_none(coverage(*dev[:3])),
                              subset=subset)
    cal = _with_level(cal, dev)
    cal.coverage_dev_calibrated = finite_or_none(coverage(dev[0], cal.sigma(
        dev[0], dev[1], dev[3]), dev[2]))
    cal.coverage_dev_held_out = finite_or_none(held_out_coverage(
        dev, seed, cal if use_train else None))
    return cal


def dev_halves(labels: np.ndarray, seed: int) -> np.ndarray:
    """Which half (0 or 1) of dev each star falls in, (N, 3) -> (N,): a seeded random split that
    puts half of each Kiel region of the labels (and of the stars without one) in each."""
    labels = np.asarray(labels, float)
    region = kiel_region(labels[:, 0], labels[:, 1])
    order = np.lexsort((np.random.default_rng(seed).random(len(labels)), region))
    half = np.empty(len(labels), int)
    half[order] = np.arange(len(labels)) % 2
    return half


def held_out_coverage(dev: tuple, seed: int, shape: Calibration | None) -> np.ndarray:
    """The 1-sigma coverage, per parameter (3,), of dev stars under a calibration not fitted on
    them: dev is split in halves (``dev_halves``), each half is calibrated on the other (its
    level; its shape too when ``shape``, the calibration fitted on the training stars, is None)
    and the coverage is pooled over both halves. NaN for a parameter whose half has fewer than 5
    usable stars. ``dev``: (pred, sigma, labels (N, 3), snr (N,)).

    On the stars that set the level, the coverage is 0.683 by construction; this is what a
    calibration gives on stars it has not seen.
    """
    pred, sigma, labels, snr = dev
    half = dev_halves(labels, seed)
    covered, counted = np.zeros(3), np.zeros(3)
    for h in (0, 1):
        fit, test = half == h, half != h
        part = tuple(x[fit] for x in dev)
        try:
            base = shape or _shape_fit(part, None, "dev")
        except TooFewStars:
            return np.full(3, np.nan)
        cal = _with_level(base, part)
        wide = cal.sigma(pred[test], sigma[test], snr[test])
        for t in range(3):
            ok = usable(pred[test], wide, labels[test], t)
            if not np.isfinite(cal.noise["all"][t]):  # too few stars in this half to fit on
                counted[t] = np.nan
            covered[t] += np.sum(np.abs(pred[test][ok, t] - labels[test][ok, t]) < wide[ok, t])
            counted[t] += ok.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counted > 0, covered / counted, np.nan)


def _shape_fit(stars: tuple, snr_edges, split: str) -> Calibration:
    """Steps 1 and 2 of the module doc on ``stars`` (pred, sigma, labels (M, 3), snr (M,)):
    a calibration of level 1, fitted on ``split``. Tercile edges: ``snr_edges``, else from the
    stars' S/N. TooFewStars when a parameter has no usable star."""
    sp, ss, sl = (np.asarray(x, float) for x in stars[:3])
    sn = np.full(len(sp), np.nan) if stars[3] is None else np.asarray(stars[3], float)
    edges = np.asarray(snr_edges, float) if snr_edges is not None else tercile_edges(sn)
    region = kiel_region(sp[:, 0], sp[:, 1])
    region = np.where(region < 0, len(REGIONS), region)  # no region: only in ``all``
    tercile = snr_bin(sn, edges) if np.isfinite(edges).all() else np.full(len(sn), -1)
    noise, floor, factor = (np.zeros((len(KEYS), 3)), np.zeros((len(KEYS), 3)),
                            np.ones((len(KEYS), 3, 3)))
    stars_per_key = np.zeros(len(KEYS), int)
    for t in range(3):
        ok = _usable(sp, ss, sl, t)
        if not ok.any():
            raise TooFewStars(f"no usable star with {TARGETS[t]} to fit the shape on")
        noise[:, t], floor[:, t], factor[:, t], n = _shape(
            sp[ok, t] - sl[ok, t], ss[ok, t], region[ok], tercile[ok])
        stars_per_key = np.maximum(stars_per_key, n)
    return Calibration(noise=_by_key(noise), floor=_by_key(floor), snr_factor=_by_key(factor),
                       snr_edges=finite_or_none(edges),
                       stars=dict(zip(KEYS, map(int, stars_per_key))), shape_split=split,
                       mc=2, seed=0, dev_stars=0, coverage_dev_raw=[], coverage_dev_calibrated=[])


def _with_level(cal: Calibration, dev: tuple) -> Calibration:
    """``cal`` with step 3 of the module doc: noise and floor times one factor per parameter,
    the 68.3% quantile of |prediction - label| / sigma over ``dev`` (pred, sigma, labels (N, 3),
    snr (N,)); NaN for a parameter with fewer than 5 usable stars."""
    pred, sigma, labels, snr = dev
    level = fit_scale(pred, cal.sigma(pred, sigma, snr), labels)
    return dataclasses.replace(
        cal, noise={k: [v * f for v, f in zip(cal.noise[k], level)] for k in KEYS},
        floor={k: [v * f for v, f in zip(cal.floor[k], level)] for k in KEYS})


def _usable(pred, sigma, labels, t: int) -> np.ndarray:
    """``calibration.usable`` with a finite raw sigma too (the fit's likelihood needs it)."""
    return usable(pred, sigma, labels, t) & np.isfinite(np.asarray(sigma, float)[:, t])


def _by_key(values: np.ndarray) -> dict:
    """{key: values[i].tolist()} for the rows of a (len(KEYS), ...) array."""
    return {k: np.asarray(v, float).tolist() for k, v in zip(KEYS, values)}


@locks_output("model_path")
def calibrate(model_path: str, records_dir: str, mc: int = CALIBRATION_MC_DRAWS,
              seed: int = 0, on_progress=None,
              per_stratum: int = CALIBRATION_STARS_PER_STRATUM,
              novelty_source: str = CALIBRATION_STARS) -> Calibration:
    """Fit a calibration on ``records_dir`` (its shape on the train split, its level on dev; see
    the module doc) and save ``calibration.json`` in the run folder ``model_path``, with the
    novelty reference of the train split's stars (``reference.write_novelty``, as
    ``novelty_source``).

    The Monte Carlo runs over a seeded, stratified subset of the train and dev stars
    (``subset.choose_subset``: at most ``per_stratum`` training stars per stratum, 0 for every
    star), so its cost does not grow with the survey; ``on_progress(done, total)`` follows it in
    stars.

    Returns:
        The ``Calibration`` written.
    """
    require_at_least(mc, 2, "--mc")  # a spread needs two draws
    check_seed(seed)
    check_per_stratum(per_stratum)
    if not os.path.isfile(os.path.join(model_path, "best.keras")):
        # an export carries its run's calibration; calibrating it here would change nothing
        raise ApnetError(f"{model_path}: calibrate needs a run folder with best.keras (it writes "
                         "calibration.json there); to recalibrate an exported model, calibrate "
                         "its run and export again")
    if count_records(records_dir, ["dev"]) == 0:
        raise ApnetError(f"{records_dir}: no dev records to calibrate on")
    subset = choose_subset(records_dir, seed, per_stratum)
    dev, train = _monte_carlo(model_path, records_dir, mc, seed, subset.rows,
                              on_progress)
    cal = fit_calibration(*dev[:3], mc, seed, snr=dev[3], shape=train,
                          snr_edges=subset.snr_edges, subset=subset.record)
    try:  # what infer will refuse is never written (e.g. labels the network matches exactly)
        Calibration.from_dict(cal.to_dict())
    except (ValueError, TypeError) as exc:
        raise ApnetError(f"{records_dir}: cannot calibrate on these stars: {exc}") from None
    cal.save(os.path.join(model_path, CALIBRATION))
    write_novelty(model_path, records_dir, novelty_source, seed)
    return cal


def check_per_stratum(per_stratum, flag: str = "--stars-per-stratum") -> int:
    """``per_stratum`` when it is 0 (every star) or a whole number of at least MIN_REGION_STARS
    (fewer could give no region values of its own); else ApnetError naming the flag."""
    try:
        whole = operator.index(per_stratum)
    except TypeError:
        whole = None
    if whole is None or not (whole == ALL_STARS or whole >= MIN_REGION_STARS):
        raise ApnetError(f"{flag}: must be {ALL_STARS} (every star) or at least "
                         f"{MIN_REGION_STARS} (the stars a region needs for values of its own), "
                         f"got {per_stratum!r}")
    return whole


def _monte_carlo(model_path: str, records_dir: str, mc: int, seed: int,
                 rows=None, on_progress=None):
    """The raw Monte Carlo over the dev and the train stars (one pass; only the records of
    ``rows``, shard path -> positions, when given): for each, pred, sigma, labels (N, 3) and
    snr (N,)."""
    loaded = load_model(model_path, calibration=False)
    loaded.refuse_without_photometry("calibrate", records_dir)
    cat = predict_catalog(loaded, [records_dir], mc=mc, calibrated=False, seed=seed,
                          split_filter=("train", "dev"), on_progress=on_progress,
                          rows=rows).catalog
    labels, pred, sigma = catalog_arrays(cat)
    snr, split = np.asarray(cat["SNR"], float), np.asarray(cat["SPLIT"]).astype(str)
    return tuple((pred[split == s], sigma[split == s], labels[split == s], snr[split == s])
                 for s in ("dev", "train"))


def calibrate_fitted_run(run_dir: str, records_dir: str, seed: int = 0,
                         on_progress=None) -> Calibration | None:
    """The last step of ``fit``: calibrate the run (``calibrate``), so that ``infer`` gives
    calibrated sigmas by default. Returns None, and leaves no calibration.json, when the dev
    split has fewer labelled stars than a calibration needs (the novelty reference of the
    training stars is written all the same)."""
    try:
        return calibrate(run_dir, records_dir, seed=seed, on_progress=on_progress,
                         novelty_source=TRAINING_STARS)
    except TooFewStars:
        write_novelty(run_dir, records_dir, TRAINING_STARS, seed)
        return None
