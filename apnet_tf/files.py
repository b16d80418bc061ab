"""File helpers shared by the rooms: JSON read when present, JSON written atomically."""

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


def write_json(path: str, obj, allow_nan: bool = True) -> None:
    """Write JSON through a temporary name and a rename, so no reader sees half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, allow_nan=allow_nan)
        f.write("\n")
    os.replace(tmp, path)
