"""File helpers shared by the rooms: files and JSON written atomically, JSON read when present."""

from __future__ import annotations

import json
import os


def read_json(path: str | None) -> dict | None:
    """The JSON object in ``path``, or None when the file is absent or unreadable."""
    if not path:
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_file(path: str, data: str | bytes) -> None:
    """Write text or bytes through a temporary name and a rename, so no reader sees half a file."""
    tmp = path + ".tmp"
    with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    os.replace(tmp, path)


def write_json(path: str, obj, allow_nan: bool = True) -> None:
    """Write JSON atomically (see ``write_file``)."""
    write_file(path, json.dumps(obj, indent=2, allow_nan=allow_nan) + "\n")
