"""Reading a record folder as a ``tf.data`` pipeline: shards, filters, seeded samples, batches."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from apnet_tf.data.manifest import read_manifest, shard_paths
from apnet_tf.data.record_counts import filtered_batches, keep_mask
from apnet_tf.data.record_schema import PIXEL_FEATURES, parse_examples
from apnet_tf.errors import ApnetError

__all__ = ["make_dataset"]


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
    ds = _serialized(files, compression, shuffle, shuffle_buffer, seed)
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

            n = filtered_batches(files, categories, sample, seed, labeled_only, batch_size,
                                 drop_remainder)
            if n is not None:
                ds = ds.apply(tf.data.experimental.assert_cardinality(n))
    keys = None if features is None else list(features)
    ds = ds.map(lambda ex: _select(ex, keys), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _serialized(files: list[str], compression: str, shuffle: bool, shuffle_buffer: int,
                seed: int) -> tf.data.Dataset:
    """The serialised records of ``files``, read four shards at a time; with ``shuffle``, the
    shard order and (through a buffer) the records are shuffled anew each epoch."""
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
                       cycle_length=min(len(files), 4), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=not shuffle)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return ds


def _select(ex: dict[str, tf.Tensor], keys: list[str] | None):
    """(features, targets (B, 3)) of a parsed batch: one key gives a tensor, several a dict,
    None the whole dict."""
    targets = ex["labels"]
    if keys is None:
        return ex, targets
    if len(keys) == 1:
        return ex[keys[0]], targets
    return {k: ex[k] for k in keys}, targets


def _filter_batch(ex, categories, sample, seed, labeled_only):
    keep = keep_mask(ex, categories, sample, seed, labeled_only)
    return {k: tf.boolean_mask(v, keep) for k, v in ex.items()}
