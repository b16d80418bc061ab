"""The demo's build cache: what a re-run of ``workflows.run_demo`` may reuse.

Each product of the demo (its catalog, its evaluation) is reused only when its files are all
there and the fingerprint of its inputs (``demo_fingerprint``: the run folder, the records, the
Monte Carlo draws, the seed, the apnet-tf version) is the one recorded in ``DEMO_STATE``. An
entry is written once its product is complete and dropped before the product is made again, so
a killed run never has a half-made product reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable

from apnet_tf import __version__
from apnet_tf.data.manifest import MANIFEST
from apnet_tf.io.files import content_hash, read_json, write_json

__all__ = ["DEMO_STATE", "demo_fingerprint", "reuse_or_make"]

#: The demo's record, in its out_dir, of the inputs of each finished product: product ->
#: ``demo_fingerprint``.
DEMO_STATE = "demo_inputs.json"


def demo_fingerprint(run_dir: str, records_dir: str, mc: int, seed: int) -> str:
    """sha256 (hex) of what the demo's catalog and evaluation are made from: the run folder's
    content (``content_hash``: the model, calibration.json, ...), the records' manifest (less
    its creation time) with each shard's input fingerprint, ``mc``, ``seed`` and the apnet-tf
    version."""
    manifest = dict(read_json(os.path.join(records_dir, MANIFEST)) or {})
    manifest.pop("created", None)
    shards = sorted(name for names in manifest.get("shards", {}).values() for name in names)
    sidecars = {name: (read_json(os.path.join(records_dir, name + ".json")) or {})
                .get("fingerprint") for name in shards}
    inputs = {"run": content_hash(run_dir), "manifest": manifest, "shards": sidecars,
              "mc": int(mc), "seed": int(seed), "apnet_tf": __version__}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def _set_state(out_dir: str, product: str, fingerprint: str | None) -> None:
    """Record ``product``'s input fingerprint in ``DEMO_STATE``, or drop it (None)."""
    path = os.path.join(out_dir, DEMO_STATE)
    state = read_json(path) or {}
    state.pop(product, None)
    if fingerprint is not None:
        state[product] = fingerprint
    write_json(path, state)


def reuse_or_make(out_dir: str, product: str, fingerprint: str, files: list[str],
                  reused: list[str], make: Callable[[], object], load: Callable[[], object]):
    """``load()`` a product whose recorded fingerprint is ``fingerprint`` and whose ``files``
    all exist (and append its name to ``reused``); else drop its record, ``make()`` it and
    record ``fingerprint`` once it is complete. Returns what load or make returned."""
    state = read_json(os.path.join(out_dir, DEMO_STATE)) or {}
    if state.get(product) == fingerprint and all(os.path.exists(f) for f in files):
        reused.append(product)
        return load()
    _set_state(out_dir, product, None)
    made = make()
    _set_state(out_dir, product, fingerprint)
    return made
