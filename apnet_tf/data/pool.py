"""The reader processes of a survey job: units (``planning``) and files read in parallel, in a
fixed order, a bounded number ahead of the consumer.

FITS files are read in worker processes (``spawn``: TensorFlow's threads in the parent must not
be forked), so the model in the main process is kept busy and memory does not grow with the
number of files; a reader process dies with the job that started it. Importing this module does
not import TensorFlow.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import ctypes
import dataclasses
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence

from apnet_tf.data.planning import Unit
from apnet_tf.data.readers import Batch, read_record_unit, read_unit
from apnet_tf.errors import ApnetError
from apnet_tf.io.spectra import DEFAULT_MASK_BITS, Spectrum, read_apstar

__all__ = [
    "READ_CHUNK", "PR_SET_PDEATHSIG", "default_workers", "ordered_map", "die_with_parent",
    "iter_units", "read_many",
]

#: Files per task sent to a worker by ``read_many`` (make-records).
READ_CHUNK = 32
#: Linux prctl option: the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1


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
    """(unit, batch, failures) for each unit, in order: record shards in a thread (they read
    with TensorFlow), the other units (FITS files) in ``workers`` processes (default
    ``default_workers()``), both read ahead of the consumer."""
    workers = default_workers() if workers is None else workers
    records = [u for u in units if u.kind == "records"]
    fits_units = [u for u in units if u.kind != "records"]
    for unit, (batch, failures) in zip(records, ordered_map(read_record_unit, records,
                                                            min(workers, 1), processes=False)):
        yield unit, batch, failures
    reader = _UnitReader(tuple(mask_bits))
    for unit, (batch, failures) in zip(fits_units, ordered_map(reader, fits_units, workers)):
        yield unit, batch, failures


@dataclasses.dataclass(frozen=True)
class _UnitReader:
    """A picklable ``read_unit`` with its mask bits."""

    mask_bits: tuple[int, ...]

    def __call__(self, unit: Unit):
        return read_unit(unit, self.mask_bits)


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
