"""Training: ``fit`` with its two stages (pretraining, paper 3.3;
fine-tuning, paper 3.4).

The pieces live in modules of their own: ``recipes`` (how it trains), ``inputs`` (the batches,
the architecture, the photometry statistics), ``callbacks`` (early stopping with reload, history,
schedule), ``finetuning`` (the rolling Payne resample), ``distribute`` (strategies, sharding,
multi-worker) and ``run_folder`` (what a run folder holds).
``fit`` trains and saves the model; ``apnet_tf.workflows.fit`` adds the tables and the sigma
calibration that a user's ``apnet-tf fit`` ends with.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from apnet_tf.constants import (
    BEST_MODEL,
    HISTORY,
    PRETRAIN_DONE,
    PRETRAIN_STATE,
    PRETRAINED_MODEL,
    ROUNDS,
)
from apnet_tf.data.manifest import count_records, read_manifest, shard_paths
from apnet_tf.errors import ApnetError
from apnet_tf.io.files import output_lock
from apnet_tf.model.keras_runtime import load_keras
from apnet_tf.model.network import (
    MaskedStandardizedMSE,
    model_photometry,
    save_model_atomic,
    target_stats,
    with_precision,
)
from apnet_tf.training.callbacks import (
    EarlyStoppingWithReload,
    HistoryCSV,
    SafeBackupAndRestore,
    average_callbacks,
    average_momentum,
    check_finite,
    schedule_callbacks,
)
from apnet_tf.training.distribute import (
    STRATEGIES,
    build_for_multiworker,
    get_strategy,
    shard_policy,
)
from apnet_tf.training.finetuning import average_rounds, dataset_loss, rolling_resample
from apnet_tf.training.inputs import (
    arch_recipe,
    check_arch_records,
    fit_network,
    labelled_data,
    network_record,
    photometry_stats,
    resolve_arch,
    training_data,
)
from apnet_tf.training.last_layer import refit_last_layer
from apnet_tf.training.precision import resolve_precision
from apnet_tf.training.recipes import RECIPES, Recipe
from apnet_tf.training.run_folder import (
    check_resume,
    model_stats,
    prepare_run_folder,
    read_csv_rows,
    worker_folder,
    write_csv_rows,
    write_normalization,
    write_run_record,
)

__all__ = [
    "STAGES", "make_optimizer", "check_initializer", "compile_model", "FitResult", "fit",
    "check_records", "pretrain", "finetune_recipe", "finetune",
]

STAGES = ("pretrain", "finetune", "all")


def make_optimizer(recipe: Recipe) -> keras.optimizers.Optimizer:
    """The recipe's Keras optimizer at its learning rate, keeping a moving average of the weights
    when ``recipe.ema_momentum`` > 0 (``callbacks.average_callbacks`` puts it to use)."""
    ema = ({"use_ema": True, "ema_momentum": recipe.ema_momentum}
           if recipe.ema_momentum > 0 else {})
    if recipe.optimizer == "adam":
        return keras.optimizers.Adam(recipe.learning_rate, **ema)
    if recipe.optimizer == "sgd":
        return keras.optimizers.SGD(recipe.learning_rate, momentum=recipe.momentum, **ema)
    raise ApnetError(f"unknown optimizer {recipe.optimizer!r}; choose adam or sgd")


def check_initializer(recipe: Recipe) -> Recipe:
    """The recipe, once Keras knows its initializer name (``Recipe.validate`` checks the rest
    without importing Keras)."""
    try:
        keras.initializers.get(recipe.initializer)
    except (ValueError, TypeError):
        raise ApnetError("--initializer: not a Keras initializer name (he_normal, "
                         f"glorot_uniform, ...), got {recipe.initializer!r}") from None
    return recipe


def compile_model(model: keras.Model, recipe: Recipe, std,
                  dist: tf.distribute.Strategy | None = None) -> keras.Model:
    """Compile with the recipe's optimizer and the masked standardised MSE (Table 2's loss)."""
    model.compile(optimizer=make_optimizer(recipe), loss=MaskedStandardizedMSE(std))
    if isinstance(dist, tf.distribute.MultiWorkerMirroredStrategy):
        build_for_multiworker(model, dist)
    return model


@dataclasses.dataclass
class FitResult:
    run_dir: str
    model: keras.Model
    epochs: dict  # stage -> epochs run
    rounds: list[dict]
    std: np.ndarray | None = None  # (3,) the train-split target std the loss standardises with
    recipe: Recipe | None = None
    chief: bool = True  # False on the non-chief workers of a multi-worker run: they write nothing
    table2: object = None  # pandas DataFrame, paper Table 2 (``workflows.fit``)
    table3: object = None  # pandas DataFrame, paper Table 3 (``workflows.fit``)
    arch: str = "apnet"  # the network trained (``constants.FIT_ARCHS``)
    calibration: object = None  # model.calibration.Calibration (``workflows.fit``; None: too few
    # labelled dev stars)
    notes: list[str] = dataclasses.field(default_factory=list)  # note lines (a discarded backup)
    last_layer: dict | None = None  # the last layer's refit (``last_layer``); None when off


def fit(records_dir: str, run_dir: str, stage: str = "all", recipe: Recipe | None = None,
        resume: bool = False, strategy: str = "default",
        on_epoch: Callable[[str, int, dict], None] | None = None,
        on_round: Callable[[dict], None] | None = None, overwrite: bool = False,
        arch: str | None = None) -> FitResult:
    """Train APOGEE Net on a record folder and leave the best model in ``run_dir``.

    Args:
        stage: ``pretrain`` (all training stars), ``finetune`` (paper 3.4, starting from the run's
            pretrained model, whose record, history rows and normalisation are kept) or ``all``
            (both).
        recipe: a ``Recipe``; default ``RECIPES["default"]``.
        resume: continue a killed run from its last epoch (Keras BackupAndRestore) instead of
            starting again.
        strategy: ``default``, ``mirrored`` or ``multiworker`` (see ``get_strategy``).
        on_epoch: called as on_epoch(stage, epoch, logs) after each epoch.
        on_round: called with each fine-tuning round's dict.
        overwrite: replace a finished or partial run in ``run_dir`` (its files are deleted
            first); without it such a folder is refused (``prepare_run_folder``).
        arch: ``constants.FIT_ARCHS``: "apnet" (default), the Appendix B network over flux;
            "anet2", APOGEE Net II's two-input layout over flux and the records' photometry
            (fill values and z-scores inside the model; the z-scores' means and stds are the
            train split's, recorded in run.json); "anet3", APOGEE Net III's layout over flux
            (``inputs.ANET3_RECORD``: the recipe's dropout and input scaling are not used).
            Fine-tuning and ``resume`` continue the run's.
    """
    if stage not in STAGES:
        raise ApnetError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    check_resume(resume, overwrite)
    recipe = check_initializer((recipe or RECIPES["default"]).validate())
    if strategy not in STRATEGIES:
        raise ApnetError(f"--strategy: choose one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if strategy == "multiworker" and "TF_CONFIG" not in os.environ:
        get_strategy(strategy)  # its one-line error, before the run folder is touched
    precision = resolve_precision(recipe.precision)
    arch = resolve_arch(arch, stage, run_dir, resume)
    recipe = arch_recipe(arch, recipe)
    manifest = check_records(records_dir, stage)
    check_arch_records(records_dir, manifest, arch)
    if stage == "finetune" and not os.path.exists(os.path.join(run_dir, PRETRAINED_MODEL)):
        raise ApnetError(f"{os.path.join(run_dir, PRETRAINED_MODEL)}: no pretrained model; "
                         "run --stage pretrain first")
    if resume and strategy == "multiworker":
        raise ApnetError("--resume does not work with --strategy multiworker; start the run "
                         "again without --resume")
    work_dir = worker_folder(strategy, run_dir, stage)
    try:
        with output_lock(work_dir):  # one writer per run folder
            prepare_run_folder(work_dir, stage, resume, overwrite)
            dist = get_strategy(strategy)
            result = _fit_in(work_dir, records_dir, manifest, stage, recipe, precision, resume,
                             dist, on_epoch, on_round, arch)
        return dataclasses.replace(result, run_dir=run_dir, chief=work_dir == run_dir)
    finally:
        if work_dir != run_dir:
            shutil.rmtree(work_dir, ignore_errors=True)


def _fit_in(run_dir, records_dir, manifest, stage, recipe, precision, resume, dist, on_epoch,
            on_round, arch) -> FitResult:
    """``fit`` once the strategy is made and the folder to write is prepared."""
    pretrained = os.path.join(run_dir, PRETRAINED_MODEL)
    keras.utils.set_random_seed(recipe.seed)
    if recipe.deterministic:
        # Process-wide and permanent: every op, tf.data pipeline included, then runs in a fixed
        # order, so two runs with the same seed give bit-identical weights.
        tf.config.experimental.enable_op_determinism()
    run = _Run(records_dir, run_dir, recipe, precision, dist, on_epoch, arch)
    with dist.scope():
        if stage == "finetune":
            model = load_keras(pretrained)
            mean, std = model_stats(model)
            phot = model_photometry(model)
        else:
            mean, std = target_stats(manifest)
            phot = photometry_stats(records_dir) if run.photometry else None
        write_normalization(run_dir, records_dir, manifest, mean, std,
                            keep_existing=stage == "finetune")
        write_run_record(run_dir, recipe, precision, stage, arch, phot, network_record(arch))
        epochs_run: dict[str, int] = {}
        rounds: list[dict] = []
        if stage in ("pretrain", "all"):
            model, epochs_run["pretrain"] = pretrain(run, mean, std, resume, phot)
        if stage in ("finetune", "all"):
            model, rounds = finetune(run, model, std, on_round)
            epochs_run["finetune"] = sum(r["epochs"] for r in rounds)
    shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
    model = with_precision(model, "float32")  # what was saved
    refit = None
    if recipe.refit_last_layer:  # on the float32 features that inference computes
        refit = refit_last_layer(model, records_dir, photometry=run.photometry)
        save_model_atomic(model, run.path(BEST_MODEL))
    return FitResult(run_dir, model, epochs_run, rounds, np.asarray(std, float), recipe,
                     notes=run.notes, arch=arch, last_layer=refit)


def check_records(records_dir: str, stage: str = "all") -> dict:
    """The manifest of a record folder that ``fit`` can train ``stage`` on (usable train-split
    label statistics, train and dev records, every shard present and whole, mstar or yso stars
    for fine-tuning); raises ApnetError otherwise."""
    manifest = read_manifest(records_dir)
    mean, std = target_stats(manifest)
    if any(v is None or not np.isfinite(v) for v in [*mean, *std]) or not (std > 0).all():
        raise ApnetError(f"{records_dir}: the manifest has no usable train-split label "
                         "statistics; make-records needs a labelled training split")
    for split in ("train", "dev"):
        if count_records(records_dir, [split]) == 0:
            raise ApnetError(f"{records_dir}: no {split} records; fit needs train and dev splits")
    focus_cats = ["mstar", "yso"]
    if stage in ("finetune", "all") and (count_records(records_dir, ["train"], focus_cats) == 0
                                         or count_records(records_dir, ["dev"], focus_cats) == 0):
        raise ApnetError(f"{records_dir}: fine-tuning needs mstar or yso stars in the train and "
                         "dev splits; use --stage pretrain")
    shard_paths(records_dir)  # every shard present and whole, before hours of training
    return manifest


class _Run:
    """What the stages of one ``fit`` share: folders, recipe, strategy, dev data, reporting."""

    def __init__(self, records_dir, run_dir, recipe, precision, dist, on_epoch, arch):
        self.records_dir, self.run_dir, self.recipe = records_dir, run_dir, recipe
        self.precision, self.dist, self.on_epoch, self.arch = precision, dist, on_epoch, arch
        self.photometry = arch == "anet2"  # the two-input network: batches carry photometry
        self.notes: list[str] = []  # one-line notes for the user (a discarded backup)
        # Keras 3 under several replicas fails on a ragged last batch (AddN shape mismatch, even
        # in evaluate), so those runs drop it: at most batch_size - 1 stars, the same ones every
        # epoch for dev. One replica keeps every star.
        self.drop_remainder = dist.num_replicas_in_sync > 1
        bs = recipe.batch_size
        for split in ("train", "dev"):
            if self.drop_remainder and count_records(records_dir, [split]) < bs:
                raise ApnetError(f"{records_dir}: fewer {split} records than one batch ({bs}); "
                                 "use a smaller --batch-size with several replicas")
        self.dev = self.sharded(labelled_data(records_dir, "dev", bs, self.photometry,
                                              drop_remainder=self.drop_remainder))

    def sharded(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        """``ds`` with the sharding policy of ``shard_policy``."""
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = shard_policy(self.dist)
        return ds.with_options(options)

    def path(self, name: str) -> str:
        return os.path.join(self.run_dir, name)

    def reporter(self, stage: str) -> keras.callbacks.Callback:
        """A callback that passes each epoch's logs to ``on_epoch(stage, epoch, logs)``."""
        on_epoch = self.on_epoch

        def report(epoch, logs):
            if on_epoch:
                on_epoch(stage, epoch + 1, dict(logs or {}))

        return keras.callbacks.LambdaCallback(on_epoch_end=report)


def pretrain(run: _Run, mean, std, resume: bool, photometry=None) -> tuple[keras.Model, int]:
    """Paper 3.3: train on every training star with early stopping; returns (model, epochs).
    ``photometry``: (fill, mean, std) of the two-input network's scaling, or None.

    The best model is saved as pretrained.keras and best.keras. A resumed run whose pretraining
    had finished loads pretrained.keras instead (0 epochs).
    """
    recipe, pretrained = run.recipe, run.path(PRETRAINED_MODEL)
    if resume and os.path.exists(run.path(PRETRAIN_DONE)) and os.path.exists(pretrained):
        model = load_keras(pretrained)
        save_model_atomic(model, run.path(BEST_MODEL))
        return model, 0
    model = fit_network(run.arch, mean, std, recipe, run.precision, photometry)
    train = run.sharded(training_data(run.records_dir, recipe,
                                      drop_remainder=run.drop_remainder,
                                      photometry=run.photometry))
    steps = int(train.cardinality())
    compile_model(model, dataclasses.replace(
        recipe, ema_momentum=average_momentum(recipe.ema_momentum, steps)), std, run.dist)
    backup = SafeBackupAndRestore(run.path(os.path.join("backup", "pretrain")),
                                  on_notice=run.notes.append)
    if backup.discard_unreadable() and os.path.exists(run.path(PRETRAIN_STATE)):
        # a clean restart: the early stopping's count belongs to the discarded epochs
        os.remove(run.path(PRETRAIN_STATE))
    stopper = EarlyStoppingWithReload(pretrained, patience=recipe.patience,
                                      state_path=run.path(PRETRAIN_STATE),
                                      min_improvement=recipe.min_improvement)
    callbacks = [backup, *average_callbacks(recipe), *schedule_callbacks(recipe), stopper,
                 HistoryCSV(run.path(HISTORY), "pretrain"), run.reporter("pretrain")]
    hist = model.fit(train, validation_data=run.dev, epochs=recipe.epochs, verbose=0,
                     shuffle=False, callbacks=[*callbacks, keras.callbacks.TerminateOnNaN()])
    check_finite(model, stopper, "pretraining", [pretrained, run.path(BEST_MODEL)])
    if not os.path.exists(pretrained):
        save_model_atomic(model, pretrained)
    open(run.path(PRETRAIN_DONE), "w").close()
    save_model_atomic(model, run.path(BEST_MODEL))
    return model, len(hist.history.get("loss", []))


def finetune_recipe(recipe: Recipe) -> Recipe:
    """The recipe of the fine-tuning rounds: the fine-tuning learning rate, and with it the
    schedule's floor (``schedule_callbacks``); no weight average, as every round restarts from
    the best round's weights, which an average carried over from the last round would blur."""
    return dataclasses.replace(recipe, learning_rate=recipe.finetune_learning_rate,
                               ema_momentum=0.0)


def finetune(run: _Run, model: keras.Model, std,
             on_round: Callable[[dict], None] | None = None) -> tuple[keras.Model, list[dict]]:
    """Paper 3.4 on a pretrained model: ``rolling_resample`` with the recipe's fine-tuning
    settings, rounds logged to finetune_rounds.csv; returns (model, rounds).

    The gate uses Table 2's loss (``dataset_loss``) on the mstar + yso dev stars and on the
    whole dev split.
    """
    recipe, records_dir, bs = run.recipe, run.records_dir, run.recipe.batch_size
    focus_cats = ["mstar", "yso"]
    tuning = finetune_recipe(recipe)
    model = compile_model(with_precision(model, run.precision), tuning, std, run.dist)
    focus_dev = labelled_data(records_dir, "dev", bs, run.photometry, categories=focus_cats)

    def train_for_seed(seed: int) -> tf.data.Dataset:
        return run.sharded(training_data(records_dir, recipe, run.drop_remainder,
                                         sample={"payne": recipe.finetune_fraction}, seed=seed,
                                         photometry=run.photometry))

    rounds_path, ends = run.path(ROUNDS), []

    def log_round(row):
        if (recipe.average_rounds and row["round"] != "average"
                and row["dev_loss"] <= row["dev_limit"]):
            ends.append(model.get_weights())  # the round's end, before the next one starts
        write_csv_rows(rounds_path, read_csv_rows(rounds_path) + [row])
        if on_round:
            on_round(row)

    if os.path.exists(rounds_path):
        os.remove(rounds_path)
    rounds = rolling_resample(
        model, train_for_seed, run.dev, lambda m: dataset_loss(m, focus_dev, std),
        dev_loss=lambda m: dataset_loss(m, run.dev, std),
        patience_rounds=recipe.finetune_patience, epoch_patience=recipe.patience,
        epoch_min_improvement=recipe.min_improvement,
        max_epochs=recipe.epochs, max_rounds=recipe.finetune_max_rounds,
        seed=recipe.seed * 1000, dev_tolerance=recipe.finetune_dev_tolerance,
        best_path=run.path(BEST_MODEL), on_round=log_round,
        callbacks=[*schedule_callbacks(tuning),
                   HistoryCSV(run.path(HISTORY), "finetune", cumulative=True),
                   run.reporter("finetune")])
    row = average_rounds(model, ends, rounds, lambda m: dataset_loss(m, focus_dev, std),
                         lambda m: dataset_loss(m, run.dev, std))  # best.keras: below
    if row:
        rounds.append(row)
        log_round(row)
    save_model_atomic(model, run.path(BEST_MODEL))
    return model, rounds
