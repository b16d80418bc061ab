"""What a catalog's columns mean and where it came from, written into its FITS or CSV header.

FITS: one binary-table HDU named CATALOG with TUNITn (K, dex, deg; none for flags and counts) and
TCOMMn (a description) for every column, and header keywords for the provenance: package and
TensorFlow versions, creation date, the model's name and content hash, and whatever the catalog's
``table.meta`` holds (for example the sigma kind, SIGMA, and its calibration).
CSV: the same, as an ECSV header (``#`` lines of YAML) above plain comma-separated rows; read it
with ``astropy.table.Table.read(path, format="ascii.ecsv")`` (units and metadata come back) or
``pandas.read_csv(path, comment="#")``.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .errors import ApnetError
from .files import atomic_path, content_hash

EXTNAME = "CATALOG"
#: Unit and what each of Teff, log g and [Fe/H] is.
_PARAMETERS = {"TEFF": ("K", "effective temperature"),
               "LOGG": ("dex", "surface gravity log10(g / cm s^-2)"),
               "FE_H": ("dex", "metallicity [Fe/H]")}
#: Comments of the provenance keywords.
_KEY_COMMENTS = {
    "CREATOR": "software that wrote this catalog", "APNETVER": "apnet-tf version",
    "TFVER": "TensorFlow version", "DATE": "UTC creation time of this file",
    "MODEL": "model: run folder or file name", "MODELSHA": "sha256 of the model's file(s)",
    "TARGETS": "predicted parameters, in order", "MC": "Monte Carlo realizations per star",
    "SIGMA": "what the *_ERR columns are", "SIGCAL": "how the sigmas were calibrated",
    "CALMC": "realizations the calibration was fitted with", "MCSEED": "Monte Carlo seed",
}


def column_info() -> dict[str, tuple[str, str]]:
    """{column: (unit, description)} for every column a catalog can hold; unit "" for none."""
    from .catalog_flags import BAD_RANGE_MARGIN, LOW_SNR, TEFF_EDGE_K

    info = {"APOGEE_ID": ("", "APOGEE star identifier (2MASS designation)"),
            "RA": ("deg", "right ascension (J2000), from the apStar header"),
            "DEC": ("deg", "declination (J2000), from the apStar header"),
            "SNR": ("", "signal-to-noise ratio of the spectrum, from the apStar header")}
    for name, (unit, what) in _PARAMETERS.items():
        info[name] = (unit, f"{what}: Monte Carlo mean (plain prediction if MC=0)")
        info[f"{name}_ERR"] = (unit, f"1-sigma uncertainty of {name}; kind: keyword SIGMA")
        for p in ("16", "50", "84"):
            info[f"{name}_P{p}"] = (unit, f"{p}th percentile of the Monte Carlo {name}")
        info[f"{name}_LABEL"] = (unit, f"training label of {name}; NaN where none")
    info.update({
        "YSO_CANDIDATE": ("", "1: (Teff, log g) in the paper's 4.1 YSO triangle"),
        "AGE_BIN": ("", "age of a YSO candidate from log g (paper 4.2); empty for others"),
        "TEFF_EDGE": ("", f"1: Teff above {TEFF_EDGE_K:.0f} K, the training grid's edge"),
        "LOW_SNR": ("", f"1: SNR below {LOW_SNR:g}; uncertainties less reliable"),
        "BAD": ("", f"1: not finite, or over {BAD_RANGE_MARGIN:.0%} of the label range outside "
                    "it"),
        "SPLIT": ("", "record split: train, dev, test or unlabeled"),
        "CATEGORY": ("", "label source: payne, mstar, yso, ... (make-records)"),
        "FILE": ("", "apStar file or TFRecord shard the spectrum was read from"),
        "TELESCOPE": ("", "telescope of the input table's row (infer --table)"),
        "FIELD": ("", "APOGEE field of the input table's row (infer --table)"),
    })
    return info


def model_identity(path: str) -> dict[str, str]:
    """MODEL (the run folder's or file's name, not its absolute path; a SavedModel version
    folder keeps its parent, ``apogee_net/3``) and MODELSHA (``files.content_hash``)."""
    parts = os.path.normpath(os.path.abspath(path)).split(os.sep)
    name = "/".join(parts[-2:]) if parts[-1].isdigit() else parts[-1]
    return {"MODEL": name, "MODELSHA": content_hash(path)}


def provenance(meta: dict) -> dict:
    """Header keywords: software versions and date, then the catalog's own ``meta``."""
    from . import __version__

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
    out.meta = provenance(table.meta)
    return out


def check_catalog_name(path: str) -> None:
    """Raise ApnetError unless ``path`` ends in .csv, .fits or .fit (checked before a job)."""
    if not path.lower().endswith((".fits", ".fit", ".csv")):
        raise ApnetError(f"{path}: catalog must end in .csv or .fits")


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
        else:
            fits.HDUList([fits.PrimaryHDU(), catalog_hdu(out)]).writeto(tmp, overwrite=True)
    return path


def catalog_hdu(out: Table) -> fits.BinTableHDU:
    """The CATALOG HDU of a ``described`` table. Units and descriptions go into TUNITn and
    TCOMMn by hand: astropy would refuse 'dex' (no FITS unit) and hide descriptions in YAML."""
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
        if col.unit is not None:
            hdu.header.set(f"TUNIT{i}", str(col.unit), after=f"TFORM{i}")
        if col.description:
            hdu.header.set(f"TCOMM{i}", col.description, after=f"TFORM{i}")
    for key, value in out.meta.items():
        name = key if len(key) <= 8 and key.replace("_", "").isalnum() else f"HIERARCH {key}"
        hdu.header.append(_card(name, value, _KEY_COMMENTS.get(key, "")), end=True)
    return hdu


def _card(name: str, value, comment: str) -> fits.Card:
    """A header card, with its comment only where it fits (astropy would warn and cut it)."""
    bare = fits.Card(name, value)
    used = len(bare.image.rstrip())
    return fits.Card(name, value, comment) if comment and used <= 80 - 3 - len(comment) else bare
