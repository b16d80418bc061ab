"""The work folder of an infer job: finished batches kept so that a killed job resumes.

A batch is reused only when ``settings.json`` matches in full: the model's content (sha256 of
its files, not its path), the input list (every file's path, size and modification time, in
order) and every setting. The seed is recorded too: a job run without ``--seed`` draws one, and
its resumed run reuses it, so the draws of batch k are the same as in an uninterrupted run.
"""

from __future__ import annotations

import glob
import os
import secrets

import numpy as np

from apnet_tf.io.files import atomic_path, read_json, write_json
from apnet_tf.model.loading import files_sha256, model_files

__all__ = [
    "SETTINGS", "FORMAT_VERSION", "model_hash", "new_seed", "prepare", "has_part", "load_part",
    "save_part"
]

SETTINGS = "settings.json"
#: Raised when the meaning of a saved part changes.
FORMAT_VERSION = 4  # 4: spikes masked, N_SPIKES and NOVELTY


def model_hash(model) -> str:
    """sha256 of what ``loading.load_model`` read (the runtime's ``sha256``; for a runtime
    built otherwise, of the files it would read)."""
    return model.sha256 or files_sha256(model_files(model.path))


def new_seed(seed: int | None) -> int:
    return int(seed) if seed is not None else secrets.randbelow(2**31)


def prepare(work_dir: str, model, plan, settings: dict) -> int:
    """Create ``work_dir`` or check it; return the seed to draw with.

    Batches made with any other model content, inputs or settings are removed (only the files
    this module writes: ``part-*.npz`` and settings.json).
    """
    wanted = {"format": FORMAT_VERSION, "model_sha256": model_hash(model),
              "inputs_sha256": plan.fingerprint(), **settings}
    os.makedirs(work_dir, exist_ok=True)
    old = read_json(os.path.join(work_dir, SETTINGS)) or {}
    drawn = old.pop("drawn_seed", None)
    if old != _json_round_trip(wanted) or drawn is None:
        for f in glob.glob(os.path.join(work_dir, "part-*.npz")):
            os.remove(f)
        drawn = new_seed(settings.get("seed"))
    write_json(os.path.join(work_dir, SETTINGS), {**wanted, "drawn_seed": drawn})
    return int(drawn)


def _json_round_trip(obj: dict) -> dict:
    import json

    return json.loads(json.dumps(obj))


def _part(work_dir: str, key: int) -> str:
    return os.path.join(work_dir, f"part-{key:06d}.npz")


def has_part(work_dir: str, key: int) -> bool:
    """Whether batch ``key`` is finished and loads whole; a part that fails to load (damaged on
    disk, cut by a full disk) is removed, so that the batch is computed again."""
    path = _part(work_dir, key)
    if not os.path.exists(path):
        return False
    try:
        _read(path)
    except Exception:  # noqa: BLE001 - whatever is wrong with it, it is made again
        os.remove(path)
        return False
    return True


def load_part(work_dir: str, key: int) -> dict[str, np.ndarray] | None:
    if not has_part(work_dir, key):
        return None
    return _read(_part(work_dir, key))


def _read(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=True) as saved:
        return {k: saved[k] for k in saved.files}


def save_part(work_dir: str, key: int, part: dict[str, np.ndarray]) -> None:
    with atomic_path(_part(work_dir, key)) as tmp:
        np.savez(tmp, **part)
