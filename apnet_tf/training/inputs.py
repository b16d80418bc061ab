"""What the network trains on: the batches of a record folder in the form the model takes, the
architecture ``fit --arch`` trains (``fit_network``) and what run.json says of it, and the
photometry statistics of the two-input network.

For ``apnet`` (the Appendix B network) and ``anet3`` (APOGEE Net III's layout) a batch is (flux
(B, 8575), labels (B, 3)); for ``anet2`` (APOGEE Net II's two-input layout) ((flux (B, 8575),
photometry (B, 7)), labels (B, 3)), the photometry raw as the records store it (the model fills
and z-scores it).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from apnet_tf.constants import FIT_ARCHS
from apnet_tf.data.dataset import make_dataset
from apnet_tf.data.manifest import records_hold_photometry
from apnet_tf.errors import ApnetError
from apnet_tf.io.photometry import FILL_LIMIT
from apnet_tf.model.bossnet import build_trainable_anet3
from apnet_tf.model.network import build_model
from apnet_tf.model.published import PHOT_FILL
from apnet_tf.model.uncertainty import noise_scale
from apnet_tf.training.recipes import Recipe
from apnet_tf.training.run_folder import read_run_record

__all__ = ["training_data", "add_noise", "labelled_data", "resolve_arch", "check_arch_records",
           "arch_recipe", "UNUSED_FIELDS", "refuse_unused_flags", "fit_network", "network_record",
           "photometry_stats"]

#: What run.json says of the anet3 network that ``fit`` trains (``network_record``).
ANET3_RECORD = {
    "layout": "APOGEE Net III: BOSS Net's architecture (Sizemore et al. 2024; hutchresearch/"
              "BOSSNet class BossNet) with 3 outputs, trained here on these records: not the "
              "published weights",
    "input": "raw apStar flux (B, 8575); inside the model, as the authors' code: NaN -> 0, "
             "ln max(flux, 1e-6), clipped at the spectrum's 95th percentile + 1, and sin(pixel "
             "index) as a second channel",
    "targets": "teff (K), logg, fe_h standardised with the train split's mean and std "
               "(normalization.json), as every network fit trains; not the authors' (log g, "
               "log10 Teff, [Fe/H]) constants",
    "batchnorm": "PyTorch's momentum 0.1 and eps 1e-5; batch statistics in training, the "
                 "running statistics in inference; statistics computed in float32 in either "
                 "precision",
    "dropout": "none, as the authors' network (the recipe's dropout is 0 and its input_scaling "
               "none: the log scaling is the network's own)",
    "monte_carlo": "the package's (paper 3.5), not astra's or the authors' repository's: their "
                   "conventions belong to their pipeline around the published weights",
}


def training_data(records_dir: str, recipe: Recipe, drop_remainder: bool,
                  sample: dict[str, float] | None = None, seed: int | None = None,
                  photometry: bool = False) -> tf.data.Dataset:
    """Shuffled, labelled training batches of (flux, labels), or with ``photometry`` of
    ((flux, photometry), labels).

    With ``recipe.noise_augment`` each epoch sees each spectrum with fresh noise drawn as in the
    paper's Monte Carlo (N(0, 1) times the error capped at 5x the typical error; none at bad
    pixels), so a small training set is not memorised noise and all. The photometry is not
    perturbed (as in the Monte Carlo).
    """
    seed = recipe.seed if seed is None else seed
    features = ("flux", "err", "bad") if recipe.noise_augment else ("flux",)
    features += ("photometry",) if photometry else ()
    ds = make_dataset(records_dir, splits=["train"], batch_size=recipe.batch_size, shuffle=True,
                      seed=seed, sample=sample, labeled_only=True, features=features,
                      drop_remainder=drop_remainder)
    if recipe.noise_augment:
        ds = ds.map(add_noise, num_parallel_calls=tf.data.AUTOTUNE)
    elif photometry:
        ds = ds.map(_two_inputs, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        return ds
    return ds.prefetch(tf.data.AUTOTUNE)


def add_noise(features: dict, labels: tf.Tensor):
    """({"flux", "err", "bad"}, labels) -> (flux + N(0, 1) * ``uncertainty.noise_scale``, labels);
    with a "photometry" feature, ((noisy flux, photometry), labels).

    The scale is the Monte Carlo's (paper 3.5): each pixel's error, capped at 5x the spectrum's
    typical error, and 0 at bad pixels, which keep their flux. Shapes (B, 8575); labels pass.
    """
    scale = noise_scale(features["err"], features["bad"])
    noisy = features["flux"] + tf.random.normal(tf.shape(scale)) * scale
    return ((noisy, features["photometry"]) if "photometry" in features else noisy), labels


def _two_inputs(features: dict, labels: tf.Tensor):
    return (features["flux"], features["photometry"]), labels


def labelled_data(records_dir: str, split: str, batch_size: int, photometry: bool = False,
                  categories=None, drop_remainder: bool = False) -> tf.data.Dataset:
    """The labelled stars of one split, in order: (flux, labels) batches, or with
    ``photometry`` ((flux, photometry), labels)."""
    ds = make_dataset(records_dir, splits=[split], categories=categories, batch_size=batch_size,
                      labeled_only=True, drop_remainder=drop_remainder,
                      features=("flux", "photometry") if photometry else ("flux",))
    return ds.map(_two_inputs) if photometry else ds


def resolve_arch(arch: str | None, stage: str, run_dir: str, resume: bool = False) -> str:
    """The network ``fit`` trains: ``arch`` (None: "apnet"). Fine-tuning, and a resumed run,
    continue the network run.json records, so another ``arch`` is refused for them.

    Raises:
        ApnetError: an unknown arch, or one that is not the run's.
    """
    if arch is not None and arch not in FIT_ARCHS:
        raise ApnetError(f"--arch: choose one of {', '.join(FIT_ARCHS)}, got {arch!r}")
    recorded = read_run_record(run_dir).get("arch") if stage == "finetune" or resume else None
    if recorded is None:
        return arch or FIT_ARCHS[0]
    if arch is not None and arch != recorded:
        raise ApnetError(f"{run_dir}: its network is --arch {recorded}; --resume and --stage "
                         f"finetune continue it (leave out --arch, or give --arch {recorded})")
    return recorded


def arch_recipe(arch: str, recipe: Recipe) -> Recipe:
    """The recipe as ``arch`` trains with it: anet3 has no dropout and scales its own flux
    (``ANET3_RECORD``), so its dropout is 0 and its input_scaling "none", and its last layer
    is not refitted (``last_layer`` knows the Appendix B network's fc3 only); others
    unchanged."""
    if arch != "anet3":
        return recipe
    return dataclasses.replace(recipe, dropout=0.0, input_scaling="none",
                               refit_last_layer=False)


#: The recipe fields an architecture does not use (``arch_recipe`` sets them), and why.
UNUSED_FIELDS = {"anet3": {"dropout": "it has no dropout layers (BatchNorm instead)",
                           "input_scaling": "it scales its own flux (ln, then clipped)",
                           "refit_last_layer": "the refit knows the Appendix B network's last "
                                               "layer (fc3) only"}}


def refuse_unused_flags(arch: str | None, stage: str, run_dir: str, resume: bool,
                        flags: dict) -> None:
    """ApnetError naming the first recipe flag given (not None in ``flags``: field -> value)
    that the network ``fit`` would train (``resolve_arch``) does not use, so that it is never
    ignored silently; before any work."""
    arch = resolve_arch(arch, stage, run_dir, resume)
    for field, why in UNUSED_FIELDS.get(arch, {}).items():
        if flags.get(field) is not None and flags.get(field) is not False:  # --no-X: unused
            raise ApnetError(f"--{field.replace('_', '-')}: --arch {arch} does not use it: "
                             f"{why}; leave it out")


def fit_network(arch: str, mean, std, recipe: Recipe, precision: str,
                photometry=None) -> keras.Model:
    """The untrained network of ``arch`` (``FIT_ARCHS``) with the run's target ``mean`` and
    ``std`` (3 each, TARGETS order), the recipe's initialiser (and dropout and input scaling
    where the network has them), computing in ``precision``; ``photometry``: (fill, mean,
    std) of anet2's scaling. flux (B, 8575) [, photometry (B, 7)] -> (B, 3)."""
    if arch == "anet3":
        return build_trainable_anet3(mean, std, initializer=recipe.initializer,
                                     precision=precision)
    return build_model(mean, std, dropout=recipe.dropout, input_scaling=recipe.input_scaling,
                       initializer=recipe.initializer, precision=precision,
                       photometry=photometry)


def network_record(arch: str) -> dict | None:
    """What run.json records of ``arch``'s network beyond its name: ``ANET3_RECORD`` for
    anet3, None for the package's own layouts (their recipe says it all)."""
    return dict(ANET3_RECORD) if arch == "anet3" else None


def check_arch_records(records_dir: str, manifest: dict, arch: str) -> None:
    """ApnetError when ``arch`` needs photometry and the records were made without it."""
    if arch == "anet2" and not records_hold_photometry(manifest):
        raise ApnetError(f"{records_dir}: --arch anet2 trains on photometry as well as flux, "
                         "and these records hold none; make them with make-records "
                         "--photometry TABLE")


def photometry_stats(records_dir: str) -> tuple[list[float], list[float], list[float]]:
    """(fill, mean, std), 7 values each, of the two-input network's photometry scaling: APOGEE
    Net II's fill values, and the mean and standard deviation (ddof 0) of the labelled
    train-split stars' photometry once filled (a band without spread gets std 1)."""
    ds = make_dataset(records_dir, splits=["train"], features=("photometry",),
                      labeled_only=True, batch_size=1024)
    raw = np.concatenate([x.numpy() for x, _ in ds]).astype(np.float64)
    with np.errstate(invalid="ignore"):
        filled = np.where(np.isfinite(raw) & (raw < FILL_LIMIT), raw, np.asarray(PHOT_FILL))
    std = filled.std(axis=0)
    return list(PHOT_FILL), filled.mean(axis=0).tolist(), np.where(std > 0, std, 1.0).tolist()
