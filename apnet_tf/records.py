"""Sharded TFRecords: the schema, the resumable writer, the manifest and the ``tf.data`` reader.

Each record is one ``tf.train.Example`` with the features of ``FEATURE_SPEC``. Flux and error are
stored as the little-endian float32 bytes that astropy read, so they decode bit for bit.

Shards are named ``{split}-{i:05d}-of-{n:05d}.tfrecord`` (``unlabeled-...`` for spectra without a
label row). Each is written under a temporary name with a JSON sidecar and renamed when complete, so
a re-run skips complete shards and an interrupted run never leaves a shard that looks whole.
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import hashlib
import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from .constants import CATEGORIES, CDELT1, CRVAL1, LABEL_COLUMNS, N_PIXELS, SPLITS, TARGETS
from .errors import ApnetError, first_line
from .files import atomic_path, read_json, write_json
from .folders import claim, remove_made
from .labels import load_labels, match_report
from .reading import read_many
from .spectra import DEFAULT_MASK_BITS, Spectrum, expand_paths, read_apogee_id

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
UNLABELED = "unlabeled"
#: Records per shard when ``shards`` is not given.
DEFAULT_RECORDS_PER_SHARD = 1024

#: The features with one value per pixel, (B, 8575) each once parsed.
PIXEL_FEATURES = ("flux", "err", "bad")
FEATURE_SPEC = {
    "apogee_id": tf.io.FixedLenFeature([], tf.string),
    "flux": tf.io.FixedLenFeature([], tf.string),  # 8575 float32, little-endian
    "err": tf.io.FixedLenFeature([], tf.string),  # 8575 float32, little-endian
    "bad": tf.io.FixedLenFeature([], tf.string),  # 8575 uint8, 1 = bad pixel
    "labels": tf.io.FixedLenFeature([3], tf.float32),  # teff, logg, fe_h; NaN where missing
    "label_mask": tf.io.FixedLenFeature([3], tf.int64),  # 1 where the label is present
    "category": tf.io.FixedLenFeature([], tf.string),
    "split": tf.io.FixedLenFeature([], tf.string),
    "snr": tf.io.FixedLenFeature([], tf.float32),
    "ra": tf.io.FixedLenFeature([], tf.float32),
    "dec": tf.io.FixedLenFeature([], tf.float32),
}


def _bytes(v: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _floats(v) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(np.atleast_1d(v))))


def _ints(v) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(np.atleast_1d(v))))


def encode_example(spec: Spectrum, labels: np.ndarray, category: str, split: str) -> bytes:
    """Serialise one spectrum and its labels (shape (3,), NaN where missing)."""
    labels = np.asarray(labels, dtype=np.float32)
    mask = np.isfinite(labels)
    feats = {
        "apogee_id": _bytes(spec.apogee_id.encode()),
        "flux": _bytes(spec.flux.astype("<f4").tobytes()),
        "err": _bytes(spec.err.astype("<f4").tobytes()),
        "bad": _bytes(spec.bad.astype(np.uint8).tobytes()),
        "labels": _floats(labels),
        "label_mask": _ints(mask.astype(np.int64)),
        "category": _bytes(category.encode()),
        "split": _bytes(split.encode()),
        "snr": _floats(np.float32(spec.snr)),
        "ra": _floats(np.float32(spec.ra)),
        "dec": _floats(np.float32(spec.dec)),
    }
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def parse_examples(serialized: tf.Tensor,
                   pixel_features: Sequence[str] = PIXEL_FEATURES) -> dict[str, tf.Tensor]:
    """Parse a batch of serialised examples, shape (B,), into a dict of tensors.

    flux, err: float32 (B, 8575); bad: bool (B, 8575); labels: float32 (B, 3) with NaN where the
    label mask is 0; label_mask: bool (B, 3); apogee_id, category, split: string (B,);
    snr, ra, dec: float32 (B,). Of the per-pixel features only ``pixel_features`` are decoded:
    they are 97% of the bytes, and skipping err and bad makes a flux-only read 1.5x faster.
    """
    spec = {k: v for k, v in FEATURE_SPEC.items()
            if k not in PIXEL_FEATURES or k in pixel_features}
    ex = tf.io.parse_example(serialized, spec)
    out = dict(ex)
    for key in ("flux", "err"):
        if key in ex:
            out[key] = tf.reshape(tf.io.decode_raw(ex[key], tf.float32, little_endian=True),
                                  [-1, N_PIXELS])
    if "bad" in ex:
        out["bad"] = tf.reshape(tf.cast(tf.io.decode_raw(ex["bad"], tf.uint8), tf.bool),
                                [-1, N_PIXELS])
    mask = tf.cast(ex["label_mask"], tf.bool)
    out["label_mask"] = mask
    out["labels"] = tf.where(mask, ex["labels"], tf.constant(np.nan, tf.float32))
    return out


# --------------------------------------------------------------------------- writing


@dataclasses.dataclass
class _Item:
    path: str
    apogee_id: str
    split: str
    category: str
    labels: np.ndarray  # (3,)


def _shard_name(split: str, i: int, n: int) -> str:
    return f"{split}-{i:05d}-of-{n:05d}.tfrecord"


@dataclasses.dataclass
class RecordsResult:
    """What ``make_records`` did."""

    out_dir: str
    manifest: dict
    written_shards: list[str]
    skipped_shards: list[str]
    failures: list[str]  # one line per unreadable file
    report_lines: list[str]  # label/spectrum cross-match findings


def make_records(spectra: Sequence[str], out_dir: str, labels: str | None = None,
                 shards: int | None = None, compress: bool = False,
                 mask_bits: Sequence[int] = DEFAULT_MASK_BITS,
                 on_progress: Callable[[int, int], None] | None = None) -> RecordsResult:
    """Write spectra and labels as sharded TFRecords plus ``manifest.json``.

    Args:
        spectra: files, folders or glob patterns of apStar files.
        out_dir: the output folder; created if needed.
        labels: an optional label table (CSV or FITS); without it every record is unlabelled.
        shards: shards per split; default one per ``DEFAULT_RECORDS_PER_SHARD`` records.
        compress: write GZIP-compressed records. on_progress: ``on_progress(done, total)``.

    Unreadable files are listed in ``failures`` and skipped; the others go through. Complete
    shards from an earlier run with the same inputs are kept, not rewritten. ``out_dir`` must be
    new, empty or a record folder of this package (``folders.claim``); a re-run removes the old
    manifest first, so an interrupted run leaves a folder that readers refuse.

    Raises:
        ApnetError: a bad argument or label table (before anything is written), a folder that
            is not a record folder, or a shard that cannot be written.
    """
    if shards is not None and shards < 1:
        raise ApnetError(f"--shards: must be at least 1, got {shards}")
    mask_bits = check_mask_bits(mask_bits)
    paths = expand_paths(spectra)
    table = load_labels(labels) if labels else None
    items, failures = _items(paths, table)
    report = match_report(table, [it.apogee_id for it in items])

    claim(out_dir, "records", legacy=lambda d: read_json(os.path.join(d, MANIFEST)) is not None)
    # The old manifest goes first: until the new one is written the folder reads as incomplete.
    remove_made(out_dir, [MANIFEST])
    plan = _plan(items, shards)
    options = tf.io.TFRecordOptions(compression_type="GZIP" if compress else "")
    written, skipped, sidecars, done, total = [], [], {}, 0, len(items)

    def tick(n: int = 1):
        nonlocal done
        done += n
        if on_progress:
            on_progress(done, total)

    for name, members in plan:
        fingerprint = _fingerprint(members, compress)
        final = os.path.join(out_dir, name)
        side = read_json(final + ".json")
        if os.path.exists(final) and side and side.get("fingerprint") == fingerprint:
            skipped.append(name)
            tick(len(members))
        else:
            side = _write_shard(final, members, fingerprint, options, mask_bits, tick)
            written.append(name)
        sidecars[name] = side
        failures.extend(side.get("failures", []))

    _remove_stale_shards(out_dir, {name for name, _ in plan})
    manifest = build_manifest(sidecars, paths, compress, mask_bits, report.lines())
    write_json(os.path.join(out_dir, MANIFEST), manifest, allow_nan=False)
    return RecordsResult(out_dir, manifest, written, skipped, failures, report.lines())


def _remove_stale_shards(out_dir: str, wanted: set[str]) -> None:
    """Shards of an earlier plan (other inputs) are not part of this set: remove those this
    package wrote (they have a sidecar), and nothing else."""
    stale = [os.path.basename(p) for p in glob.glob(os.path.join(out_dir, "*.tfrecord"))
             if os.path.basename(p) not in wanted and os.path.exists(p + ".json")]
    remove_made(out_dir, [n for name in stale for n in (name, name + ".json")])


def _items(paths: list[str], table) -> tuple[list[_Item], list[str]]:
    """One ``_Item`` per readable file (its labels from ``table`` by APOGEE ID, or unlabelled),
    and one failure line per file whose ID cannot be read."""
    by_id = {}
    if table is not None:
        for row in table.drop_duplicates("APOGEE_ID").itertuples(index=False):
            by_id[row.APOGEE_ID] = row
    failures: list[str] = []
    items: list[_Item] = []
    for path in paths:
        try:
            apogee_id = read_apogee_id(path)
        except ApnetError as exc:
            failures.append(str(exc))
            continue
        row = by_id.get(apogee_id)
        if row is None:
            items.append(_Item(path, apogee_id, UNLABELED, "", np.full(3, np.nan, np.float32)))
        else:
            labs = np.array([getattr(row, c) for c in LABEL_COLUMNS], dtype=np.float32)
            items.append(_Item(path, apogee_id, row.SPLIT, row.CATEGORY, labs))
    return items, failures


def _plan(items: list[_Item], shards: int | None) -> list[tuple[str, list[_Item]]]:
    """(shard name, its items) for every shard, split by split, records in hashed order."""
    groups: dict[str, list[_Item]] = {}
    for it in sorted(items, key=_record_order):
        groups.setdefault(it.split, []).append(it)
    plan: list[tuple[str, list[_Item]]] = []
    for split in list(SPLITS) + [UNLABELED]:
        members = groups.get(split, [])
        if not members:
            continue
        n = shards or math.ceil(len(members) / DEFAULT_RECORDS_PER_SHARD)
        n = max(1, min(n, len(members)))
        for i in range(n):
            plan.append((_shard_name(split, i, n), members[i::n]))
    return plan


def _write_shard(final: str, members: list[_Item], fingerprint: str,
                 options: tf.io.TFRecordOptions, mask_bits: Sequence[int],
                 tick: Callable[..., None]) -> dict:
    """Write one shard under a temporary name, with its sidecar; returns the sidecar.

    A failed write (a full disk) removes the temporary file and raises ApnetError naming the
    shard.
    """
    side = {"fingerprint": fingerprint, "records": [], "failures": []}
    try:
        with atomic_path(final) as tmp:
            with tf.io.TFRecordWriter(tmp, options) as writer:
                read = read_many([it.path for it in members], mask_bits)
                for it, (_, spec, error) in zip(members, read):
                    if spec is None:
                        side["failures"].append(error)
                    else:
                        writer.write(encode_example(spec, it.labels, it.category or "", it.split))
                        known = [float(v) if np.isfinite(v) else None for v in it.labels]
                        side["records"].append({"apogee_id": it.apogee_id,
                                                "category": it.category, "labels": known})
                    tick()
            side["bytes"] = os.path.getsize(tmp)
            # the sidecar before the rename: a shard that exists is whole and described
            write_json(final + ".json", side, allow_nan=False)
    except tf.errors.OpError as exc:  # TensorFlow's own I/O errors (ENOSPC: ResourceExhausted)
        raise ApnetError(f"{final}: cannot write the shard ({first_line(exc)})") from None
    return side


def check_mask_bits(bits: Sequence[int]) -> tuple[int, ...]:
    """The PIXMASK bits as a tuple, each 0-15 (PIXMASK is a 16-bit integer).

    Raises:
        ApnetError: a bit outside 0-15.
    """
    bits = tuple(int(b) for b in bits)
    wrong = [b for b in bits if not 0 <= b <= 15]
    if wrong:
        raise ApnetError(f"--mask-bits: {wrong[0]} is not an apStar PIXMASK bit (0-15)")
    return bits


def _record_order(it: _Item) -> tuple[bytes, str]:
    """A fixed pseudo-random order: APOGEE IDs follow the sky, so neighbours share a field and
    a population. Stored in hashed order, the records mix well through a small shuffle buffer."""
    return hashlib.sha256(f"order:{it.apogee_id}".encode()).digest(), it.path


def _fingerprint(members: list[_Item], compress: bool) -> str:
    h = hashlib.sha256(f"v{SCHEMA_VERSION} gz={compress}".encode())
    for it in members:
        st = os.stat(it.path)
        h.update(f"{it.path}|{st.st_size}|{st.st_mtime_ns}|{it.apogee_id}|{it.category}|"
                 f"{it.split}|{it.labels.tobytes().hex()}".encode())
    return h.hexdigest()


def build_manifest(sidecars: dict[str, dict], sources: list[str], compress: bool,
                   mask_bits: Sequence[int], report_lines: list[str]) -> dict:
    """The manifest: counts per split x category and train-split target statistics (Table 1)."""
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
    return {
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
        "compression": "GZIP" if compress else "",
        "mask_bits": [int(b) for b in mask_bits],
        "source_files": sources,
        "report": report_lines,
    }


# --------------------------------------------------------------------------- reading


def read_manifest(records_dir: str) -> dict:
    """Load ``manifest.json`` of a record folder and check that it holds what readers use.

    Raises:
        ApnetError: the folder has no manifest (never made, or make-records did not finish), or
            the manifest is unreadable, of another schema, or lacks counts, shards or the
            train-split target statistics.
    """
    from .folders import marker

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


def shard_paths(records_dir: str, splits: Sequence[str] | None = None) -> list[str]:
    """Shard files of the given splits (all if None), as listed by the manifest.

    Raises:
        ApnetError: a listed shard is missing or not the size make-records wrote (truncated).
    """
    manifest = read_manifest(records_dir)
    sizes = manifest.get("shard_bytes") or {}
    out = []
    for split, names in sorted(manifest["shards"].items()):
        if splits is None or split in splits:
            for name in names:
                path = os.path.join(records_dir, name)
                if not os.path.exists(path):
                    raise ApnetError(f"{path}: missing shard listed in the manifest; re-run "
                                     "make-records")
                if sizes.get(name) is not None and os.path.getsize(path) != sizes[name]:
                    raise ApnetError(f"{path}: {os.path.getsize(path)} bytes, make-records "
                                     f"wrote {sizes[name]}: truncated or changed; re-run "
                                     "make-records")
                out.append(path)
    return out


def count_records(records_dir: str, splits: Sequence[str] | None = None,
                  categories: Sequence[str] | None = None) -> int:
    """Number of records in the given splits and categories, from the manifest."""
    counts = read_manifest(records_dir)["counts"]
    return sum(n for split, cats in counts.items() if splits is None or split in splits
               for cat, n in cats.items() if categories is None or cat in categories)


def _keep(ex: dict[str, tf.Tensor], categories, sample: dict[str, float] | None,
          seed: int, labeled_only: bool) -> tf.Tensor:
    """Bool (B,): which parsed examples pass the category, sample and label filters."""
    keep = tf.ones_like(ex["snr"], dtype=tf.bool)
    if categories is not None:
        keep &= tf.reduce_any(tf.equal(ex["category"][:, None], tf.constant(list(categories))),
                              axis=1)
    if labeled_only:
        keep &= tf.reduce_any(ex["label_mask"], axis=1)
    if sample:
        # A hash of (star, seed): the same seed gives the same stars, a new seed new ones.
        keyed = tf.strings.join([ex["apogee_id"], f"#{int(seed)}"])
        u = tf.cast(tf.strings.to_hash_bucket_fast(keyed, 2**30), tf.float32) / 2.0**30
        for cat, frac in sample.items():
            in_cat = tf.equal(ex["category"], cat)
            keep &= ~in_cat | (u < frac)
    return keep


def make_dataset(records_dir: str, splits: Sequence[str] | None = None,
                 categories: Sequence[str] | None = None,
                 sample: dict[str, float] | None = None, seed: int = 0,
                 batch_size: int = 128, shuffle: bool = False, repeat: bool = False,
                 features: Sequence[str] | None = ("flux",), labeled_only: bool = False,
                 shuffle_buffer: int = 256, drop_remainder: bool = False,
                 shards: Sequence[str] | None = None) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of (features, targets) batches from a record folder.

    Args:
        splits: keep only these splits (train, dev, test, unlabeled); None keeps all.
        categories: keep only these categories; None keeps all.
        sample: {category: fraction} keeps a seeded random fraction of a category, e.g.
            ``{"payne": 0.05}`` for the paper's rolling 5% Payne draw; other categories are whole.
        seed: the seed of the sample and the shuffle.
        shuffle: shuffle the shard order and, through a buffer of ``shuffle_buffer`` records, the
            records. Shards hold their records in a hashed order, so 256 records (20 MB) mix
            well; a buffer of thousands of 78 kB records overflows the CPU caches and halves the
            read rate.
        features: the feature keys to return. One key gives a tensor (B, ...), several a dict,
            None all of ``parse_examples``' keys.
        labeled_only: drop records with no label at all.
        drop_remainder: drop a last, smaller batch (needed by multi-replica training, which
            cannot split a ragged batch evenly).
        shards: read only these shard files of the folder (default: those of ``splits``).

    Returns:
        Batches of (features, targets); targets are float32 (B, 3) in teff, logg, fe_h order with
        NaN where a label is missing.
    """
    files = list(shards) if shards is not None else shard_paths(records_dir, splits)
    if not files:
        raise ApnetError(f"{records_dir}: no shards for split(s) {', '.join(splits or [])}")
    compression = read_manifest(records_dir).get("compression", "")
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
                       cycle_length=min(len(files), 4), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=not shuffle)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    filtering = categories is not None or bool(sample) or labeled_only
    if repeat:
        ds = ds.repeat()
    # Parse whole batches at once: one vectorised parse is far faster than one per record.
    ds = ds.batch(batch_size)
    pixels = PIXEL_FEATURES if features is None else [k for k in PIXEL_FEATURES if k in features]
    ds = ds.map(lambda s: parse_examples(s, pixels), num_parallel_calls=tf.data.AUTOTUNE)
    if filtering:
        ds = ds.map(lambda ex: _filter_batch(ex, categories, sample, seed, labeled_only),
                    num_parallel_calls=tf.data.AUTOTUNE)
    if filtering or drop_remainder:  # filtered batches are ragged; re-batch to full size
        ds = ds.unbatch().batch(batch_size, drop_remainder=drop_remainder)
        if not repeat:  # tell Keras the epoch's length (see record_counts)
            from .record_counts import filtered_batches

            n = filtered_batches(files, categories, sample, seed, labeled_only, batch_size,
                                 drop_remainder)
            if n is not None:
                ds = ds.apply(tf.data.experimental.assert_cardinality(n))
    keys = None if features is None else list(features)

    def select(ex):
        targets = ex["labels"]
        if keys is None:
            return ex, targets
        if len(keys) == 1:
            return ex[keys[0]], targets
        return {k: ex[k] for k in keys}, targets

    ds = ds.map(select, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _filter_batch(ex, categories, sample, seed, labeled_only):
    keep = _keep(ex, categories, sample, seed, labeled_only)
    return {k: tf.boolean_mask(v, keep) for k, v in ex.items()}
