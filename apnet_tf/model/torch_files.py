"""Reading and writing PyTorch ``.pt`` files, with torch's own loader errors said in one line.

``torch.load`` answers a bad file with messages meant for PyTorch developers: miniz internals,
terminal colour codes, or advice to pass ``weights_only=False``, which would run code stored in
the file and which the command line never does. ``load_state`` looks at the file first (its
size, its first bytes, the archive's listing) and says what it is; what torch still refuses is
reduced to its first plain sentence. Importing this module does not import PyTorch.
"""

from __future__ import annotations

import collections
import os
import re
import zipfile

from apnet_tf.constants import TORCH_MISSING
from apnet_tf.errors import ApnetError

__all__ = ["OWN_MARK", "torch_module", "load_state", "marked_state"]

#: The key under which ``save_torch`` marks its state_dicts, in the ``_metadata`` that
#: ``load_state_dict`` reads and otherwise ignores, so a file parted from its sidecar is still
#: known for what it is and the authors' strict load still takes it.
OWN_MARK = "apnet_tf"
_ZIP, _HDF5 = b"PK\x03\x04", b"\x89HDF\r\n\x1a\n"
_PICKLE = b"\x80"  # torch's legacy format: pickle protocol 2+
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def torch_module():
    """``import torch``, or ApnetError saying how to install it."""
    try:
        import torch
    except ImportError:
        raise ApnetError(TORCH_MISSING) from None
    return torch


def _kind_problem(path: str) -> str | None:
    """What the file is when it is visibly not a complete PyTorch file, else None."""
    size = os.path.getsize(path)
    if size == 0:
        return "an empty file (0 bytes), not a PyTorch file"
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_HDF5):
        return "an HDF5 file (Keras weights?), not a PyTorch file; import-torch reads torch.save"
    if head.startswith(_ZIP):
        if not zipfile.is_zipfile(path):
            return (f"a truncated or damaged PyTorch file ({size} bytes: the zip archive has no "
                    "directory); download or save it again")
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
            hint = " (a Keras .keras file? infer --model reads it)" if "config.json" in names \
                else ""
            return f"a zip archive without torch.save's data.pkl{hint}, not a PyTorch file"
        return None
    if not head.startswith(_PICKLE):
        return "not a PyTorch file (torch.save writes a zip archive)"
    return None


def _torch_problem(exc: BaseException, size: int) -> str:
    """torch.load's exception said in one line, without terminal codes or weights_only advice."""
    text = _ANSI.sub("", str(exc))
    found = _GLOBAL.search(text)
    if found:
        return (f"holds a pickled {found.group(1)}, not only tensors; import-torch reads a "
                "state_dict (torch.save(model.state_dict(), path)) and never unpickles other "
                "objects")
    if isinstance(exc, EOFError) or "corrupted" in text or "EOF" in text:
        return f"a truncated or damaged PyTorch file ({size} bytes); download or save it again"
    if "Unsupported operand" in text or isinstance(exc, KeyError) or "load key" in text:
        return "not a PyTorch file (torch.load cannot read it)"
    sentences = [s.strip() for s in re.split(r"(?<=[.:])\s+", " ".join(text.split()))]
    plain = [s for s in sentences if s and "weights_only" not in s and "internal" not in s]
    return f"cannot load a PyTorch state_dict ({plain[0] if plain else type(exc).__name__})"


def load_state(path: str) -> tuple[object, dict | None]:
    """(what the file holds, ``save_torch``'s mark or None), read with ``weights_only``.

    Raises:
        ApnetError: one line naming ``path``: missing, a folder, empty, truncated or damaged,
            another format, or holding objects other than tensors.
    """
    torch = torch_module()
    if os.path.isdir(path):
        raise ApnetError(f"{path}: a folder, not a PyTorch file")
    if not os.path.isfile(path):
        raise ApnetError(f"{path}: no such file")
    problem = _kind_problem(path)
    if problem is not None:
        raise ApnetError(f"{path}: {problem}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types: each said in one line
        raise ApnetError(f"{path}: {_torch_problem(exc, os.path.getsize(path))}") from None
    meta = getattr(state, "_metadata", None)
    mark = (meta.get("") or {}).get(OWN_MARK) if isinstance(meta, dict) else None
    return state, mark if isinstance(mark, dict) else None


def marked_state(tensors: dict, mark: dict) -> collections.OrderedDict:
    """``tensors`` as a state_dict carrying ``mark`` where ``load_state`` finds it."""
    state = collections.OrderedDict(tensors)
    state._metadata = {"": {"version": 1, OWN_MARK: mark}}
    return state
