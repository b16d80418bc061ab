"""File helpers shared by the rooms: files and JSON written atomically, JSON read when present."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import inspect
import json
import os
import shutil
import sys
from collections.abc import Iterator

from apnet_tf.errors import ApnetError, first_line

__all__ = [
    "read_json", "read_json_object", "atomic_path", "write_file", "write_json", "content_hash",
    "exclusive_lock", "shared_lock", "output_lock", "holds_output", "locks_output",
]


def read_json(path: str | None) -> dict | None:
    """The JSON object in ``path``, or None when the file is absent or unreadable."""
    if not path:
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_json_object(path: str, remedy: str) -> dict | None:
    """The JSON object in ``path`` (None when the file is absent); ApnetError naming the file and
    ``remedy`` (what to do) when it is not readable JSON or not an object."""
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as exc:
        raise ApnetError(f"{path}: not readable JSON ({first_line(exc)}); {remedy}") from None
    if not isinstance(value, dict):
        raise ApnetError(f"{path}: holds a {type(value).__name__}, not a JSON object; {remedy}")
    return value


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary name to write ``path`` under; it is renamed to ``path`` when the block ends
    without an error, so no reader ever sees half a file.

    The name is ``.tmp-<name>`` in the same folder: it keeps the extension (Keras, matplotlib
    and numpy pick the format from it) and globs such as ``*.tfrecord`` do not match it.
    A block that fails (a full disk, an interrupt) removes what it wrote, so no temporary file
    is left behind. The file is emptied before it is removed: a library that still holds it open
    (h5py, after a write failed on a full disk) flushes and closes it later, which needs the
    space its half-written data took; without it HDF5 fails again as it closes the file and the
    process dies with a segmentation fault.
    """
    tmp = os.path.join(os.path.dirname(path), ".tmp-" + os.path.basename(path))
    try:
        yield tmp
    except BaseException:
        with contextlib.suppress(OSError):
            if os.path.isdir(tmp) and not os.path.islink(tmp):
                shutil.rmtree(tmp)
            else:
                if os.path.isfile(tmp) and not os.path.islink(tmp):
                    os.truncate(tmp, 0)
                os.remove(tmp)
        raise
    os.replace(tmp, path)


def write_file(path: str, data: str | bytes) -> None:
    """Write text or bytes atomically (see ``atomic_path``)."""
    with atomic_path(path) as tmp, open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def write_json(path: str, obj, allow_nan: bool = True) -> None:
    """Write JSON atomically (see ``write_file``)."""
    write_file(path, json.dumps(obj, indent=2, allow_nan=allow_nan) + "\n")


def content_hash(path: str) -> str:
    """sha256 (hex) of a file, or of a folder's files (each relative path, then its bytes) in
    sorted relative-path order: the same content gives the same hash on any machine."""
    h = hashlib.sha256()
    if os.path.isdir(path):
        files = sorted(os.path.relpath(os.path.join(root, name), path)
                       for root, _, names in os.walk(path) for name in names)
    else:
        files = [""]
    for rel in files:
        if rel:
            size = os.path.getsize(os.path.join(path, rel))
            h.update(f"{rel.replace(os.sep, '/')}\0{size}\0".encode())
        with open(os.path.join(path, rel) if rel else path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def exclusive_lock(path: str, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if needed) for the block, or fail at
    once if another process holds it, exclusively or shared (``shared_lock``: a job reading
    ``what``). The OS drops the lock when the holder dies, so a killed job never blocks its
    re-run. The file is removed when the block ends.

    Raises:
        ApnetError: another process holds the lock; ``what`` names what it protects.
    """
    fd, problem = _acquire(path, what, shared=False)
    if fd is None:
        yield from _unlocked(path, problem)
        return
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):  # someone removed it: the job still ran
            os.remove(path)
        os.close(fd)


@contextlib.contextmanager
def shared_lock(path: str, what: str) -> Iterator[None]:
    """Hold a shared lock on the file ``path`` for the block: any number of readers at once,
    no writer (``exclusive_lock``) meanwhile. Where no lock can be taken (a folder the user may
    read but not write) the block runs unlocked, silently: whoever cannot write beside a
    folder is not the one to rewrite it. The last reader removes the file.

    Raises:
        ApnetError: a process holds the exclusive lock (it is writing ``what``).
    """
    import fcntl

    fd, _ = _acquire(path, what, shared=True)
    if fd is None:
        yield
        return
    try:
        yield
    finally:
        try:  # the last holder: nobody else has it, so the file can go
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _same_file(path, fd):
                os.remove(path)
        except OSError:
            pass
        os.close(fd)


def _same_file(path: str, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _open_lock(path: str, shared: bool) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if not (shared and exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM)):
            raise
        return os.open(path, os.O_RDONLY)  # flock works on a read-only descriptor too


def _acquire(path: str, what: str, shared: bool) -> tuple[int | None, OSError | None]:
    """(descriptor holding the lock, None), or (None, why) where no lock can be taken.

    Raises:
        ApnetError: another process holds a lock that excludes this one.
    """
    import fcntl

    while True:
        try:
            fd = _open_lock(path, shared)
        except OSError as exc:
            if exc.errno not in _NO_LOCK_ERRNOS + (errno.ENOENT,):
                raise
            return None, exc
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            doing = "writing" if shared or _writer_holds(path) else "reading"
            raise ApnetError(f"{what}: another process is {doing} it (lock {path}); wait for "
                             "it to finish or stop it") from None
        except OSError as exc:
            os.close(fd)
            if exc.errno not in _NO_LOCK_ERRNOS:
                raise
            if not shared:
                with contextlib.suppress(OSError):
                    os.remove(path)
            return None, exc
        if _same_file(path, fd):  # the previous holder may have removed it meanwhile
            return fd, None
        os.close(fd)


def _writer_holds(path: str) -> bool:
    """Whether the lock ``path`` is held exclusively (a writer) rather than shared (readers)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


#: Where a lock cannot be taken at all (a file system without flock, as some Lustre and NFS
#: mounts; a parent folder the user cannot write): the job runs unlocked, with a warning.
_NO_LOCK_ERRNOS = (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EACCES, errno.EROFS,
                   errno.EPERM)


def _unlocked(path: str, exc: OSError):
    """The body of a lock that cannot be taken: a one-line warning, then the job."""
    print(f"warning: {path}: cannot lock ({exc.strerror}); running without a lock, so do not "
          "start a second job on the same output", file=sys.stderr)
    yield


#: Outputs whose lock this process holds, with how many times it took each (re-entrant).
_HELD: dict[str, int] = {}


@contextlib.contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[None]:
    """Hold the lock of one output (a folder or file): ``OUT.lock`` beside it, as ``infer``
    takes, for the block (``exclusive_lock``). Re-entrant in one process, so that a command that
    calls another on the same output (fit, then calibrate) does not refuse itself.

    Raises:
        ApnetError: another process holds it; the message names ``out``.
    """
    key = os.path.abspath(os.path.normpath(os.fspath(out)))
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    os.makedirs(os.path.dirname(key), exist_ok=True)
    with exclusive_lock(key + ".lock", os.fspath(out)):
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]


def holds_output(out: str | os.PathLike) -> bool:
    """Whether this process holds ``output_lock`` of ``out`` (it is writing it)."""
    return os.path.abspath(os.path.normpath(os.fspath(out))) in _HELD


def locks_output(arg: str):
    """Decorator: a call holds ``output_lock`` of its argument named ``arg`` throughout, so two
    runs of a command never write one folder at once."""
    def wrap(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args, **kwargs):
            with output_lock(sig.bind(*args, **kwargs).arguments[arg]):
                return fn(*args, **kwargs)
        return locked
    return wrap
