"""Folder ownership: a folder the package writes into says what it is, and only its files go.

Every folder that a command fills (records, a run, a synthetic survey, an evaluation, an export,
a YSO network) holds a small marker file, ``.apnet-tf.json``, written when the package first
takes the folder: ``{"kind": "records", "created": ..., "apnet_tf": version, ...}``. With it
the package

* refuses to write into a non-empty folder that it did not make (a user's own files are never
  mixed with, or deleted for, its output);
* refuses a folder of another kind (a run folder given as ``--out`` of make-records);
* deletes only files that it made, by name, inside a folder that carries its marker.

Folders made by earlier versions, which had no marker, are recognised by what they hold (a
``manifest.json`` of this package, say) and adopted.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import inspect
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator

from apnet_tf import __version__
from apnet_tf.errors import ApnetError
from apnet_tf.io.files import holds_output, shared_lock, write_json

__all__ = ["MARKER", "KINDS", "marker", "write_marker", "check", "claim", "remove_made",
           "written_as", "reading_lock", "reads_input"]

MARKER = ".apnet-tf.json"
KINDS = ("records", "run", "survey", "yso_net", "evaluation", "export")


def marker(folder: str) -> dict | None:
    """The marker of ``folder``, or None when it has none (or it is not a package marker)."""
    try:
        with open(os.path.join(folder, MARKER)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("kind") in KINDS else None


def write_marker(folder: str, kind: str, **info) -> None:
    """Write (or rewrite) the marker of ``folder``, keeping its creation time."""
    old = marker(folder) or {}
    created = old.get("created") or datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")
    write_json(os.path.join(folder, MARKER),
               {"kind": kind, "created": created, "apnet_tf": __version__, **info})


def _contents(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n != MARKER and not n.startswith(".tmp-"))


def check(folder: str, kind: str, legacy: Callable[[str], bool] | None = None) -> bool:
    """Whether ``folder`` already holds output of ``kind``; writes nothing.

    Args:
        legacy: a test that recognises a folder of ``kind`` written by an earlier version, which
            had no marker.

    Returns:
        True when the folder holds output of ``kind`` (a re-run), False when it is absent or
        empty.

    Raises:
        ApnetError: the path is a file, a folder of another kind, or a non-empty folder the package
            did not make (the message names the folder and the first file in it).
    """
    if not os.path.exists(folder):
        return False
    if not os.path.isdir(folder):
        raise ApnetError(f"{folder}: is a file, not a folder")
    found = marker(folder)
    contents = _contents(folder)
    if found is not None:
        if found["kind"] != kind:
            raise ApnetError(f"{folder}: is a {found['kind']} folder of apnet-tf, not a {kind} "
                             "folder; choose another folder")
        return bool(contents)
    if not contents:
        return False
    if legacy is not None and legacy(folder):
        return True
    raise ApnetError(f"{folder}: not empty ({contents[0]}"
                     f"{f' and {len(contents) - 1} more' if len(contents) > 1 else ''}) and "
                     f"not a {kind} folder made by apnet-tf; choose a new or empty folder")


def claim(folder: str, kind: str, legacy: Callable[[str], bool] | None = None) -> bool:
    """Take ``folder`` for output of ``kind``: ``check`` it, create it, and mark it.

    Returns:
        What ``check`` returned: True when the folder already held output of ``kind``.
    """
    held = check(folder, kind, legacy)
    os.makedirs(folder, exist_ok=True)
    if marker(folder) is None:
        write_marker(folder, kind)
    return held


def remove_made(folder: str, names: Iterable[str]) -> list[str]:
    """Delete the files (or sub-folders) ``names`` that the package made in ``folder``.

    Refuses a folder without the package's marker, so nothing of a user's is ever deleted.
    Returns the names that were removed.
    """
    if marker(folder) is None:
        raise ApnetError(f"{folder}: has no {MARKER}; apnet-tf deletes files only in folders "
                         "it made")
    removed = []
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        else:
            continue
        removed.append(name)
    return removed


def written_as(path: str) -> str:
    """The output a writer locks for the model ``path``: writers lock folders, so a file's
    folder (``RUN/best.keras``: RUN), a SavedModel version's export folder (``EXPORT/1``:
    EXPORT), and any other folder itself."""
    path = os.path.abspath(os.path.normpath(os.fspath(path)))
    parent = os.path.dirname(path)
    if not os.path.isdir(path):
        return parent
    if marker(path) is None and (marker(parent) is not None or os.path.basename(path).isdigit()):
        return parent
    return path


#: Outputs this process reads under ``reading_lock``, with how many times it took each.
_READING: dict[str, int] = {}


@contextlib.contextmanager
def reading_lock(path: str) -> Iterator[None]:
    """Read ``path`` (a run folder, a model file, an export) under a shared lock on what its
    writers lock (``written_as``; ``OUT.lock``): jobs that read it run side by side, and fit,
    import-torch, calibrate or export refuse to rewrite it meanwhile. Re-entrant; a process
    that is writing it already (fit, then calibrate) takes nothing more.

    Raises:
        ApnetError: another process is writing it.
    """
    key = written_as(path)
    if holds_output(key) or key in _READING:
        _READING[key] = _READING.get(key, 0) + 1
        try:
            yield
        finally:
            _READING[key] -= 1
            if not _READING[key]:
                del _READING[key]
        return
    with shared_lock(key + ".lock", os.fspath(path)):
        _READING[key] = 1
        try:
            yield
        finally:
            del _READING[key]


def reads_input(arg: str):
    """Decorator: a call holds ``reading_lock`` of its argument named ``arg`` throughout (a
    model it reads), so that no writer rewrites it meanwhile."""
    def wrap(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def reading(*args, **kwargs):
            with reading_lock(sig.bind(*args, **kwargs).arguments[arg]):
                return fn(*args, **kwargs)
        return reading
    return wrap
