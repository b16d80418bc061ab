"""A batch's catalog part, and the catalog from the parts: what both engines do with a batch once
it is read (``unit_part``), and with the parts once every batch is done
(``catalog_from_parts``).

Each batch goes to the network by the network's own input rules (``model.network_inputs``), is
predicted (a plain pass or the network's Monte Carlo), its sigmas made what the job asked for
(the run's calibration, astra's error model or the raw Monte Carlo spread; ``model.calibration``)
and its stars flagged (``io.catalog_flags``); every column made here is one of
``io.catalog_schema.SCHEMA``.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from apnet_tf.constants import LABEL_COLUMNS, TARGETS
from apnet_tf.errors import ApnetError
from apnet_tf.inference.screening import (
    batch_novelty,
    mask_batch_spikes,
    masks_spikes,
    screening_keywords,
)
from apnet_tf.inference.settings import InferenceSettings
from apnet_tf.io.catalog import model_identity
from apnet_tf.io.catalog_flags import (
    BAD_BITS,
    INPUT_GARBAGE,
    astra_flags,
    flag_value,
    flags,
    input_flags,
    novelty_flags,
    spike_flags,
)
from apnet_tf.io.catalog_schema import RV_COLUMN, schema_column, schema_position
from apnet_tf.io.photometry import PHOT_COLUMNS, filled_bits, lookup, matched
from apnet_tf.model.calibration import sigma_summaries
from apnet_tf.model.network_inputs import network_inputs
from apnet_tf.model.runtime import Runtime

__all__ = ["unit_part", "batch_photometry", "input_bits", "catalog_from_parts", "mc_value"]

#: The catalog's label columns, in the order of a network's outputs (BOSS Net adds RV).
_COLUMNS = LABEL_COLUMNS + (RV_COLUMN,)


def unit_part(model: Runtime, batch, failures: list[str], settings: InferenceSettings,
              key: int) -> dict[str, np.ndarray]:
    """The catalog columns of unit ``key``'s batch (none if no file was readable), and its
    unreadable files under "_failures". Its noise draws come from (``settings.seed``, key)."""
    if batch is not None and model.takes_photometry:
        batch.photometry = batch_photometry(batch, settings.photometry)
    part = {} if batch is None else _predict_part(model, batch, settings, (settings.seed, key))
    part["_failures"] = np.array(failures, dtype=object)
    return part


def batch_photometry(batch, table: dict | None) -> np.ndarray:
    """(B, 7) raw photometry of a batch: a ``--photometry`` table's row for each star in it,
    else the input table's, else NaN (which Net II fills)."""
    n = len(batch.apogee_id)
    phot = (np.full((n, len(PHOT_COLUMNS)), np.nan) if batch.photometry is None
            else np.array(batch.photometry, dtype=np.float64))
    if table is not None:
        found = matched(table, batch.apogee_id)  # IDs compared without case and spaces
        if found.any():
            phot[found] = lookup(table, np.asarray(batch.apogee_id)[found])
    return phot


def input_bits(batch) -> np.ndarray:
    """APNET_FLAG's input bits (``catalog_flags.input_flags``) of each spectrum of a batch, on
    its own pixels (a BOSS batch's rows without their padding)."""
    if batch.n_pixels is None:
        return input_flags(batch.flux, batch.err, batch.bad)
    return np.concatenate([input_flags(batch.flux[k:k + 1, :n], batch.err[k:k + 1, :n],
                                       batch.bad[k:k + 1, :n])
                           for k, n in enumerate(batch.n_pixels)])


def _predict(model: Runtime, batch, settings: InferenceSettings, seed):
    """(values, sigmas, percentiles, raw Monte Carlo sigmas or None) of a batch, (B, P) each."""
    inputs = network_inputs(model.conventions, batch, settings.mc_bad_pixels)
    phot = {} if batch.photometry is None or not model.takes_photometry else \
        {"photometry": batch.photometry}
    if settings.mc <= 0:
        value = model.predict(inputs.flux, **phot)
        return value, np.full_like(value, np.nan), {}, None
    more = {} if inputs.wavelength is None else {"wavelength": inputs.wavelength}
    res = model.monte_carlo(inputs.mc_flux, inputs.err, inputs.bad, settings.mc, seed=seed,
                            mc_dropout=settings.mc_dropout, **phot, **more)
    raw = res["std"]
    calibrated = settings.calibrated
    if calibrated is None:  # a caller that did not ask sigma_settings (the Ray engine)
        calibrated = not settings.mc_dropout and (
            model.calibration is not None or bool(_error_model(model)))
    if calibrated:
        res = sigma_summaries(res, model.calibration, model.conventions, batch.snr)
    pct = {p: res[p] for p in ("p16", "p50", "p84") if p in res}
    return res.get("value", res["mean"]), res["std"], pct, raw


def _error_model(model: Runtime):
    return ((model.conventions or {}).get("catalog") or {}).get("error_model")


def _predict_part(model: Runtime, batch, settings: InferenceSettings,
                  seed=None) -> dict[str, np.ndarray]:
    """The catalog columns of one batch; ``seed`` (a pair of ints) keys its noise draws.

    A spectrum that ``catalog_flags.input_flags`` finds garbage (no usable pixel, all-zero or
    mostly non-positive flux, no usable error, an implausible flux scale) gets NaN values and
    sigmas, the reason in APNET_FLAG and BAD: the network would otherwise give it a confident
    number. The same checks run for every kind of model, with or without Monte Carlo. Spikes
    are masked before the package's own networks see the spectra (``screening``).
    """
    n_spikes = mask_batch_spikes(batch, masks_spikes(model))
    value, sigma, pct, raw = _predict(model, batch, settings, seed)
    bits = input_bits(batch)
    dead = (bits & INPUT_GARBAGE) != 0
    if dead.any():
        value, sigma = _nan_rows(value, dead), _nan_rows(sigma, dead)
        pct = {p: _nan_rows(v, dead) for p, v in pct.items()}
    part = {batch.id_column: batch.apogee_id, "RA": batch.ra, "DEC": batch.dec}
    for k, col in enumerate(_COLUMNS[:value.shape[1]]):
        part[col] = value[:, k]
        part[f"{col}_ERR"] = sigma[:, k]
    part["SNR"] = batch.snr
    for p, arr in pct.items():
        for k, col in enumerate(_COLUMNS[:value.shape[1]]):
            part[f"{col}_{p.upper()}"] = arr[:, k]
    part.update(flags(value[:, 0], value[:, 1], value[:, 2], sigma[:, :3], batch.snr,
                      model.label_range(), bits, None if raw is None else raw[:, :3]))
    if ((model.conventions or {}).get("catalog") or {}).get("flags"):  # astra's own flags
        part["APNET_FLAG"] = part["APNET_FLAG"] | astra_flags(
            value[:, 0], value[:, 1], value[:, 2], "suspicious_fe_h" in
            model.conventions["catalog"]["flags"])
    part["N_SPIKES"] = n_spikes
    part["NOVELTY"] = batch_novelty(model, batch, dead)
    part["APNET_FLAG"] = part["APNET_FLAG"] | spike_flags(n_spikes) | novelty_flags(
        part["NOVELTY"])
    part["BAD"] = (part["APNET_FLAG"] & BAD_BITS) != 0
    if batch.labels is not None:
        for k, col in enumerate(LABEL_COLUMNS):
            part[f"{col}_LABEL"] = batch.labels[:, k]
        part["SPLIT"], part["CATEGORY"] = batch.split, batch.category
    part.update(batch.extra or {})
    if batch.photometry is not None and model.takes_photometry:
        part["PHOT_FILLED"] = filled_bits(batch.photometry)
        part["APNET_FLAG"] = part["APNET_FLAG"] | np.where(
            part["PHOT_FILLED"] != 0, flag_value("PHOT_FILLED"), 0).astype(part["APNET_FLAG"].dtype)
    part["FILE"] = batch.source
    return part


def mc_value(model: Runtime, mc: int) -> str:
    """What the catalog's values are (header keyword MCVALUE): "single pass" without Monte
    Carlo; with it, the network's own choice (APOGEE Net III, BOSS Net: the un-noised pass)."""
    style = model.mc_style
    if mc == 0 or style in ("astra", "hutchresearch"):
        return "single pass"
    return "median" if style == "anet2" else "mean"


def catalog_from_parts(parts: list[dict], failures: list[str], model: Runtime,
                       mc: int, sigma_meta: dict | None = None,
                       mc_bad_pixels: str = "noise") -> Table:
    """One astropy Table from the parts of the units, in unit order; ``sigma_meta`` (from
    ``calibration.sigma_settings``) says what its sigmas are."""
    if not parts:
        raise ApnetError("no spectrum could be read: " + (failures[0] if failures else
                                                           "the inputs hold none"))
    names = list(dict.fromkeys(k for p in parts for k in p))  # records add label columns
    for name in names:
        if schema_column(name) is None:  # a programming error, never a user's
            raise AssertionError(f"catalog column {name} is not in io.catalog_schema.SCHEMA")
    names.sort(key=schema_position)  # the order the schema, and so the guide, gives
    table = Table({k: np.concatenate([p[k] if k in p else _blank(parts, k, len(p["TEFF"]))
                                      for p in parts]) for k in names})
    for name in table.colnames:
        col = schema_column(name)
        if col.source == "model" and col.unit and not name.endswith(("_P16", "_P50", "_P84")):
            # 'dex' is no FITS unit, so it goes into the description where FITS keeps it
            table[name].description = col.unit
    table.meta["TARGETS"] = ",".join(TARGETS + ((RV_COLUMN.lower(),) if RV_COLUMN in table.colnames
                                                else ()))
    table.meta["MC"] = mc
    table.meta["PRECISN"] = model.precision
    conv = model.conventions
    if conv:  # a published network: whose conventions
        table.meta["NETWORK"] = conv["arch"]
        if conv.get("convention"):
            table.meta["CONVENTN"] = conv["convention"]
            if mc > 0:
                table.meta["MCBADPIX"] = mc_bad_pixels
    table.meta["MCVALUE"] = mc_value(model, mc)
    table.meta.update(sigma_meta or {})
    table.meta.update(screening_keywords(model))
    table.meta.update(model_identity(model.path, model.sha256))
    return table


def _blank(parts: list[dict], name: str, n: int) -> np.ndarray:
    """n empty values (NaN, False, 0 or "") for a column that other parts have."""
    like = next(p[name] for p in parts if name in p)
    if like.dtype.kind in "fc":
        return np.full(n, np.nan, like.dtype)
    if like.dtype.kind in "iu":
        return np.zeros(n, like.dtype)
    return np.zeros(n, bool) if like.dtype.kind == "b" else np.full(n, "", dtype=object)


def _nan_rows(arr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = np.array(arr, dtype=np.result_type(arr.dtype, np.float32))
    out[rows] = np.nan
    return out
