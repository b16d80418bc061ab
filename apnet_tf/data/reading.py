"""Planning and reading the input of a survey job, in parallel, in a fixed order.

The input (apStar files, folders, globs, record folders, or an allStar table) becomes a list of
``Unit``s: up to ``batch_size`` FITS files, or one record shard. Units are numbered once, in a
fixed order, so the local engine and the Ray engine make the same batches and a resumed job
finds its finished ones again; the random draws of a unit come from (seed, unit key).

FITS files are read in worker processes (``spawn``: TensorFlow's threads in the parent must not
be forked), a bounded number of units ahead of the consumer, so the model in the main process
is kept busy and memory does not grow with the number of files. Importing this module does not
import TensorFlow.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import ctypes
import dataclasses
import hashlib
import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from apnet_tf.data.manifest import (
    count_records,
    read_manifest,
    records_hold_photometry,
    shard_paths,
)
from apnet_tf.errors import ApnetError
from apnet_tf.io.folders import marker
from apnet_tf.io.photometry import PHOT_COLUMNS
from apnet_tf.io.spectra import DEFAULT_MASK_BITS, Spectrum, expand_paths, read_apstar
from apnet_tf.io.survey_table import Listing

__all__ = [
    "READ_CHUNK", "PR_SET_PDEATHSIG", "Batch", "Unit", "Plan", "is_records", "plan_units",
    "read_fits_unit", "read_record_unit", "read_record_labels", "read_unit", "default_workers",
    "ordered_map", "iter_units", "read_many", "die_with_parent", "read_pickled_unit",
]

#: Files per task sent to a worker by ``read_many`` (make-records).
READ_CHUNK = 32
#: Linux prctl option: the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1


@dataclasses.dataclass
class Batch:
    """A batch of spectra and what the catalog needs of them. Arrays have B rows."""

    apogee_id: np.ndarray
    flux: np.ndarray  # (B, 8575)
    err: np.ndarray  # (B, 8575)
    bad: np.ndarray  # (B, 8575) bool
    snr: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    source: np.ndarray  # the apStar file, or the record shard, each row was read from
    labels: np.ndarray | None = None  # (B, 3) when the input is labelled records
    split: np.ndarray | None = None
    category: np.ndarray | None = None
    extra: dict[str, np.ndarray] | None = None  # columns from an input table (TELESCOPE, ...)
    photometry: np.ndarray | None = None  # (B, 7) raw photometry: an input table's, records'


@dataclasses.dataclass(frozen=True)
class Unit:
    """One batch of work: FITS files (kind "fits") or one record shard (kind "records")."""

    key: int
    kind: str
    paths: tuple[str, ...]
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (column, one value per path)
    labeled_only: bool = False
    compression: str = ""
    photometry: bool = False  # a record shard that stores photometry (make-records --photometry)
    rows: tuple[int, ...] | None = None  # a shard's records to read, by position (None: all)


@dataclasses.dataclass
class Plan:
    units: list[Unit]
    failures: list[str]  # input paths or table rows that name no file, one line each
    total: int  # spectra the units hold

    def fingerprint(self) -> str:
        """sha256 over every input's path, size and modification time, in plan order."""
        h = hashlib.sha256()
        for u in self.units:
            h.update(f"{u.key}|{u.kind}|{u.labeled_only}|{u.extra}|{u.rows}".encode())
            for p in u.paths:
                st = os.stat(p)
                h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode("utf-8", "surrogateescape"))
        h.update("\n".join(self.failures).encode("utf-8", "surrogateescape"))
        return h.hexdigest()


def is_records(path: str) -> bool:
    """A record folder, finished (manifest.json) or not (its marker; reading it then says so)."""
    return os.path.isdir(path) and (os.path.exists(os.path.join(path, "manifest.json"))
                                    or (marker(path) or {}).get("kind") == "records")


def plan_units(inputs: Sequence[str], batch_size: int = 256,
               split_filter: Sequence[str] | None = None,
               listing: Listing | None = None,
               rows: Mapping[str, Sequence[int]] | None = None) -> Plan:
    """Number the work: record shards first (one unit each), then the files of ``listing`` in
    its order, then the other FITS files in sorted order.

    ``rows``: read only the record shards it names (paths as ``manifest.shard_paths`` gives
    them), and of each only the records at these positions (0-based, in the shard's order; with
    a ``split_filter``, labelled ones); None reads every shard whole.

    A path that matches nothing, and a listing's row with no file, become failure lines.
    """
    failures: list[str] = []
    units: list[Unit] = []
    total = 0
    wanted = None if rows is None else {os.path.abspath(p): sorted(set(map(int, r)))
                                        for p, r in rows.items()}
    for rec in (p for p in inputs if is_records(p)):
        manifest = read_manifest(rec)
        compression = manifest.get("compression", "")
        names = None if wanted is None else {
            os.path.basename(p) for p in wanted if os.path.dirname(p) == os.path.abspath(rec)}
        for shard in shard_paths(rec, split_filter, names):
            picked = None if wanted is None else tuple(wanted[os.path.abspath(shard)])
            units.append(Unit(len(units), "records", (shard,), labeled_only=bool(split_filter),
                              compression=compression, rows=picked,
                              photometry=records_hold_photometry(manifest)))
            total += 0 if picked is None else len(picked)
        total += count_records(rec, split_filter) if wanted is None else 0
    fits_inputs = [p for p in inputs if not is_records(p)]
    paths = expand_paths(fits_inputs, missing=failures) if fits_inputs else []
    extra: dict[str, list[str]] = {}
    if listing is not None:
        extra = {k: list(v) + [""] * len(paths) for k, v in listing.columns.items()}
        paths = list(listing.paths) + paths
        failures.extend(listing.missing)
    for i in range(0, len(paths), batch_size):
        cols = tuple((k, tuple(v[i:i + batch_size])) for k, v in extra.items())
        units.append(Unit(len(units), "fits", tuple(paths[i:i + batch_size]), cols))
    return Plan(units, failures, total + len(paths))


def read_fits_unit(unit: Unit, mask_bits: Sequence[int] = DEFAULT_MASK_BITS,
                   ) -> tuple[Batch | None, list[str]]:
    """Read a FITS unit: its batch (None if no file could be read) and one line per bad file."""
    specs, rows, failures = [], [], []
    for i, path in enumerate(unit.paths):
        try:
            specs.append(read_apstar(path, mask_bits))
            rows.append(i)
        except ApnetError as exc:
            failures.append(str(exc))
    if not specs:
        return None, failures
    extra = {k: np.array([v[i] for i in rows], dtype=object) for k, v in unit.extra}
    phot = _table_photometry(extra, len(rows))
    ids = extra.pop("APOGEE_ID", None)  # a table's ID wins over the header's
    ids = np.array([s.apogee_id if ids is None or not ids[j] else ids[j]
                    for j, s in enumerate(specs)], dtype=object)
    return Batch(ids, np.stack([s.flux for s in specs]), np.stack([s.err for s in specs]),
                 np.stack([s.bad for s in specs]), np.array([s.snr for s in specs]),
                 np.array([s.ra for s in specs]), np.array([s.dec for s in specs]),
                 np.array([s.path for s in specs], dtype=object),
                 extra=extra or None, photometry=phot), failures


def _table_photometry(extra: dict, n: int) -> np.ndarray | None:
    """The (n, 7) photometry columns of an input table, taken out of ``extra`` (NaN where a
    row has none); None when the table has none."""
    if PHOT_COLUMNS[0] not in extra:
        return None
    cols = [extra.pop(c) for c in PHOT_COLUMNS]
    return np.array([[np.nan if v == "" else float(v) for v in col] for col in cols],
                    dtype=np.float64).T.reshape(n, len(PHOT_COLUMNS))


def read_record_unit(unit: Unit) -> tuple[Batch | None, list[str]]:
    """Read a record shard (TensorFlow) as one batch; with ``labeled_only``, labelled stars;
    with the unit's ``photometry``, the stored photometry too."""
    import tensorflow as tf

    from apnet_tf.data.record_counts import keep_mask
    from apnet_tf.data.record_schema import parse_examples

    ds = tf.data.TFRecordDataset(list(unit.paths), compression_type=unit.compression)
    parts, start = [], 0
    rows = None if unit.rows is None else np.asarray(unit.rows, np.int64)
    for serialized in ds.batch(1024):
        if rows is not None:  # only the rows asked for have their pixels decoded
            n = int(serialized.shape[0])
            picked, start = rows[(rows >= start) & (rows < start + n)] - start, start + n
            if not picked.size:
                continue
            serialized = tf.gather(serialized, picked)
        ex = parse_examples(serialized, ("flux", "err", "bad"))
        if unit.labeled_only:
            keep = keep_mask(ex, None, None, 0, True)
            ex = {k: tf.boolean_mask(v, keep) for k, v in ex.items()}
        parts.append({k: v.numpy() for k, v in ex.items()})
    if not parts or not sum(len(p["snr"]) for p in parts):
        return None, []
    ex = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    n = len(ex["snr"])
    text = {k: ex[k].astype(str).astype(object) for k in ("apogee_id", "split", "category")}
    return Batch(text["apogee_id"], ex["flux"], ex["err"], ex["bad"], ex["snr"], ex["ra"],
                 ex["dec"], np.full(n, unit.paths[0], dtype=object), ex["labels"], text["split"],
                 text["category"],
                 photometry=ex["photometry"].astype(np.float64) if unit.photometry else None), []


def read_record_labels(path: str, compression: str = "") -> dict[str, np.ndarray]:
    """What a record shard holds besides its pixels, which are skipped (TensorFlow): labels
    (N, 3) (NaN where missing), snr (N,) and labelled (N,) bool (some label), in the shard's
    order."""
    import tensorflow as tf

    from apnet_tf.data.record_schema import parse_examples

    parts = [parse_examples(s, ()) for s in
             tf.data.TFRecordDataset([path], compression_type=compression).batch(1024)]
    labels = np.concatenate([p["labels"].numpy() for p in parts] or [np.zeros((0, 3))])
    snr = np.concatenate([p["snr"].numpy() for p in parts] or [np.zeros(0)])
    mask = np.concatenate([p["label_mask"].numpy() for p in parts] or [np.zeros((0, 3), bool)])
    return {"labels": labels.astype(float), "snr": snr.astype(float), "labelled": mask.any(1)}


def read_unit(unit: Unit, mask_bits: Sequence[int] = DEFAULT_MASK_BITS,
              ) -> tuple[Batch | None, list[str]]:
    return read_record_unit(unit) if unit.kind == "records" else read_fits_unit(unit, mask_bits)


def read_pickled_unit(row: dict) -> dict:
    """A read task of the Ray engine (``inference.ray_engine``): {"key", "unit": a pickled
    ``Unit``} -> {"key", "batch": the pickled ``read_unit`` result, (batch, failures)}.

    It lives here because this module does not import TensorFlow: a Ray worker process that
    unpickles the task imports only this, and starts reading at once instead of spending
    seconds of a CPU that the model needs on importing TensorFlow first.
    """
    unit = pickle.loads(row["unit"])
    return {"key": row["key"], "batch": pickle.dumps(read_unit(unit), protocol=5)}


def default_workers() -> int:
    """Reader processes: every core, at most 8 (the model shares them)."""
    return max(1, min(8, os.cpu_count() or 1))


def ordered_map(fn: Callable, items: Iterable, workers: int, processes: bool = True,
                window: int | None = None) -> Iterator:
    """``fn(item)`` for each item, in order, computed by ``workers`` processes (or threads) at
    most ``window`` items ahead of the consumer (memory stays bounded); inline when workers is 0.
    """
    items = list(items)
    if workers <= 0 or len(items) < 2:
        yield from map(fn, items)
        return
    workers = min(workers, len(items))
    pool = (cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=die_with_parent, initargs=(os.getpid(),))
            if processes else cf.ThreadPoolExecutor(workers))
    window = window or 2 * workers
    todo = iter(items)
    pending: collections.deque = collections.deque()
    try:
        for item in todo:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                break
        while pending:
            result = pending.popleft().result()
            for item in todo:
                pending.append(pool.submit(fn, item))
                break
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def die_with_parent(parent: int) -> None:
    """In a reader process: be killed when the job that started it dies, even by kill -9
    (Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; elsewhere nothing), so no reader outlives it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def iter_units(units: Sequence[Unit], workers: int | None = None,
               mask_bits: Sequence[int] = DEFAULT_MASK_BITS,
               ) -> Iterator[tuple[Unit, Batch | None, list[str]]]:
    """(unit, batch, failures) for each unit, in order: record shards in a thread, FITS units
    in ``workers`` processes (default ``default_workers()``), both read ahead of the consumer."""
    workers = default_workers() if workers is None else workers
    records = [u for u in units if u.kind == "records"]
    fits_units = [u for u in units if u.kind != "records"]
    for unit, (batch, failures) in zip(records, ordered_map(read_record_unit, records,
                                                            min(workers, 1), processes=False)):
        yield unit, batch, failures
    reader = _FitsReader(tuple(mask_bits))
    for unit, (batch, failures) in zip(fits_units, ordered_map(reader, fits_units, workers)):
        yield unit, batch, failures


@dataclasses.dataclass(frozen=True)
class _FitsReader:
    """A picklable ``read_fits_unit`` with its mask bits."""

    mask_bits: tuple[int, ...]

    def __call__(self, unit: Unit):
        return read_fits_unit(unit, self.mask_bits)


@dataclasses.dataclass(frozen=True)
class _ChunkReader:
    mask_bits: tuple[int, ...]

    def __call__(self, paths: Sequence[str]) -> list[tuple[str, Spectrum | None, str | None]]:
        out = []
        for path in paths:
            try:
                out.append((path, read_apstar(path, self.mask_bits), None))
            except ApnetError as exc:
                out.append((path, None, str(exc)))
        return out


def read_many(paths: Sequence[str], mask_bits: Sequence[int] = DEFAULT_MASK_BITS,
              workers: int | None = None,
              ) -> Iterator[tuple[str, Spectrum | None, str | None]]:
    """(path, spectrum, None) or (path, None, error) for each path, in order, read in parallel
    (see ``ordered_map``); one bad file never stops the rest."""
    workers = default_workers() if workers is None else workers
    if len(paths) < 2 * READ_CHUNK:
        workers = 0  # starting processes costs more than reading a few files
    chunks = [paths[i:i + READ_CHUNK] for i in range(0, len(paths), READ_CHUNK)]
    for chunk in ordered_map(_ChunkReader(tuple(mask_bits)), chunks, workers):
        yield from chunk
