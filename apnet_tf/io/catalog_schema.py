"""The catalog's columns, named once: name, unit, description and source of each.

Everything that knows a catalog column derives from ``SCHEMA``: the catalog builder
(``inference.predict``) checks the columns it makes against it and takes their units from it,
and the writer (``io.catalog``) puts the units and descriptions into FITS TUNITn/TCOMMn cards and
the ECSV header. Every column a catalog holds is here, the input table's (``infer --table``)
included.
"""

from __future__ import annotations

import dataclasses

from apnet_tf.constants import LABEL_COLUMNS, TARGET_UNITS
from apnet_tf.io.catalog_flags import FLAG_BITS, LOW_SNR, NOVEL_PERCENTILE, TEFF_EDGE_K
from apnet_tf.io.photometry import describe_bits

__all__ = ["Column", "RV_COLUMN", "SCHEMA", "SOURCES", "column_info", "schema_column",
           "schema_position"]

#: Where a column's values come from.
SOURCES = {
    "header": "the spectrum file: an apStar file's primary header; a BOSS spec file's name, "
              "HDU 2 (SPALL) or primary header",
    "model": "the network (Monte Carlo summary when MC > 0)",
    "flags": "a rule on the spectrum or the predictions (io.catalog_flags)",
    "records": "the record folder (make-records)",
    "input": "the input table's row (infer --table) or the reader",
}


@dataclasses.dataclass(frozen=True)
class Column:
    """One catalog column: its name, unit ("" for none), description and source (a key of
    ``SOURCES``)."""

    name: str
    unit: str
    description: str
    source: str


#: The radial velocity column of networks that predict one (BOSS Net); with RV_ERR and the
#: percentiles like the other labels, absent from the catalogs of other networks.
RV_COLUMN = "RV"
_RV = "radial velocity in the frame of the spectrum's wavelengths (BOSS: barycentric)"
#: What each of Teff, log g and [Fe/H] is, in LABEL_COLUMNS order.
_PARAMETERS = ("effective temperature", "surface gravity log10(g / cm s^-2)",
               "metallicity [Fe/H]")


def _schema() -> tuple[Column, ...]:
    """The columns in the order a catalog holds them (those a catalog has)."""
    params = list(zip(LABEL_COLUMNS, TARGET_UNITS, _PARAMETERS))
    cols = [Column("APOGEE_ID", "", "APOGEE star identifier (2MASS designation)", "header"),
            Column("OBJECT_ID", "", "BOSS spectrum's object: its SDSS-V CATALOGID, else its "
                   "SDSS-IV photometric OBJID, else its SPEC_ID", "header"),
            Column("SPEC_ID", "", "BOSS spectrum: PLATE-MJD-FIBER (SDSS-IV) or "
                   "FIELD-MJD-CATALOGID (SDSS-V), as in its spec file's name", "header"),
            Column("RA", "deg", "right ascension (J2000), from the apStar header or the BOSS "
                   "spec file's PLUG_RA", "header"),
            Column("DEC", "deg", "declination (J2000), from the apStar header or the BOSS "
                   "spec file's PLUG_DEC", "header")]
    for name, unit, what in params:
        cols += [Column(name, unit, f"{what}: the Monte Carlo mean or median, or the single "
                        "pass without Monte Carlo (header keyword MCVALUE says which)", "model"),
                 Column(f"{name}_ERR", unit,
                        f"1-sigma uncertainty of {name}; kind: keyword SIGMA", "model")]
    cols += [Column(RV_COLUMN, "km/s", f"{_RV}, from networks that predict it (BOSS Net): as "
                    "TEFF (header keyword MCVALUE)", "model"),
             Column(f"{RV_COLUMN}_ERR", "km/s", f"1-sigma uncertainty of {RV_COLUMN}; kind: "
                    "keyword SIGMA", "model")]
    cols.append(Column("SNR", "", "signal-to-noise ratio of the spectrum, from the apStar header "
                       "or the BOSS spec file's SN_MEDIAN_ALL", "header"))
    for p in ("16", "50", "84"):
        cols += [Column(f"{name}_P{p}", unit, f"{p}th percentile of the Monte Carlo {name}",
                        "model") for name, unit, _ in params + [(RV_COLUMN, "km/s", _RV)]]
    cols += [
        Column("YSO_CANDIDATE", "", "1: (Teff, log g) in the paper's 4.1 YSO triangle", "flags"),
        Column("AGE_BIN", "", "age of a YSO candidate from log g (paper 4.2); empty for others",
               "flags"),
        Column("TEFF_EDGE", "", f"1: Teff above {TEFF_EDGE_K:.0f} K, the training grid's edge",
               "flags"),
        Column("LOW_SNR", "", f"1: SNR below {LOW_SNR:g}; uncertainties less reliable", "flags"),
        Column("APNET_FLAG", "", "quality bitmask: " + ", ".join(
            f"{b.bit} {b.name}" for b in FLAG_BITS) + " (the sum of 2**bit over its bits; "
               "what each tests: the header's comments and the guide's catalog page)", "flags"),
        Column("BAD", "", "1: values unusable, some APNET_FLAG bit marked BAD is set: " + ", ".join(
            b.name for b in FLAG_BITS if b.bad), "flags"),
        Column("N_SPIKES", "", "single-pixel outliers masked before the network (APNET_FLAG "
               "bit SPIKES)", "flags"),
        Column("NOVELTY", "", "distance of the spectrum from the training stars in units of "
               f"their {NOVEL_PERCENTILE:g}th percentile (> 1: APNET_FLAG bit NOVEL); NaN: the "
               "model has no novelty reference (keyword NOVREF)", "flags"),
    ]
    cols += [Column(f"{name}_LABEL", unit, f"training label of {name}; NaN where none",
                    "records") for name, unit, _ in params]
    cols += [
        Column("SPLIT", "", "record split: train, dev, test or unlabeled", "records"),
        Column("CATEGORY", "", "label source: payne, mstar, yso, ... (make-records)", "records"),
        Column("TELESCOPE", "", "telescope of the input table's row (infer --table)", "input"),
        Column("FIELD", "", "APOGEE field of the input table's row (infer --table)", "input"),
        Column("PHOT_FILLED", "", "APOGEE Net II photometry bands filled in (missing, "
               f"or >= 98): the sum of {describe_bits()}", "input"),
        Column("FILE", "", "apStar file or TFRecord shard the spectrum was read from", "input"),
    ]
    return tuple(cols)


#: Every column a catalog can hold, in catalog order.
SCHEMA = _schema()
_BY_NAME = {c.name: c for c in SCHEMA}
_POSITION = {c.name: i for i, c in enumerate(SCHEMA)}


def schema_column(name: str) -> Column | None:
    """The schema's entry for a column name; None for a column copied from an input table."""
    return _BY_NAME.get(name)


def schema_position(name: str) -> int:
    """Where column ``name`` stands in a catalog (its index in ``SCHEMA``)."""
    return _POSITION[name]


def column_info() -> dict[str, tuple[str, str]]:
    """{column: (unit, description)} for every column a catalog can hold; unit "" for none."""
    return {c.name: (c.unit, c.description) for c in SCHEMA}
