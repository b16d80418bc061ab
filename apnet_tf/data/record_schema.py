"""The TFRecord schema: one ``tf.train.Example`` per spectrum, its encoding and its batch parse.

Each record holds the features of ``FEATURE_SPEC``. Flux and error are stored as the
little-endian float32 bytes that astropy read, so they decode bit for bit. ``photometry`` (the
seven raw values of ``io.photometry.PHOT_COLUMNS``) is written only by ``make-records
--photometry``; a record without it parses as seven NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from apnet_tf.constants import N_PIXELS
from apnet_tf.io.photometry import PHOT_COLUMNS
from apnet_tf.io.spectra import Spectrum

__all__ = ["PIXEL_FEATURES", "FEATURE_SPEC", "encode_example", "parse_examples"]

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
    # raw parallax (mas), G, BP, RP, J, H, K as the table gave them (99.999, NaN: missing)
    "photometry": tf.io.FixedLenFeature([len(PHOT_COLUMNS)], tf.float32,
                                        default_value=[np.nan] * len(PHOT_COLUMNS)),
}


def _bytes(v: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _floats(v) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(np.atleast_1d(v))))


def _ints(v) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(np.atleast_1d(v))))


def encode_example(spec: Spectrum, labels: np.ndarray, category: str, split: str,
                   photometry: np.ndarray | None = None) -> bytes:
    """Serialise one spectrum and its labels (shape (3,), NaN where missing), with its raw
    photometry (shape (7,)) when given."""
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
    if photometry is not None:
        feats["photometry"] = _floats(np.asarray(photometry, np.float32))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def parse_examples(serialized: tf.Tensor,
                   pixel_features: Sequence[str] = PIXEL_FEATURES) -> dict[str, tf.Tensor]:
    """Parse a batch of serialised examples, shape (B,), into a dict of tensors.

    flux, err: float32 (B, 8575); bad: bool (B, 8575); labels: float32 (B, 3) with NaN where the
    label mask is 0; label_mask: bool (B, 3); apogee_id, category, split: string (B,);
    snr, ra, dec: float32 (B,); photometry: float32 (B, 7), NaN where the record has none. Of
    the per-pixel features only ``pixel_features`` are decoded:
    they are 97% of the bytes, so a flux-only read skips most of the decoding.
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
