"""A record folder's ``manifest.json``: built from the shards' sidecars, read back and checked.

The manifest lists the shards of each split (with their sizes, so a truncated shard is caught),
the counts per split x category and the train-split target statistics (paper Table 1); for
records made with ``--photometry``, ``photometry`` says where the values came from and counts the
missing ones. Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Collection, Sequence

import numpy as np

from apnet_tf.constants import CATEGORIES, CDELT1, CRVAL1, N_PIXELS, TARGETS
from apnet_tf.errors import ApnetError
from apnet_tf.io.files import content_hash, read_json
from apnet_tf.io.folders import marker
from apnet_tf.io.photometry import PHOT_BANDS, PHOT_COLUMNS

__all__ = [
    "SCHEMA_VERSION", "UNLABELED", "MANIFEST", "build_manifest", "photometry_summary",
    "records_hold_photometry", "read_manifest", "shard_paths", "checked_shard", "count_records"
]

#: The schema version and the split name of unlabelled spectra, as the records hold them.
SCHEMA_VERSION = 1
UNLABELED = "unlabeled"
MANIFEST = "manifest.json"


def build_manifest(sidecars: dict[str, dict], sources: list[str], compress: bool,
                   mask_bits: Sequence[int], report_lines: list[str],
                   photometry: str | None = None) -> dict:
    """The manifest: counts per split x category and train-split target statistics (Table 1);
    with ``photometry`` (the table's path) its ``photometry_summary``."""
    counts: dict[str, dict[str, int]] = {}
    train_labels = []
    shard_files: dict[str, list[str]] = {}
    for name, side in sorted(sidecars.items()):
        split = name.split("-")[0]
        shard_files.setdefault(split, []).append(name)
        for rec in side["records"]:
            cat = rec["category"] or UNLABELED
            counts.setdefault(split, {}).setdefault(cat, 0)
            counts[split][cat] += 1
            if split == "train":
                train_labels.append([np.nan if v is None else v for v in rec["labels"]])
    arr = np.array(train_labels, dtype=np.float64).reshape(-1, 3)
    n = np.isfinite(arr).sum(axis=0)
    with np.errstate(invalid="ignore"):
        mean = [float(np.nanmean(arr[:, k])) if n[k] else None for k in range(3)]
        std = [float(np.nanstd(arr[:, k])) if n[k] > 1 else None for k in range(3)]
        lo = [float(np.nanmin(arr[:, k])) if n[k] else None for k in range(3)]
        hi = [float(np.nanmax(arr[:, k])) if n[k] else None for k in range(3)]
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "grid": {"crval1": CRVAL1, "cdelt1": CDELT1, "n_pixels": N_PIXELS,
                 "scale": "log10(lambda/Angstrom)"},
        "targets": list(TARGETS),
        "categories": list(CATEGORIES),
        "counts": counts,
        "target_stats": {"split": "train", "mean": mean, "std": std, "min": lo, "max": hi,
                         "n": [int(v) for v in n]},
        "shards": shard_files,
        "shard_bytes": {name: side.get("bytes") for name, side in sorted(sidecars.items())},
        "shard_sha256": {name: side.get("sha256") for name, side in sorted(sidecars.items())},
        "compression": "GZIP" if compress else "",
        "mask_bits": [int(b) for b in mask_bits],
        "source_files": sources,
        "report": report_lines,
    }
    if photometry is not None:
        manifest["photometry"] = photometry_summary(sidecars, photometry)
    return manifest


def photometry_summary(sidecars: dict[str, dict], source: str) -> dict:
    """What the records hold of photometry: the table, its columns, the records, those whose
    star it lacks (stored all NaN: ``absent``) and, per band, the records whose value is
    missing (>= 98 or not finite, absent stars included: ``missing``)."""
    recs = [rec for side in sidecars.values() for rec in side["records"]]
    bits = np.array([rec.get("phot_missing", 0) for rec in recs], dtype=np.int64)
    return {"source": source, "columns": list(PHOT_COLUMNS), "records": len(recs),
            "absent": sum(bool(rec.get("phot_absent")) for rec in recs),
            "missing": {band: int(((bits >> i) & 1).sum()) for i, band in enumerate(PHOT_BANDS)}}


def records_hold_photometry(manifest: dict) -> bool:
    """True when the records were made with ``make-records --photometry``."""
    return isinstance(manifest.get("photometry"), dict)



def read_manifest(records_dir: str) -> dict:
    """Load ``manifest.json`` of a record folder and check that it holds what readers use.

    Raises:
        ApnetError: the folder has no manifest (never made, or make-records did not finish), or
            the manifest is unreadable, of another schema, or lacks counts, shards or the
            train-split target statistics.
    """
    path = os.path.join(records_dir, MANIFEST)
    if not os.path.isdir(records_dir):
        raise ApnetError(f"{path}: no such record folder; run make-records first")
    if not os.path.exists(path):
        if (marker(records_dir) or {}).get("kind") == "records":
            raise ApnetError(f"{path}: missing: make-records did not finish writing this "
                             "folder; re-run it to complete the folder")
        raise ApnetError(f"{path}: missing; run make-records first")
    manifest = read_json(path)
    if not isinstance(manifest, dict):
        raise ApnetError(f"{path}: not a readable JSON manifest; re-run make-records")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ApnetError(f"{path}: schema version {manifest.get('schema_version')}, "
                         f"this package reads version {SCHEMA_VERSION}")
    stats = manifest.get("target_stats")
    if not isinstance(stats, dict) or not all(
            isinstance(stats.get(k), list) and len(stats[k]) == 3 for k in ("mean", "std")):
        raise ApnetError(f"{path}: no target statistics (target_stats mean and std, 3 values "
                         "each); re-run make-records")
    for key in ("counts", "shards"):
        if not isinstance(manifest.get(key), dict):
            raise ApnetError(f"{path}: no '{key}'; re-run make-records")
    return manifest


def shard_paths(records_dir: str, splits: Sequence[str] | None = None,
                names: Collection[str] | None = None) -> list[str]:
    """Shard files of the given splits (all if None), as listed by the manifest, each checked
    (``checked_shard``); with ``names`` (shard file names), only those, so that only they are
    read to be checked.
    """
    manifest = read_manifest(records_dir)
    return [checked_shard(records_dir, manifest, name)
            for split, shards in sorted(manifest["shards"].items())
            if splits is None or split in splits
            for name in shards if names is None or name in names]


def checked_shard(records_dir: str, manifest: dict, name: str) -> str:
    """The path of shard ``name`` of ``records_dir`` (whose ``manifest`` is given), once it is
    checked.

    Raises:
        ApnetError: the shard is missing, not the size make-records wrote (truncated), or not
            the content (its sha256 checksum differs: flipped bytes).
    """
    sizes = manifest.get("shard_bytes") or {}
    sums = manifest.get("shard_sha256") or {}
    path = os.path.join(records_dir, name)
    if not os.path.exists(path):
        raise ApnetError(f"{path}: missing shard listed in the manifest; re-run make-records")
    if sizes.get(name) is not None and os.path.getsize(path) != sizes[name]:
        raise ApnetError(f"{path}: {os.path.getsize(path)} bytes, make-records wrote "
                         f"{sizes[name]}: truncated or changed; re-run make-records")
    if sums.get(name) is not None and _checksum(path) != sums[name]:
        raise ApnetError(f"{path}: checksum differs from the one make-records wrote: the shard "
                         "is damaged; re-run make-records")
    return path


#: Checksums already computed in this process, by (path, size, modification time).
_CHECKED: dict[tuple[str, int, int], str] = {}


def _checksum(path: str) -> str:
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _CHECKED:
        _CHECKED[key] = content_hash(path)
    return _CHECKED[key]


def count_records(records_dir: str, splits: Sequence[str] | None = None,
                  categories: Sequence[str] | None = None) -> int:
    """Number of records in the given splits and categories, from the manifest."""
    counts = read_manifest(records_dir)["counts"]
    return sum(n for split, cats in counts.items() if splits is None or split in splits
               for cat, n in cats.items() if categories is None or cat in categories)
