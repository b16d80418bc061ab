"""A two-input job's photometry: each star's row of the ``--photometry`` table, and the checks
that the table is the job's (``io.photometry`` joins on APOGEE_ID without case and spaces).

A table that holds none of the job's stars stops it: before any work where the stars' IDs are
known from the plan (``check_plan``: an input table's APOGEE_ID, or apStar file names that
their headers bear out), else once the catalog is assembled, before it is written
(``inference.job``). Stars without photometry are counted in the catalog header and the
closing line (``io.catalog_counts``).
"""

from __future__ import annotations

from apnet_tf.io.photometry import check_matches
from apnet_tf.io.spectra import id_from_name, read_apogee_id

__all__ = ["SAMPLE", "check_plan"]

#: How many files' headers must bear out their names before a plan's IDs are taken from names.
SAMPLE = 16


def _plan_ids(plan) -> list[str] | None:
    """The APOGEE_IDs of a plan's stars where they are known without reading the spectra: an
    input table's, or an apStar file name's (``apStar-<release>-<ID>.fits``) when the headers
    of up to ``SAMPLE`` files agree; None otherwise (record shards, other names)."""
    ids, named = [], []
    for unit in plan.units:
        if unit.kind != "fits":
            return None
        listed = dict(unit.extra).get("APOGEE_ID") or ("",) * len(unit.paths)
        for path, given in zip(unit.paths, listed):
            if given:
                ids.append(given)
            elif path.rsplit("/", 1)[-1].startswith("apStar"):
                ids.append(id_from_name(path))
                named.append((path, ids[-1]))
            else:
                return None
    step = max(1, len(named) // SAMPLE)
    for path, name_id in named[::step][:SAMPLE]:
        try:
            if read_apogee_id(path).strip().upper() != name_id.strip().upper():
                return None
        except Exception:  # noqa: BLE001 - an unreadable file is the job's to report
            return None
    return ids


def check_plan(plan, table: dict | None) -> None:
    """Stop a job whose ``--photometry`` table holds none of its stars, before any work,
    where the plan tells the stars' IDs (``_plan_ids``).

    Raises:
        ApnetError: naming the table, its APOGEE_ID column and two IDs of each side.
    """
    if table is None:
        return
    ids = _plan_ids(plan)
    if ids:
        check_matches(table, ids)

