"""Writing sharded TFRecords: the resumable writer of ``make-records``.

Shards are named ``{split}-{i:05d}-of-{n:05d}.tfrecord`` (``unlabeled-...`` for spectra without a
label row). Each is written under a temporary name with a JSON sidecar and renamed when complete, so
a re-run skips complete shards and an interrupted run never leaves a shard that looks whole.

The record schema is in ``record_schema``, the manifest in ``manifest`` and the ``tf.data`` reader
in ``dataset``.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from apnet_tf.constants import LABEL_COLUMNS, SPLITS
from apnet_tf.data.labels import load_labels, match_report
from apnet_tf.data.manifest import (
    MANIFEST,
    SCHEMA_VERSION,
    UNLABELED,
    build_manifest,
)
from apnet_tf.data.pool import read_many
from apnet_tf.data.record_schema import encode_example
from apnet_tf.errors import ApnetError, first_line
from apnet_tf.io.files import atomic_path, content_hash, locks_output, read_json, write_json
from apnet_tf.io.folders import claim, remove_made
from apnet_tf.io.photometry import check_matches, filled_bits, lookup, read_photometry
from apnet_tf.io.spectra import DEFAULT_MASK_BITS, expand_paths, read_apogee_id

__all__ = ["DEFAULT_RECORDS_PER_SHARD", "RecordsResult", "make_records", "check_mask_bits"]

#: Records per shard when ``shards`` is not given.
DEFAULT_RECORDS_PER_SHARD = 1024


@dataclasses.dataclass
class _Item:
    path: str
    apogee_id: str
    split: str
    category: str
    labels: np.ndarray  # (3,)
    photometry: np.ndarray | None = None  # (7,) raw, all NaN for a star the table lacks


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


@locks_output("out_dir")
def make_records(spectra: Sequence[str], out_dir: str, labels: str | None = None,
                 shards: int | None = None, compress: bool = False,
                 mask_bits: Sequence[int] = DEFAULT_MASK_BITS,
                 on_progress: Callable[[int, int], None] | None = None,
                 photometry: str | None = None) -> RecordsResult:
    """Write spectra and labels as sharded TFRecords plus ``manifest.json``.

    Args:
        spectra: files, folders or glob patterns of apStar files.
        out_dir: the output folder; created if needed.
        labels: an optional label table (CSV or FITS); without it every record is unlabelled.
        shards: shards per split; default one per ``DEFAULT_RECORDS_PER_SHARD`` records.
        compress: write GZIP-compressed records. on_progress: ``on_progress(done, total)``.
        photometry: an optional table (CSV or FITS) of APOGEE_ID and ``PHOT_COLUMNS``: each
            record stores its star's seven raw values as given (99.999 or NaN where missing;
            all NaN for a star the table lacks), and the manifest's ``photometry`` counts them.

    Unreadable files are listed in ``failures`` and skipped; the others go through. Complete
    shards from an earlier run with the same inputs are kept, not rewritten. ``out_dir`` must be
    new, empty or a record folder of this package (``folders.claim``); a re-run removes the old
    manifest first, so an interrupted run leaves a folder that readers refuse.

    Raises:
        ApnetError: a bad argument, label table or photometry table (a column missing, text
            that is not a number; before anything is written), a folder that is not a record
            folder, or a shard that cannot be written.
    """
    if shards is not None and shards < 1:
        raise ApnetError(f"--shards: must be at least 1, got {shards}")
    mask_bits = check_mask_bits(mask_bits)
    input_notes: list[str] = []
    paths = expand_paths(spectra, notes=input_notes)
    table = load_labels(labels) if labels else None
    phot = read_photometry(photometry, input_notes) if photometry else None
    items, failures = _items(paths, table, phot)
    if phot is not None:
        lacking = check_matches(phot, [it.apogee_id for it in items], photometry)
        if lacking:
            input_notes.append(f"{photometry}: {lacking} of {len(items)} star(s) have no row; "
                               "their photometry is stored as missing (the network fills it)")
    report = match_report(table, [it.apogee_id for it in items])
    report_lines = report.lines() + input_notes

    claim(out_dir, "records", legacy=lambda d: read_json(os.path.join(d, MANIFEST)) is not None)
    # The old manifest goes first: until the new one is written the folder reads as incomplete.
    remove_made(out_dir, [MANIFEST])
    plan = _plan(items, shards)
    written, skipped, sidecars = _write_plan(out_dir, plan, compress, mask_bits, on_progress)
    failures += [f for side in sidecars.values() for f in side.get("failures", [])]
    _remove_stale_shards(out_dir, {name for name, _ in plan})
    manifest = build_manifest(sidecars, paths, compress, mask_bits, report_lines,
                              photometry=os.path.abspath(photometry) if photometry else None)
    write_json(os.path.join(out_dir, MANIFEST), manifest, allow_nan=False)
    return RecordsResult(out_dir, manifest, written, skipped, failures, report_lines)


def _write_plan(out_dir: str, plan: list[tuple[str, list[_Item]]], compress: bool,
                mask_bits: Sequence[int], on_progress: Callable[[int, int], None] | None,
                ) -> tuple[list[str], list[str], dict[str, dict]]:
    """Write the shards of ``plan`` whose complete copy (same fingerprint) is not there yet;
    returns the names written, the names kept, and every shard's sidecar. ``on_progress``
    counts the spectra written (kept shards are no work), so a re-run that writes nothing
    reports nothing."""
    options = tf.io.TFRecordOptions(compression_type="GZIP" if compress else "")
    written, skipped, sidecars, done = [], [], {}, 0
    kept = {}
    for name, members in plan:
        fingerprint = _fingerprint(members, compress, mask_bits)
        side = read_json(os.path.join(out_dir, name) + ".json")
        complete = os.path.exists(os.path.join(out_dir, name)) and side and \
            side.get("fingerprint") == fingerprint
        kept[name] = (fingerprint, side if complete else None)
    total = sum(len(members) for name, members in plan if kept[name][1] is None)

    def tick(n: int = 1):
        nonlocal done
        done += n
        if on_progress:
            on_progress(done, total)

    for name, members in plan:
        fingerprint, side = kept[name]
        if side is not None:
            skipped.append(name)
        else:
            side = _write_shard(os.path.join(out_dir, name), members, fingerprint, options,
                                mask_bits, tick)
            written.append(name)
        sidecars[name] = side
    return written, skipped, sidecars


def _remove_stale_shards(out_dir: str, wanted: set[str]) -> None:
    """Shards of an earlier plan (other inputs) are not part of this set: remove those this
    package wrote (they have a sidecar), and nothing else."""
    stale = [os.path.basename(p) for p in glob.glob(os.path.join(out_dir, "*.tfrecord"))
             if os.path.basename(p) not in wanted and os.path.exists(p + ".json")]
    remove_made(out_dir, [n for name in stale for n in (name, name + ".json")])


def _items(paths: list[str], table, phot: dict | None = None) -> tuple[list[_Item], list[str]]:
    """One ``_Item`` per readable file (its labels from ``table`` by APOGEE ID, or unlabelled;
    its photometry from ``phot``, all NaN for a star it lacks), and one failure line per file
    whose ID cannot be read."""
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
        if phot is not None:
            items[-1].photometry = lookup(phot, [apogee_id])[0].astype(np.float32)
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
                        writer.write(encode_example(spec, it.labels, it.category or "", it.split,
                                                    it.photometry))
                        side["records"].append(_sidecar_record(it))
                    tick()
            side["bytes"] = os.path.getsize(tmp)
            side["sha256"] = content_hash(tmp)  # readers verify it (manifest.shard_paths)
            # the sidecar before the rename: a shard that exists is whole and described
            write_json(final + ".json", side, allow_nan=False)
    except tf.errors.OpError as exc:  # TensorFlow's own I/O errors (ENOSPC: ResourceExhausted)
        raise ApnetError(f"{final}: cannot write the shard ({first_line(exc)})") from None
    return side


def _sidecar_record(it: _Item) -> dict:
    """What a shard's sidecar says of one record: its ID, category and labels (None where
    missing), and with photometry which values are missing (``filled_bits``) and whether the
    star was absent from the table (all NaN)."""
    known = [float(v) if np.isfinite(v) else None for v in it.labels]
    rec = {"apogee_id": it.apogee_id, "category": it.category, "labels": known}
    if it.photometry is not None:
        rec["phot_missing"] = int(filled_bits(it.photometry[None])[0])
        rec["phot_absent"] = bool(np.isnan(it.photometry).all())
    return rec


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


def _fingerprint(members: list[_Item], compress: bool, mask_bits: Sequence[int]) -> str:
    """Everything that changes a shard's content: its files, labels, photometry, compression,
    mask bits."""
    h = hashlib.sha256(f"v{SCHEMA_VERSION} gz={compress} mask={sorted(mask_bits)}".encode())
    for it in members:
        st = os.stat(it.path)
        h.update(f"{it.path}|{st.st_size}|{st.st_mtime_ns}|{it.apogee_id}|{it.category}|"
                 f"{it.split}|{it.labels.tobytes().hex()}".encode())
        if it.photometry is not None:  # records without photometry keep their fingerprints
            h.update(b"phot" + it.photometry.tobytes())
    return h.hexdigest()
