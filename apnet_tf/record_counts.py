"""How many batches a filtered record dataset yields, counted from the shards' sidecars.

A filtered ``tf.data`` pipeline has an unknown length, so Keras learns an epoch's length only by
running out of data in the first epoch, and says so with a "Your input ran out of data" warning.
Each shard's sidecar (``<shard>.json``) lists its records (APOGEE ID, category, labels), so the
same filter (``dataset._keep``, with the same hash for the seeded sample) gives the exact count.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from .files import read_json


def filtered_batches(files: Sequence[str], categories, sample, seed: int, labeled_only: bool,
                     batch_size: int, drop_remainder: bool) -> int | None:
    """Batches of ``batch_size`` that ``dataset.make_dataset`` yields from ``files`` under these
    filters, or None when a shard has no sidecar (records from an older version)."""
    from .dataset import _keep

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
    n = int(tf.reduce_sum(tf.cast(_keep(ex, categories, sample, seed, labeled_only), tf.int32)))
    return n // batch_size if drop_remainder else -(-n // batch_size)
