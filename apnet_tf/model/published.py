"""The published APOGEE Net I and II networks in Keras, with the conventions of the code their
weights came from.

* **anet1**, APOGEE Net I (Olney et al. 2020, AJ 159, 182), as SDSS astra ran it: the network
  returns standardised (log g, Teff, [Fe/H]), in that order, de-standardised with the mean and
  sigma below (not the rounded, Teff-first values of the paper's Table 1).
* **anet2**, APOGEE Net II (Sprague et al. 2022, hutchresearch/ApogeeNet2): the same convolution
  trunk plus a ReLU network over seven photometric values (Gaia EDR3 parallax in mas, G, BP, RP;
  2MASS J, H, K; 7 -> 8 -> 16 -> 32 -> 32 -> 64) whose 64 outputs follow the 8512 flattened
  trunk features into fc1. It returns standardised (log g, log10 Teff, [Fe/H]).

Both take raw apStar flux (row 0 of HDU 1, NaN set to 0, no pixel mask, no scaling). The Keras
models hold every convention (photometry fill values and z-scores, the output order, the
constants, 10**log Teff), so a SavedModel or TFLite file takes raw flux and raw photometry and
returns Teff (K), log g, [Fe/H] in the package's order. ``conventions(arch)`` is what run.json
and export_metadata.json record; ``uncertainty`` runs each network's own Monte Carlo from it.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from apnet_tf.constants import DENSE_UNITS, N_PIXELS, PHOTOMETRY_UNITS, RUN_RECORD, TARGETS
from apnet_tf.errors import ApnetError
from apnet_tf.io.files import read_json
from apnet_tf.io.photometry import PHOT_COLUMNS
from apnet_tf.model.bossnet import BOSS_ARCHS, is_bossnet
from apnet_tf.model.bossnet_conventions import conventions as bossnet_conventions
from apnet_tf.model.network import PhotometryStandardize, conv_trunk, photometry_branch

__all__ = [
    "ARCHS", "PUBLISHED", "NET1_ORDER", "NET1_MEAN", "NET1_STD", "NET2_ORDER", "NET2_MEAN",
    "NET2_STD", "PHOT_FILL", "PHOT_MEAN", "PHOT_STD", "METADATA_SIZES", "Net2PhotometryScaling",
    "PublishedLabels", "build_published", "conventions", "read_conventions", "conventions_of",
    "mc_style", "linear_stats",
]

#: ``import-torch --arch`` choices. "apnet" is the package's own layout (the paper's
#: Appendix B read with Table 1's rounded, Teff-first statistics and in-model flux scaling);
#: it is wrong for the published Net I weights, whose outputs are log g first.
ARCHS = ("anet1", "anet2", "apnet")
PUBLISHED = ("anet1", "anet2")

#: Net I (astra, 2020): output columns and their de-standardisation, physical = z * std + mean.
NET1_ORDER = ("logg", "teff", "fe_h")
NET1_MEAN = (2.880541250669337, 4716.915128138449, -0.22329606176144642)
NET1_STD = (1.1648147820369943, 733.0099523547299, 0.3004270650813916)
#: Net II (hutchresearch/ApogeeNet2): Teff comes out as log10 Teff.
NET2_ORDER = ("logg", "log_teff", "fe_h")
NET2_MEAN = (2.925783395767212, 3.6705732345581055, -0.13088105618953705)
NET2_STD = (1.1890668869018555, 0.0917675793170929, 0.25668784976005554)

#: Net II photometry, in ``io.photometry.PHOT_COLUMNS`` order: a value >= 98 or not finite takes
#: the fill value, then (x - mean) / std.
PHOT_FILL = (-84.82700, 21.40844, 24.53892, 20.26276, 18.43900, 24.00000, 17.02500)
PHOT_MEAN = (-0.6959113178296891, 13.630030428758845, 14.5224418320574, 12.832448427460813,
             11.537019017423619, 10.858717523536697, 10.702106344460235)
PHOT_STD = (14.572430555504504, 2.2762944923233883, 2.8342029214199704, 2.136884367623457,
            1.6793628207779732, 1.4888102872755238, 1.5848713221149886)
#: The layer sizes of Net II's photometry branch, its input first (state_dict metadata.l1..l5).
METADATA_SIZES = (len(PHOT_COLUMNS), *PHOTOMETRY_UNITS)


@keras.saving.register_keras_serializable(package="apnet_tf")
class Net2PhotometryScaling(PhotometryStandardize):
    """Net II's photometry preparation: (B, 7) raw [parallax mas, G, BP, RP, J, H, K] -> (B, 7)
    z-scores with its own fill values, means and stds (``PHOT_FILL``, ``PHOT_MEAN``,
    ``PHOT_STD``); values >= 98 or not finite take the fill value first."""

    def __init__(self, **kwargs):
        for key in ("fill", "mean", "std"):
            kwargs.pop(key, None)
        super().__init__(PHOT_FILL, PHOT_MEAN, PHOT_STD, **kwargs)

    def get_config(self):
        config = super().get_config()
        for key in ("fill", "mean", "std"):  # Net II's constants, not a saved model's choice
            config.pop(key)
        return config


@keras.saving.register_keras_serializable(package="apnet_tf")
class PublishedLabels(keras.layers.Layer):
    """A published network's standardised outputs (B, 3), in its own ``order``, -> (B, 3) Teff
    (K), log g, [Fe/H] in ``TARGETS`` order: z * std + mean per column, then 10**x for a
    log_teff column.

    ``mean`` and ``std`` (TARGETS order, linear units) are what the rest of the package reads of
    a model's de-standardisation (Table 2's std); for log10 Teff they are the linearised values
    of ``linear_stats``.
    """

    def __init__(self, order, source_mean, source_std, **kwargs):
        super().__init__(**kwargs)
        self.order = [str(v) for v in order]
        self.source_mean = [float(v) for v in source_mean]
        self.source_std = [float(v) for v in source_std]
        self.mean, self.std = linear_stats(self.order, self.source_mean, self.source_std)

    def call(self, z):
        phys = z * tf.constant(self.source_std, z.dtype) + tf.constant(self.source_mean, z.dtype)
        cols = []
        for target in TARGETS:
            name = next(n for n in self.order if n in (target, f"log_{target}"))
            col = phys[:, self.order.index(name)]
            cols.append(tf.pow(tf.constant(10.0, z.dtype), col) if name.startswith("log_")
                        else col)
        return tf.stack(cols, axis=1)

    def get_config(self):
        return {**super().get_config(), "order": self.order, "source_mean": self.source_mean,
                "source_std": self.source_std}


def linear_stats(order, mean, std) -> tuple[list[float], list[float]]:
    """(mean, std) in TARGETS order and linear units; a log10 column's are 10**mean and the
    first-order std ln(10) * 10**mean * std."""
    out_mean, out_std = [], []
    for target in TARGETS:
        name = next(n for n in order if n in (target, f"log_{target}"))
        m, s = float(mean[order.index(name)]), float(std[order.index(name)])
        if name.startswith("log_"):
            m, s = 10.0 ** m, float(np.log(10.0)) * 10.0 ** m * s
        out_mean.append(m)
        out_std.append(s)
    return out_mean, out_std


def build_published(arch: str) -> keras.Model:
    """The Keras twin of a published network (weights are glorot-initialised; ``torch_weights``
    fills them). anet1: flux (B, 8575) -> (B, 3); anet2: [flux (B, 8575), photometry (B, 7)]
    -> (B, 3). Outputs are Teff (K), log g, [Fe/H]. Dropout is 0, as the authors ran them."""
    if arch not in PUBLISHED:
        raise ValueError(f"arch {arch!r} is not one of {PUBLISHED}")
    flux = keras.Input(shape=(N_PIXELS,), name="flux", dtype="float32")
    x = conv_trunk(flux, "glorot_uniform", "float32")
    inputs = [flux]
    if arch == "anet2":
        phot = keras.Input(shape=(METADATA_SIZES[0],), name="photometry", dtype="float32")
        m = photometry_branch(Net2PhotometryScaling(name="photometry_scaling")(phot))
        x = keras.layers.Concatenate(name="trunk_and_photometry")([x, m])
        inputs.append(phot)
    for i in (1, 2):
        x = keras.layers.Dense(DENSE_UNITS, name=f"fc{i}")(x)
        x = keras.layers.Dropout(0.0, name=f"fc{i}_dropout")(x)
        x = keras.layers.ReLU(name=f"fc{i}_relu")(x)
    z = keras.layers.Dense(3, name="fc3")(x)
    order, mean, std = ((NET1_ORDER, NET1_MEAN, NET1_STD) if arch == "anet1"
                        else (NET2_ORDER, NET2_MEAN, NET2_STD))
    out = PublishedLabels(order, mean, std, name="labels")(z)
    return keras.Model(inputs if len(inputs) > 1 else flux, out, name=f"apogee_{arch}")


def conventions(arch: str) -> dict:
    """What a run folder (run.json) and an export (export_metadata.json) record of a network's
    source code: its input, output order, constants and Monte Carlo."""
    common = {"arch": arch, "input": {
        "flux": "raw apStar flux: row 0 of HDU 1, NaN set to 0, no pixel mask, no scaling",
        "err": "row 0 of HDU 2 (Monte Carlo only)"}}
    mc = {"sigma": "err; err == 1e10 -> the flux value; clipped at 5 x the median err over all "
                   "pixels (taken before the replacement)", "mc": 100}
    if arch == "anet1":
        return {**common, "source": "APOGEE Net I (Olney et al. 2020), SDSS astra",
                "output_order": list(NET1_ORDER), "mean": list(NET1_MEAN),
                "std": list(NET1_STD),
                "mc": {**mc, "style": "anet1", "draw_0": "unperturbed", "value": "mean",
                       "sigma_stat": "std (ddof 0)"}}
    if arch == "anet2":
        common["input"]["photometry"] = (
            f"{', '.join(PHOT_COLUMNS)} (parallax in mas); >= 98 or not finite -> fill "
            "values; z-scored inside the model")
        return {**common, "source": "APOGEE Net II (Sprague et al. 2022), "
                                    "hutchresearch/ApogeeNet2",
                "output_order": list(NET2_ORDER), "mean": list(NET2_MEAN),
                "std": list(NET2_STD), "photometry_columns": list(PHOT_COLUMNS),
                "photometry_fill": list(PHOT_FILL), "photometry_mean": list(PHOT_MEAN),
                "photometry_std": list(PHOT_STD),
                "mc": {**mc, "style": "anet2", "draw_0": "perturbed", "value": "median "
                       "(the lower middle draw)", "sigma_stat": "std (ddof 1)",
                       "teff": "10**log10 Teff per draw, then the statistics in K"}}
    raise ValueError(f"arch {arch!r} is not one of {PUBLISHED}")


def read_conventions(folder: str) -> dict | None:
    """The conventions a run folder's run.json records (None for the package's own runs).

    Raises:
        ApnetError: run.json names an architecture this version does not know.
    """
    record = read_json(os.path.join(folder, RUN_RECORD))
    conv = record.get("conventions") if isinstance(record, dict) else None
    if conv is None:
        return None
    known = PUBLISHED + BOSS_ARCHS
    if not isinstance(conv, dict) or conv.get("arch") not in known:
        raise ApnetError(f"{os.path.join(folder, RUN_RECORD)}: unknown architecture "
                         f"{conv.get('arch') if isinstance(conv, dict) else conv!r}; "
                         f"expected one of {', '.join(known)}")
    return conv


def conventions_of(model) -> dict | None:
    """The conventions of a Keras model from ``build_published`` or ``bossnet.build_bossnet``
    (a .keras file without its run folder: APOGEE Net III and BOSS Net under astra's, the
    default); None for the package's own models."""
    if is_bossnet(model):
        return bossnet_conventions("bossnet" if "rv" in model.get_layer("labels").names
                                   else "anet3")
    try:
        labels = model.get_layer("labels")
    except ValueError:
        return None
    if not isinstance(labels, PublishedLabels):
        return None
    return conventions("anet2" if isinstance(model.input_shape, list) else "anet1")


def mc_style(conv: dict | None) -> str:
    """The Monte Carlo a model's conventions ask for: "anet1", "anet2", "apnet" (the
    package's own, paper 3.5), or for APOGEE Net III and BOSS Net "astra" or "hutchresearch"
    (``bossnet_mc``)."""
    return ((conv or {}).get("mc") or {}).get("style", "apnet")

