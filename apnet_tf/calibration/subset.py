"""The stars a calibration is fitted on: a seeded, stratified subset of the train and dev splits
whose size does not grow with the survey.

A calibration is a few numbers per Kiel region and S/N tercile (``model.calibration``): a few
hundred residuals fix each of them, while the Monte Carlo that gives the residuals costs R network
passes per star. So ``calibrate`` runs it over a subset:

* **train** (the shape): at most ``per_stratum`` stars of each stratum (default
  ``constants.CALIBRATION_STARS_PER_STRATUM``), drawn at random. A stratum is a Kiel region of
  the star's *labels* (the predictions are not known before the Monte Carlo;
  ``calibration.kiel_region``, with stars lacking a Teff or log g label as a stratum of their
  own) times an S/N tercile (edges from the training stars read; stars without S/N as one more).
  Equal numbers per stratum give each region and tercile of the shape enough stars for values of
  its own (``fit.MIN_REGION_STARS``), which the rare kinds of star (YSOs, M dwarfs) would not get
  from a uniform draw of the same size.
* **dev** (the level): at most ``DEV_STRATA * per_stratum`` stars, each stratum in proportion to
  its share of the dev stars read (at least one star of each), so that the level is that of the
  survey's own mix of stars.

The record folder's shards hold their split's stars in a fixed pseudo-random order
(``data.records``), so a shard is a random sample of its split. The shards of a split are read
in a seeded order, only as many as the subset needs (train: until every stratum with a region
and an S/N has ``per_stratum`` stars, or ``SCAN_STRATA * per_stratum`` stars were read; dev:
until ``DEV_STRATA * per_stratum`` were read), so reading costs no more on a large survey than
on a small one. The same seed and records give the same subset; ``calibration.json`` records
both (``subset``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from apnet_tf.constants import CALIBRATION_STARS_PER_STRATUM
from apnet_tf.data.manifest import checked_shard, read_manifest
from apnet_tf.data.readers import read_record_labels
from apnet_tf.model.calibration import kiel_region, snr_bin

__all__ = [
    "DEV_STRATA", "SCAN_STRATA", "ALL_STARS", "strata", "tercile_edges",
    "take_per_stratum", "take_proportional", "Subset", "choose_subset",
]

#: Dev stars in the subset: at most this many strata's worth (DEV_STRATA * per_stratum).
DEV_STRATA = 5
#: Training shards are read until every stratum with a region and an S/N has ``per_stratum``
#: stars, or SCAN_STRATA * per_stratum stars were read: a stratum rarer than 1 / SCAN_STRATA of
#: the split keeps what those shards hold (as do the stars without a region or an S/N).
SCAN_STRATA = 100
#: ``per_stratum`` that takes every labelled star (the Monte Carlo then grows with the survey).
ALL_STARS = 0
#: Strata: (region + 1) * _TERCILES + (tercile + 1), region -1 (no Teff or log g label) to 3,
#: tercile -1 (no S/N) to 2.
_TERCILES = 4
#: Independent random streams under one seed: the shard order of each split, and the picks.
_SPLIT_STREAM = {"train": 0, "dev": 1, "pick": 2}


def tercile_edges(snr) -> np.ndarray:
    """The two inner edges of the S/N terciles of the stars with S/N (> 0), (2,); NaN for fewer
    than three such stars."""
    snr = np.asarray(snr, float)
    known = snr[np.isfinite(snr) & (snr > 0)]
    return np.quantile(known, [1 / 3, 2 / 3]) if known.size >= 3 else np.full(2, np.nan)


def strata(labels: np.ndarray, snr: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The stratum of each star, (N,) int in [0, 5 * _TERCILES): its labels' Kiel region
    (labels (N, 3), teff and logg; -1 without either) times its S/N tercile (snr (N,) and the
    inner edges (2,); -1 without S/N or edges)."""
    labels = np.asarray(labels, float).reshape(-1, 3)
    region = kiel_region(labels[:, 0], labels[:, 1])
    edges = np.asarray(edges, float)
    tercile = snr_bin(snr, edges) if np.isfinite(edges).all() else np.full(len(labels), -1)
    return (region + 1) * _TERCILES + (tercile + 1)


def take_per_stratum(stratum: np.ndarray, per_stratum: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``per_stratum`` stars of each stratum, drawn at random
    (every star for ALL_STARS)."""
    stratum = np.asarray(stratum)
    if per_stratum == ALL_STARS:
        return np.arange(len(stratum))
    picked = [rng.permutation(np.flatnonzero(stratum == s))[:per_stratum]
              for s in np.unique(stratum)]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, int)


def take_proportional(stratum: np.ndarray, total: int | None,
                      rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``total`` stars (every star when None or when there are no more), each
    stratum in proportion to its share, and at least one of each (while ``total`` allows)."""
    stratum = np.asarray(stratum)
    if total is None or total >= len(stratum):
        return np.arange(len(stratum))
    kinds, counts = np.unique(stratum, return_counts=True)
    ideal = counts * total / counts.sum()
    if total < len(kinds):  # too few for one of each: one of each of the largest strata
        n = np.zeros(len(kinds), int)
        n[np.argsort(-counts, kind="stable")[:total]] = 1
    else:
        n = np.minimum(counts, np.maximum(1, np.floor(ideal))).astype(int)
    while n.sum() != total:  # off by at most one star per stratum
        if n.sum() > total:  # the one-of-each took more than the shares: from the most over
            n[np.argmax(np.where(n > 1, n - ideal, -np.inf))] -= 1
        else:  # the largest shortfalls first
            n[np.argmax(np.where(n < counts, ideal - n, -np.inf))] += 1
    picked = [rng.permutation(np.flatnonzero(stratum == s))[:k] for s, k in zip(kinds, n)]
    return np.sort(np.concatenate(picked))


@dataclasses.dataclass
class Subset:
    """The chosen stars: ``rows`` maps each shard to read (its path) to the positions of its
    chosen records; ``snr_edges`` (2,) are the S/N tercile edges of the training stars read
    (NaN without S/N); ``record`` says how it was drawn and how many stars it holds, for
    calibration.json."""

    rows: dict[str, list[int]]
    snr_edges: np.ndarray
    record: dict[str, int]


@dataclasses.dataclass
class _Read:
    """The labelled stars of the shards of one split read so far."""

    labels: np.ndarray  # (N, 3)
    snr: np.ndarray  # (N,)
    shard: np.ndarray  # (N,) the path of each star's shard
    position: np.ndarray  # (N,) its record's position in the shard


def choose_subset(records_dir: str, seed: int,
                  per_stratum: int = CALIBRATION_STARS_PER_STRATUM) -> Subset:
    """The seeded, stratified subset of the train and dev stars of ``records_dir`` (module
    doc): at most ``per_stratum`` training stars per stratum and ``DEV_STRATA * per_stratum``
    dev stars (every labelled star for ALL_STARS)."""
    dev_cap = None if per_stratum == ALL_STARS else DEV_STRATA * per_stratum
    train = _read_split(records_dir, "train", seed, lambda got: _train_done(got, per_stratum))
    edges = tercile_edges(train.snr)
    dev = _read_split(records_dir, "dev", seed,
                      lambda got: dev_cap is not None and len(got.snr) >= dev_cap)
    rng = np.random.default_rng([seed, _SPLIT_STREAM["pick"]])
    picks = (take_per_stratum(strata(train.labels, train.snr, edges), per_stratum, rng),
             take_proportional(strata(dev.labels, dev.snr, edges), dev_cap, rng))
    rows: dict[str, list[int]] = {}
    for got, idx in zip((train, dev), picks):
        for shard, pos in zip(got.shard[idx], got.position[idx]):
            rows.setdefault(str(shard), []).append(int(pos))
    record = {"seed": int(seed), "stars_per_stratum": int(per_stratum),
              "train_stars": len(picks[0]), "train_stars_read": len(train.snr),
              "dev_stars": len(picks[1]), "dev_stars_read": len(dev.snr)}
    return Subset({k: sorted(v) for k, v in rows.items()}, edges, record)


def _train_done(got: _Read, per_stratum: int) -> bool:
    """Whether the training stars read are enough: every stratum with a region and an S/N has
    ``per_stratum`` stars, or ``SCAN_STRATA * per_stratum`` stars were read."""
    if per_stratum == ALL_STARS:
        return False
    if len(got.snr) >= SCAN_STRATA * per_stratum:
        return True
    stratum = strata(got.labels, got.snr, tercile_edges(got.snr))
    kinds, counts = np.unique(stratum, return_counts=True)
    # region -1 (< _TERCILES) and tercile -1 (a multiple of _TERCILES) need not fill
    full = (kinds < _TERCILES) | (kinds % _TERCILES == 0) | (counts >= per_stratum)
    return bool(len(kinds)) and bool(full.all())


def _read_split(records_dir: str, split: str, seed: int,
                done: Callable[[_Read], bool]) -> _Read:
    """The labelled stars of the shards of ``split``, read in a seeded order until
    ``done(stars read so far)``; each shard is checked (``manifest.checked_shard``) first."""
    manifest = read_manifest(records_dir)
    names = sorted(manifest["shards"].get(split, []))
    order = np.random.default_rng([seed, _SPLIT_STREAM[split]]).permutation(len(names))
    parts: list[_Read] = []
    got = _Read(np.zeros((0, 3)), np.zeros(0), np.zeros(0, object), np.zeros(0, int))
    for i in order:
        path = checked_shard(records_dir, manifest, names[i])
        shard = read_record_labels(path, manifest.get("compression", ""))
        pos = np.flatnonzero(shard["labelled"])
        parts.append(_Read(shard["labels"][pos], shard["snr"][pos],
                           np.full(len(pos), path, object), pos))
        got = _Read(*(np.concatenate([getattr(p, f.name) for p in parts])
                      for f in dataclasses.fields(_Read)))
        if done(got):
            break
    return got
