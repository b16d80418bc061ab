"""Planning the input of a survey job: the inputs (apStar files, folders, globs, record folders,
or an allStar table) become a numbered list of units (``Unit``).

A unit is up to ``batch_size`` FITS files (apStar files, or BOSS spec files for a network of
BOSS spectra), or one record shard. Units are numbered once, in a
fixed order, so the local engine and the Ray engine make the same batches and a resumed job
finds its finished ones again; the random draws of a unit come from (seed, unit key). A unit's
``kind`` names the reader that reads it (``readers.UNIT_READERS``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping, Sequence

from apnet_tf.data.manifest import (
    count_records,
    read_manifest,
    records_hold_photometry,
    shard_paths,
)
from apnet_tf.io.folders import marker
from apnet_tf.io.spectra import expand_paths
from apnet_tf.io.survey_table import Listing

__all__ = ["FITS_KINDS", "Unit", "Plan", "is_records", "plan_units"]

#: The kind of unit (``readers.UNIT_READERS``) of FITS files, by the instrument of the network.
FITS_KINDS = {"apogee": "fits", "boss": "boss"}


@dataclasses.dataclass(frozen=True)
class Unit:
    """One batch of work: apStar files (kind "fits"), BOSS spec files (kind "boss") or one
    record shard (kind "records")."""

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
    failures: list[str]  # input paths that name no file, one line each
    total: int  # spectra the units hold
    notes: list[str] = dataclasses.field(default_factory=list)  # e.g. files given twice

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
               rows: Mapping[str, Sequence[int]] | None = None,
               instrument: str = "apogee") -> Plan:
    """Number the work: record shards first (one unit each), then the files of ``listing`` in
    its order, then the other FITS files in sorted order. ``instrument``: "apogee" (FITS files
    are apStar files, units of kind "fits") or "boss" (BOSS spec files, kind "boss"), the
    instrument of the network that reads them.

    ``rows``: read only the record shards it names (paths as ``manifest.shard_paths`` gives
    them), and of each only the records at these positions (0-based, in the shard's order; with
    a ``split_filter``, labelled ones); None reads every shard whole.

    A path that matches nothing becomes a failure line. A listing's rows with no file are not
    part of the plan: they are the listing's (``Listing.missing``), and the job says them. A
    file reached through two paths is planned once, with a note.
    """
    failures: list[str] = []
    notes: list[str] = []
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
    paths = expand_paths(fits_inputs, missing=failures, notes=notes) if fits_inputs else []
    extra: dict[str, list[str]] = {}
    if listing is not None:
        extra = {k: list(v) + [""] * len(paths) for k, v in listing.columns.items()}
        paths = list(listing.paths) + paths
    for i in range(0, len(paths), batch_size):
        cols = tuple((k, tuple(v[i:i + batch_size])) for k, v in extra.items())
        units.append(Unit(len(units), FITS_KINDS[instrument], tuple(paths[i:i + batch_size]),
                          cols))
    return Plan(units, failures, total + len(paths), notes)
