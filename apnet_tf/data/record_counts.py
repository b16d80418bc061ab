"""How many batches a filtered record dataset yields, counted from the shards' sidecars.

A filtered ``tf.data`` pipeline has an unknown length, so Keras learns an epoch's length only by
running out of data in the first epoch, and says so with a "Your input ran out of data" warning.
Each shard's sidecar (``<shard>.json``) lists its records (APOGEE ID, category, labels), so the
same filter (``keep_mask``, which ``dataset.make_dataset`` applies, with the same hash for the
seeded sample) gives the exact count.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from apnet_tf.io.files import read_json

__all__ = ["filtered_batches", "keep_mask"]


def filtered_batches(files: Sequence[str], categories, sample, seed: int, labeled_only: bool,
                     batch_size: int, drop_remainder: bool) -> int | None:
    """Batches of ``batch_size`` that ``dataset.make_dataset`` yields from ``files`` under these
    filters, or None when a shard has no sidecar (records from an older version)."""
    ids, cats, masks = [], [], []
    for path in files:
        side = read_json(path + ".json")
        if not side or not isinstance(side.get("records"), list):
            return None
        for rec in side["records"]:
            ids.append(str(rec["apogee_id"]))
            cats.append(rec.get("category") or "")
            masks.append([v is not None for v in rec["labels"]])
    if not ids:
        return 0
    ex = {"snr": tf.zeros([len(ids)]), "apogee_id": tf.constant(ids),
          "category": tf.constant(cats), "label_mask": tf.constant(masks, tf.bool)}
    n = int(tf.reduce_sum(tf.cast(keep_mask(ex, categories, sample, seed, labeled_only), tf.int32)))
    return n // batch_size if drop_remainder else -(-n // batch_size)


def keep_mask(ex: dict[str, tf.Tensor], categories, sample: dict[str, float] | None,
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
