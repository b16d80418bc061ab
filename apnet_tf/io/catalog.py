"""What a catalog's columns mean and where it came from, written into its FITS or CSV header.

FITS: one binary-table HDU named CATALOG with TUNITn (K, deg; none for flags and counts) and
TCOMMn (a description; "[dex] ..." for the dex columns, since FITS has no such unit) for every
column, both from ``io.catalog_schema``, and header keywords for the provenance: package and
TensorFlow versions, creation date, the model's name and content hash, and whatever the
catalog's ``table.meta`` holds (for example the sigma kind, SIGMA, and its calibration), and
the counts of its flags (``catalog_counts``: NYSO, NBAD, NFLAGnn ...); a catalog with
APNET_FLAG carries what each bit tests, one COMMENT card per bit
(``catalog_flags.flag_comments``).
CSV: the same (the bits' tests as the ``comments`` list), as an ECSV header (``#`` lines of
YAML) above plain comma-separated rows; read it with ``astropy.table.Table.read(path,
format="ascii.ecsv")`` (units and metadata come back) or ``pandas.read_csv(path,
comment="#")``. ECSV (.ecsv): the same with spaces between the values,
which ``Table.read(path)`` recognises by its name.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import Table

from apnet_tf import __version__
from apnet_tf.constants import LABEL_COLUMNS
from apnet_tf.errors import ApnetError
from apnet_tf.io.catalog_counts import COUNT_COMMENTS, catalog_counts, count_keywords
from apnet_tf.io.catalog_flags import flag_comments
from apnet_tf.io.catalog_schema import column_info
from apnet_tf.io.files import atomic_path, content_hash

__all__ = [
    "EXTNAME", "COMMENTS", "CATALOG_SUFFIXES", "model_identity", "provenance", "described",
    "check_catalog_name", "write_catalog", "catalog_hdu", "fits_unit", "catalog_arrays"
]

EXTNAME = "CATALOG"
#: The ``table.meta`` key of the header's comment lines (astropy's name: FITS COMMENT cards and
#: an ECSV ``comments`` list both read back into it).
COMMENTS = "comments"
#: The catalog formats, by file name: FITS, ECSV with commas (.csv) or with spaces (.ecsv).
CATALOG_SUFFIXES = (".fits", ".fit", ".csv", ".ecsv")
#: Comments of the provenance keywords.
_KEY_COMMENTS = {
    "CREATOR": "software that wrote this catalog", "APNETVER": "apnet-tf version",
    "TFVER": "TensorFlow version", "DATE": "UTC creation time of this file",
    "MODEL": "model: run folder or file name",
    "MODELSHA": "sha256 of the model's file(s) as loaded",
    "TARGETS": "predicted parameters, in order", "MC": "Monte Carlo draws per star",
    "SIGMA": "what the *_ERR columns are", "SIGCAL": "how the sigmas were calibrated",
    "CALMC": "Monte Carlo draws the calibration was fitted with", "MCSEED": "Monte Carlo seed",
    "PRECISN": "compute precision of the network's forward pass",
    "MCVALUE": "TEFF.. are the MC mean, median or single pass",
    **COUNT_COMMENTS,
    "SPIKES": "spikes (N_SPIKES) masked before the network?",
    "NOVREF": "stars NOVELTY is measured against",
}


def model_identity(path: str, sha256: str = "") -> dict[str, str]:
    """MODEL (the run folder's or file's name, not its absolute path; a SavedModel version
    folder keeps its parent, ``apogee_net/3``) and MODELSHA: ``sha256``, the hash of the bytes
    the model was loaded from (``loading.load_model``), or ``files.content_hash`` of ``path``."""
    parts = os.path.normpath(os.path.abspath(path)).split(os.sep)
    name = "/".join(parts[-2:]) if parts[-1].isdigit() else parts[-1]
    return {"MODEL": name, "MODELSHA": sha256 or content_hash(path)}


def provenance(meta: dict) -> dict:
    """Header keywords: software versions and date, then the catalog's own ``meta``."""
    try:
        tf_version = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a dependency
        tf_version = "unknown"
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    out = {"CREATOR": f"apnet-tf {__version__}", "APNETVER": __version__, "TFVER": tf_version,
           "DATE": now[:19]}
    for key, value in meta.items():
        out[str(key).upper()] = _header_value(value)
    return out


def _header_value(value):
    """A value a FITS card can hold: lists joined by commas, dicts as JSON, None as 'none'."""
    if value is None:
        return "none"
    if isinstance(value, (bool, int, float, str, np.integer, np.floating, np.bool_)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, (list, tuple, np.ndarray)):
        return ",".join(str(_header_value(v)) for v in value)
    return json.dumps(value, default=str)


def described(table: Table) -> Table:
    """A copy of ``table`` with text columns as str and each column's unit and description."""
    info = column_info()
    out = table.copy(copy_data=False)
    for name in out.colnames:
        col = out[name]
        if col.dtype == object:
            out[name] = [str(v) for v in col]
            col = out[name]
        unit, text = info.get(name, (str(col.unit or ""), col.description or ""))
        col.unit = unit or None
        col.description = text or None
    out.meta = provenance({k: v for k, v in table.meta.items() if k != COMMENTS})
    if "APNET_FLAG" in out.colnames:  # what the flags say, counted as infer's closing line says
        out.meta.update(count_keywords(catalog_counts(out)))
        out.meta[COMMENTS] = flag_comments()
    return out


def check_catalog_name(path: str) -> None:
    """Raise ApnetError unless ``path`` ends in .csv, .ecsv, .fits or .fit (checked before a
    job)."""
    if not path.lower().endswith(CATALOG_SUFFIXES):
        raise ApnetError(f"{path}: catalog must end in .csv, .ecsv or .fits")
    if os.path.isdir(path):
        raise ApnetError(f"{path}: a folder; --out names the catalog file to write")


def write_catalog(table: Table, path: str) -> str:
    """Write a catalog atomically: CSV (with an ECSV header), or FITS when the name ends in
    .fits/.fit; both carry units, column descriptions and provenance (see the module's doc)."""
    lower = path.lower()
    check_catalog_name(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    out = described(table)
    with atomic_path(path) as tmp:
        if lower.endswith(".csv"):
            out.write(tmp, format="ascii.ecsv", delimiter=",", overwrite=True)
        elif lower.endswith(".ecsv"):
            out.write(tmp, format="ascii.ecsv", overwrite=True)
        else:
            fits.HDUList([fits.PrimaryHDU(), catalog_hdu(out)]).writeto(tmp, overwrite=True)
    return path


def catalog_hdu(out: Table) -> fits.BinTableHDU:
    """The CATALOG HDU of a ``described`` table. Units and descriptions go into TUNITn and
    TCOMMn by hand (astropy would hide descriptions in YAML). A unit that the FITS standard
    lacks ('dex') heads the column's TCOMMn in brackets instead ("[dex] surface gravity ..."),
    so that ``Table.read`` of the file warns about nothing while TOPCAT still shows it."""
    bare = out.copy(copy_data=False)
    bare.meta = {}
    for col in bare.itercols():
        col.unit, col.description = None, None
    for name in bare.colnames:  # FITS text is bytes: UTF-8 keeps any path; astropy decodes it
        if bare[name].dtype.kind == "U":
            bare[name] = np.char.encode(np.asarray(bare[name]), "utf-8", "surrogateescape")
    hdu = fits.table_to_hdu(bare)
    hdu.name = EXTNAME
    for i, name in enumerate(out.colnames, start=1):
        col = out[name]
        unit, text = (str(col.unit) if col.unit is not None else ""), col.description or ""
        if unit and not fits_unit(unit):
            unit, text = "", f"[{unit}] {text}".strip()
        if unit:
            hdu.header.set(f"TUNIT{i}", unit, after=f"TFORM{i}")
        if text:
            hdu.header.set(f"TCOMM{i}", text, after=f"TFORM{i}")
    for key, value in out.meta.items():
        if key == COMMENTS:
            continue
        name = key if len(key) <= 8 and key.replace("_", "").isalnum() else f"HIERARCH {key}"
        hdu.header.append(_card(name, value, _KEY_COMMENTS.get(key, "")), end=True)
    for text in out.meta.get(COMMENTS, ()):
        hdu.header.add_comment(text)
    return hdu


def fits_unit(unit: str) -> bool:
    """Whether ``unit`` is a unit of the FITS standard, as astropy's FITS reader parses it."""
    try:
        u.Unit(unit, format="fits")
    except ValueError:
        return False
    return True


def _card(name: str, value, comment: str) -> fits.Card:
    """A header card, with its comment only where it fits (astropy would warn and cut it)."""
    bare = fits.Card(name, value)
    used = len(bare.image.rstrip())
    return fits.Card(name, value, comment) if comment and used <= 80 - 3 - len(comment) else bare


def catalog_arrays(table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, pred, sigma), each (N, 3) in teff, logg, fe_h order, from a catalog of labelled
    records (``inference.predict_catalog``)."""
    labels = np.stack([np.asarray(table[f"{c}_LABEL"], float) for c in LABEL_COLUMNS], axis=1)
    pred = np.stack([np.asarray(table[c], float) for c in LABEL_COLUMNS], axis=1)
    sigma = np.stack([np.asarray(table[f"{c}_ERR"], float) for c in LABEL_COLUMNS], axis=1)
    return labels, pred, sigma
