"""Reading one ``Unit`` of a plan (``planning``) into a ``Batch``: apStar FITS files, BOSS
spec files, or a record shard. Each kind of unit has one reader in ``UNIT_READERS``; a reader
for another file kind is a function ``(unit, mask_bits) -> (batch or None, failure lines)``
added there under the kind that ``planning.plan_units`` gives its units.

Importing this module does not import TensorFlow (only reading a record shard does), so reader
processes (``pool``) and Ray read tasks start at once.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Sequence

import numpy as np

from apnet_tf.data.planning import Unit
from apnet_tf.errors import ApnetError
from apnet_tf.io.boss import read_boss_batch
from apnet_tf.io.photometry import PHOT_COLUMNS
from apnet_tf.io.spectra import DEFAULT_MASK_BITS, read_apstar

__all__ = [
    "Batch", "read_fits_unit", "read_boss_unit", "read_record_unit", "read_record_labels",
    "UNIT_READERS", "read_unit", "read_pickled_unit",
]


@dataclasses.dataclass
class Batch:
    """A batch of spectra and what the catalog needs of them. Arrays have B rows.

    apStar files and records: flux, err, bad (B, 8575), flux and err cleaned by the reader
    (non-finite flux 0, error 1e10), with the file's values in raw_flux, raw_err where a row
    held NaN or infinities. BOSS spec files: flux (NaN kept), err (``boss_grid.ivar_to_error``)
    and bad on the native pixels, (B, L), padded after each row's ``n_pixels`` with NaN (bad
    True), and their wavelengths. ``model.network_inputs`` turns a batch into what a network
    takes, by that network's rules.
    """

    apogee_id: np.ndarray  # the star's identifier, in the catalog column ``id_column``
    flux: np.ndarray
    err: np.ndarray
    bad: np.ndarray  # bool
    snr: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    source: np.ndarray  # the apStar file, or the record shard, each row was read from
    labels: np.ndarray | None = None  # (B, 3) when the input is labelled records
    split: np.ndarray | None = None
    category: np.ndarray | None = None
    extra: dict[str, np.ndarray] | None = None  # columns from an input table (TELESCOPE, ...)
    photometry: np.ndarray | None = None  # (B, 7) raw photometry: an input table's, records'
    raw_flux: np.ndarray | None = None  # (B, 8575) the files' flux, NaN kept (see above)
    raw_err: np.ndarray | None = None
    wavelength: np.ndarray | None = None  # (B, L) BOSS: vacuum Angstrom, NaN padding
    n_pixels: np.ndarray | None = None  # (B,) BOSS: each row's native pixels
    id_column: str = "APOGEE_ID"  # APOGEE_ID, or OBJECT_ID for BOSS spectra


def read_fits_unit(unit: Unit, mask_bits: Sequence[int] = DEFAULT_MASK_BITS,
                   ) -> tuple[Batch | None, list[str]]:
    """Read a FITS unit: its batch (None if no file could be read) and one line per bad file."""
    specs, rows, failures = [], [], []
    for i, path in enumerate(unit.paths):
        try:
            specs.append(read_apstar(path, mask_bits))
            rows.append(i)
        except ApnetError as exc:
            failures.append(str(exc))
    if not specs:
        return None, failures
    extra = {k: np.array([v[i] for i in rows], dtype=object) for k, v in unit.extra}
    phot = _table_photometry(extra, len(rows))
    ids = extra.pop("APOGEE_ID", None)  # a table's ID wins over the header's
    ids = np.array([s.apogee_id if ids is None or not ids[j] else ids[j]
                    for j, s in enumerate(specs)], dtype=object)
    return Batch(ids, np.stack([s.flux for s in specs]), np.stack([s.err for s in specs]),
                 np.stack([s.bad for s in specs]), np.array([s.snr for s in specs]),
                 np.array([s.ra for s in specs]), np.array([s.dec for s in specs]),
                 np.array([s.path for s in specs], dtype=object),
                 extra=extra or None, photometry=phot,
                 raw_flux=_raw_rows(specs, "flux"), raw_err=_raw_rows(specs, "err")), failures


def _raw_rows(specs, name: str) -> np.ndarray | None:
    """The files' rows of ``name`` (``Spectrum.raw_flux`` / ``raw_err``, else the clean ones),
    (B, 8575); None when no file held a NaN or an infinity there."""
    raw = [getattr(s, f"raw_{name}") for s in specs]
    if all(r is None for r in raw):
        return None
    return np.stack([getattr(s, name) if r is None else r for s, r in zip(specs, raw)])


def read_boss_unit(unit: Unit, mask_bits: Sequence[int] = DEFAULT_MASK_BITS,
                   ) -> tuple[Batch | None, list[str]]:
    """Read a unit of BOSS spec files (``io.boss``) on their native pixels: its batch (None if
    no file could be read) and one line per bad file. ``mask_bits`` are apStar PIXMASK bits,
    which BOSS files do not have: BOSS Net reads no pixel mask."""
    stack, failures = read_boss_batch(unit.paths, "drop")  # NaN flux kept: a network's rule
    if stack is None:
        return None, failures
    specs = stack.spectra
    extra = {k: np.array([v[unit.paths.index(s.path)] for s in specs], dtype=object)
             for k, v in unit.extra}
    extra["SPEC_ID"] = np.array([s.spec_id for s in specs], dtype=object)
    return Batch(np.array([s.object_id for s in specs], dtype=object), stack.native_flux,
                 stack.err, stack.bad, np.array([s.snr for s in specs]),
                 np.array([s.ra for s in specs]), np.array([s.dec for s in specs]),
                 np.array([s.path for s in specs], dtype=object), extra=extra,
                 wavelength=stack.wavelength, n_pixels=stack.n_pixels,
                 id_column="OBJECT_ID"), failures


def _table_photometry(extra: dict, n: int) -> np.ndarray | None:
    """The (n, 7) photometry columns of an input table, taken out of ``extra`` (NaN where a
    row has none); None when the table has none."""
    if PHOT_COLUMNS[0] not in extra:
        return None
    cols = [extra.pop(c) for c in PHOT_COLUMNS]
    return np.array([[np.nan if v == "" else float(v) for v in col] for col in cols],
                    dtype=np.float64).T.reshape(n, len(PHOT_COLUMNS))


def read_record_unit(unit: Unit) -> tuple[Batch | None, list[str]]:
    """Read a record shard (TensorFlow) as one batch; with ``labeled_only``, labelled stars;
    with the unit's ``photometry``, the stored photometry too."""
    import tensorflow as tf

    from apnet_tf.data.record_counts import keep_mask
    from apnet_tf.data.record_schema import parse_examples

    ds = tf.data.TFRecordDataset(list(unit.paths), compression_type=unit.compression)
    parts, start = [], 0
    rows = None if unit.rows is None else np.asarray(unit.rows, np.int64)
    for serialized in ds.batch(1024):
        if rows is not None:  # only the rows asked for have their pixels decoded
            n = int(serialized.shape[0])
            picked, start = rows[(rows >= start) & (rows < start + n)] - start, start + n
            if not picked.size:
                continue
            serialized = tf.gather(serialized, picked)
        ex = parse_examples(serialized, ("flux", "err", "bad"))
        if unit.labeled_only:
            keep = keep_mask(ex, None, None, 0, True)
            ex = {k: tf.boolean_mask(v, keep) for k, v in ex.items()}
        parts.append({k: v.numpy() for k, v in ex.items()})
    if not parts or not sum(len(p["snr"]) for p in parts):
        return None, []
    ex = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    n = len(ex["snr"])
    text = {k: ex[k].astype(str).astype(object) for k in ("apogee_id", "split", "category")}
    return Batch(text["apogee_id"], ex["flux"], ex["err"], ex["bad"], ex["snr"], ex["ra"],
                 ex["dec"], np.full(n, unit.paths[0], dtype=object), ex["labels"], text["split"],
                 text["category"],
                 photometry=ex["photometry"].astype(np.float64) if unit.photometry else None), []


def read_record_labels(path: str, compression: str = "") -> dict[str, np.ndarray]:
    """What a record shard holds besides its pixels, which are skipped (TensorFlow): labels
    (N, 3) (NaN where missing), snr (N,) and labelled (N,) bool (some label), in the shard's
    order."""
    import tensorflow as tf

    from apnet_tf.data.record_schema import parse_examples

    parts = [parse_examples(s, ()) for s in
             tf.data.TFRecordDataset([path], compression_type=compression).batch(1024)]
    labels = np.concatenate([p["labels"].numpy() for p in parts] or [np.zeros((0, 3))])
    snr = np.concatenate([p["snr"].numpy() for p in parts] or [np.zeros(0)])
    mask = np.concatenate([p["label_mask"].numpy() for p in parts] or [np.zeros((0, 3), bool)])
    return {"labels": labels.astype(float), "snr": snr.astype(float), "labelled": mask.any(1)}


def _read_records(unit: Unit, mask_bits: Sequence[int]) -> tuple[Batch | None, list[str]]:
    """``read_record_unit``: a shard's bad pixels were marked with its mask bits when it was
    written."""
    return read_record_unit(unit)


#: The reader of each kind of unit (``Unit.kind``): (unit, mask_bits) -> (batch or None, one
#: line per unreadable file).
UNIT_READERS = {"fits": read_fits_unit, "boss": read_boss_unit, "records": _read_records}


def read_unit(unit: Unit, mask_bits: Sequence[int] = DEFAULT_MASK_BITS,
              ) -> tuple[Batch | None, list[str]]:
    """Read a unit of any kind with its reader (``UNIT_READERS``); ``mask_bits``: the apStar
    PIXMASK bits that mark a pixel bad in FITS files."""
    return UNIT_READERS[unit.kind](unit, mask_bits)


def read_pickled_unit(row: dict) -> dict:
    """A read task of the Ray engine (``inference.ray_engine``): {"key", "unit": a pickled
    ``Unit``} -> {"key", "batch": the pickled ``read_unit`` result, (batch, failures)}.

    It lives here because this module does not import TensorFlow: a Ray worker process that
    unpickles the task imports only this, and starts reading at once instead of spending
    seconds of a CPU that the model needs on importing TensorFlow first.
    """
    unit = pickle.loads(row["unit"])
    return {"key": row["key"], "batch": pickle.dumps(read_unit(unit), protocol=5)}
