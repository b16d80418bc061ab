"""Training: recipes, early stopping with reload, the rolling Payne resample, strategies.

A run folder holds ``best.keras`` (always the best model by dev loss, never the last one),
``normalization.json``, ``history.csv``, ``training.png``, ``finetune_rounds.csv`` and the paper's
Tables 2 and 3 as CSV and Markdown.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from .constants import (EARLY_STOPPING_PATIENCE, PAPER_BATCH_SIZE, PAPER_DROPOUT,
                        PAPER_LEARNING_RATE, PAYNE_RESAMPLE_FRACTION)
from .errors import ApnetError
from .evaluation import evaluation_tables, predict_records, standardized_mse, write_tables
from .files import atomic_path, read_json, write_json
from .model import (PRECISIONS, MaskedStandardizedMSE, build_model, predictor, target_stats,
                    with_precision)
from .inference import load_keras
from .records import count_records, make_dataset, read_manifest, shard_paths

BEST_MODEL = "best.keras"
PRETRAINED_MODEL = "pretrained.keras"
NORMALIZATION = "normalization.json"
HISTORY = "history.csv"
ROUNDS = "finetune_rounds.csv"
PRETRAIN_DONE = "pretrain.done"
PRETRAIN_STATE = "early_stopping_pretrain.json"
STRATEGIES = ("default", "mirrored", "multiworker")
STAGES = ("pretrain", "finetune", "all")
#: Every file ``fit`` writes into a run folder (``--overwrite`` deletes these and nothing else),
#: plus calibration.json, which belongs to the model it was fitted on.
RUN_FILES = (BEST_MODEL, PRETRAINED_MODEL, NORMALIZATION, HISTORY, ROUNDS, "training.png",
             PRETRAIN_STATE, PRETRAIN_DONE, "backup", "table2.csv", "table2.md",
             "table3.csv", "table3.md", "calibration.json")


@dataclasses.dataclass
class Recipe:
    """Everything that decides how the network trains. Flags of ``fit`` override single fields."""

    optimizer: str = "adam"  # "adam" or "sgd"
    learning_rate: float = PAPER_LEARNING_RATE
    momentum: float = 0.0  # SGD only
    batch_size: int = 16
    dropout: float = PAPER_DROPOUT
    input_scaling: str = "mean"  # see model.INPUT_SCALINGS
    initializer: str = "he_normal"
    epochs: int = 100  # upper bound; early stopping usually ends sooner
    patience: int = EARLY_STOPPING_PATIENCE
    lr_plateau_patience: int = 3  # halve the learning rate after this many flat epochs; 0 = off
    noise_augment: bool = True  # add a fresh draw of the paper's per-pixel noise each epoch
    finetune_learning_rate: float = PAPER_LEARNING_RATE / 10  # rounds start from a trained model
    finetune_fraction: float = PAYNE_RESAMPLE_FRACTION
    finetune_patience: int = 3  # rounds without mstar+yso dev improvement
    finetune_max_rounds: int = 20
    finetune_dev_tolerance: float = 0.05  # a round may not worsen the whole-dev loss by more
    precision: str = "float32"  # or "auto" or "mixed_bfloat16"; see resolve_precision
    seed: int = 0
    deterministic: bool = False  # TensorFlow op determinism: bit-identical reruns, slower

    def validate(self) -> Recipe:
        """Check every field; ``fit`` calls this before it touches the run folder.

        Raises:
            ApnetError: the first bad field, named as its command-line flag (``--batch-size``).
        """
        from .model import INPUT_SCALINGS

        def bad(field: str, why: str) -> ApnetError:
            value = getattr(self, field)
            return ApnetError(f"--{field.replace('_', '-')}: {why}, got {value!r}")

        choices = {"optimizer": ("adam", "sgd"), "input_scaling": INPUT_SCALINGS,
                   "precision": ("auto", *PRECISIONS)}
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                raise bad(field, f"choose one of {', '.join(allowed)}")
        for field in ("batch_size", "epochs", "patience", "finetune_patience",
                      "finetune_max_rounds"):
            if not getattr(self, field) >= 1:
                raise bad(field, "must be at least 1")
        for field in ("lr_plateau_patience", "seed"):
            if not getattr(self, field) >= 0:
                raise bad(field, "must be 0 or more")
        for field in ("learning_rate", "finetune_learning_rate"):
            if not (np.isfinite(getattr(self, field)) and getattr(self, field) > 0):
                raise bad(field, "must be a positive number")
        ranges = {"dropout": (0.0, 1.0, "must be at least 0 and below 1"),
                  "momentum": (0.0, 1.0, "must be at least 0 and below 1"),
                  "finetune_dev_tolerance": (0.0, np.inf, "must be 0 or more")}
        for field, (lo, hi, why) in ranges.items():
            if not lo <= getattr(self, field) < hi:
                raise bad(field, why)
        if not 0 < self.finetune_fraction <= 1:
            raise bad("finetune_fraction", "must be above 0 and at most 1")
        try:
            keras.initializers.get(self.initializer)
        except (ValueError, TypeError):
            raise bad("initializer", "not a Keras initializer name (he_normal, "
                                     "glorot_uniform, ...)") from None
        return self



#: ``paper``: section 3.3 as published (SGD, lr 0.001, batch 128, dropout 0.1, raw flux, Keras
#: default initialisers). ``default``: what measurably learns; see BENCHMARKS.md.
RECIPES = {
    "paper": Recipe(optimizer="sgd", batch_size=PAPER_BATCH_SIZE, input_scaling="none",
                    initializer="glorot_uniform", lr_plateau_patience=0, noise_augment=False,
                    finetune_learning_rate=PAPER_LEARNING_RATE),
    "default": Recipe(),
}


def get_recipe(name: str, **overrides) -> Recipe:
    """A named recipe with the given fields replaced (None values are ignored)."""
    if name not in RECIPES:
        raise ApnetError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return dataclasses.replace(RECIPES[name], **{k: v for k, v in overrides.items()
                                                 if v is not None})


def make_optimizer(recipe: Recipe) -> keras.optimizers.Optimizer:
    if recipe.optimizer == "adam":
        return keras.optimizers.Adam(recipe.learning_rate)
    if recipe.optimizer == "sgd":
        return keras.optimizers.SGD(recipe.learning_rate, momentum=recipe.momentum)
    raise ApnetError(f"unknown optimizer {recipe.optimizer!r}; choose adam or sgd")


def bfloat16_is_native() -> bool:
    """Whether this machine computes bfloat16 in hardware.

    True for GPUs of compute capability 8.0 or newer (A100, H100) and for CPUs with AVX512_BF16 or
    AMX (Linux /proc/cpuinfo flags). Elsewhere bfloat16 is emulated and slower than float32.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return all(tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0))
                   >= (8, 0) for g in gpus)
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """``auto`` -> mixed_bfloat16 where the hardware has it (``bfloat16_is_native``), else float32.

    Mixed precision computes the convolutions and fc1, fc2 in bfloat16 and keeps float32 weights,
    loss and outputs. On this project's 2-core CPU it trains 1.65x faster at batch 128; the test
    scatter of two seeds stayed within run-to-run noise (BENCHMARKS.md). It is opt-in, so that a
    run gives the same kind of numbers on every machine. Saved models always compute in float32.
    """
    if precision == "auto":
        return "mixed_bfloat16" if bfloat16_is_native() else "float32"
    if precision not in PRECISIONS:
        raise ApnetError(f"unknown precision {precision!r}; choose auto or one of "
                         f"{', '.join(PRECISIONS)}")
    return precision


def get_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy for ``--strategy``.

    ``mirrored`` uses every GPU, or every logical CPU device when there is no GPU (so it can be
    tested on a CPU split into logical devices). ``multiworker`` reads the cluster from TF_CONFIG.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ApnetError("--strategy multiworker needs the TF_CONFIG environment variable; "
                             "see the README's 'Scale out' section")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _patch_keras_multiworker_reduce()
        return strategy
    raise ApnetError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def _patch_keras_multiworker_reduce() -> None:
    """Work around Keras 3.15's fit under MultiWorkerMirroredStrategy (tensorflow#72388).

    Keras averages each step's logs across the workers with ``strategy.reduce("MEAN", v,
    axis=0)``, which fails on the scalar losses it logs ("Invalid reduction dimension 0 for input
    with 0 dimensions"). Scalars are averaged with ``axis=None`` (the all-reduce) instead; every
    other case is Keras's own. Installed once, only when a multi-worker strategy is made.
    """
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    if getattr(original, "apnet_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and isinstance(
                strategy, tf.distribute.MultiWorkerMirroredStrategy):
            def mean(v):
                rank = strategy.experimental_local_results(v)[0].shape.rank
                return strategy.reduce("MEAN", v, axis=0 if rank else None)
            return tree.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica.apnet_patched = True
    trainer.reduce_per_replica = reduce_per_replica


def shard_policy(dist: tf.distribute.Strategy) -> tf.data.experimental.AutoShardPolicy:
    """How the workers of a multi-worker run share the data: DATA, every worker reads every shard
    and keeps its own part of each global batch.

    FILE sharding (a worker per shard file) cannot work with fewer shard files than workers
    (make-records writes one per split by default), and with more it gives workers unequal
    numbers of batches (shards differ in size, more so after the label filter and the Payne
    draw), which synchronous training cannot run. One worker (default, mirrored): OFF.
    """
    policy = tf.data.experimental.AutoShardPolicy
    if isinstance(dist, tf.distribute.MultiWorkerMirroredStrategy):
        return policy.DATA
    return policy.OFF


def save_model_atomic(model: keras.Model, path: str) -> None:
    """Save a .keras file through a temporary name, so a crash never leaves half a model.

    A model that trains in mixed precision is saved as its float32 twin, so every saved model
    gives float32 results wherever it is loaded.
    """
    with atomic_path(path) as tmp:
        with_precision(model, "float32").save(tmp)


class EarlyStoppingWithReload(keras.callbacks.Callback):
    """Paper 3.3: evaluate on dev after every epoch, save on improvement, stop after ``patience``
    epochs without one, and reload the best weights so the run ends with the best model.

    Args:
        best_path: where the best model is saved (a ``.keras`` file), or None to keep it in memory.
        monitor: the logs key that holds the dev loss (``val_loss`` when fit has validation_data).
        patience: epochs without improvement before stopping.
        state_path: optional JSON file holding (best, wait, best_epoch) so a resumed run goes on
            counting where it was killed.
    """

    def __init__(self, best_path: str | None = None, monitor: str = "val_loss",
                 patience: int = EARLY_STOPPING_PATIENCE, state_path: str | None = None,
                 min_delta: float = 0.0):
        super().__init__()
        self.best_path = best_path
        self.monitor = monitor
        self.patience = patience
        self.state_path = state_path
        self.min_delta = min_delta
        self.best = np.inf
        self.wait = 0
        self.best_epoch = -1
        self.stopped_epoch = None
        self.best_weights = None

    def on_train_begin(self, logs=None):
        state = read_json(self.state_path) if self.state_path else None
        if state:
            self.best, self.wait = state["best"], state["wait"]
            self.best_epoch = state["best_epoch"]
            if self.best_path and os.path.exists(self.best_path):
                self.best_weights = keras.models.load_model(self.best_path).get_weights()
        else:
            self.best, self.wait, self.best_epoch, self.best_weights = np.inf, 0, -1, None
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            raise ApnetError(f"early stopping: '{self.monitor}' is not in the epoch logs; "
                             "pass validation_data to fit")
        if current < self.best - self.min_delta:
            self.best, self.wait, self.best_epoch = float(current), 0, epoch
            self.best_weights = self.model.get_weights()
            if self.best_path:
                save_model_atomic(self.model, self.best_path)
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch
                self.model.stop_training = True
        if self.state_path:
            write_json(self.state_path, {"best": self.best, "wait": self.wait,
                                         "best_epoch": self.best_epoch})

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def dataset_loss(model: keras.Model, ds: tf.data.Dataset, std) -> float:
    """Combined standardised MSE (paper Table 2) of a model over a (flux, labels) dataset.

    It calls the model directly rather than through ``evaluate``, so any batch size works under
    any distribution strategy.
    """
    predict = predictor(model)
    preds, labels = [], []
    for flux, y in ds:
        preds.append(predict(flux))
        labels.append(y.numpy())
    if not preds:
        return float("nan")
    return standardized_mse(np.concatenate(preds), np.concatenate(labels), std)


def rolling_resample(model: keras.Model, train_for_seed: Callable[[int], tf.data.Dataset],
                     dev: tf.data.Dataset, focus_loss: Callable[[keras.Model], float], *,
                     patience_rounds: int = 3,
                     epoch_patience: int = EARLY_STOPPING_PATIENCE, max_epochs: int = 100,
                     max_rounds: int = 20, seed: int = 0, best_path: str | None = None,
                     dev_tolerance: float = 0.05,
                     dev_loss: Callable[[keras.Model], float] | None = None,
                     on_round: Callable[[dict], None] | None = None,
                     callbacks: Sequence[keras.callbacks.Callback] = ()) -> list[dict]:
    """Paper 3.4: fine-tune on mstar + yso plus a fresh random fraction of the Payne stars.

    Each round draws a new sample (``train_for_seed(seed + round)``) and trains with early stopping
    on ``dev``; when it stops, the best weights of the round are reloaded. Every round starts from
    "the last best performing model" (the paper's words): after a round that is not kept, the
    weights of the best round so far are reloaded, and the optimizer's learning rate is set back
    to the rate the model was compiled with, so that a schedule in ``callbacks`` (which Keras
    resets at each ``fit``) halves from the same start every round. The loop ends when
    ``focus_loss(model)`` (the loss on the mstar + yso dev stars) has not improved for
    ``patience_rounds`` rounds, or after ``max_rounds``. The model ends with the weights of the
    best round.

    A round counts as an improvement only if it also keeps ``dev_loss(model)`` (the loss on the
    whole dev split; default the compiled loss) within ``dev_tolerance`` (a fraction) of the
    starting model's: the paper adapts to M dwarfs and YSOs "without losing performance on the
    broader Payne data set". ``fit`` passes Table 2's loss for both.

    Returns:
        One dict per round: round, seed, epochs, dev_loss, focus_dev_loss, improved,
        best_before (the focus loss to beat).
    """
    if dev_loss is None:
        def dev_loss(m):
            return float(m.evaluate(dev, verbose=0))
    start_lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    best = focus_loss(model)
    dev_limit = dev_loss(model) * (1.0 + dev_tolerance)
    best_weights = model.get_weights()
    rounds, wait = [], 0
    for r in range(max_rounds):
        draw_seed = seed + r + 1
        model.set_weights(best_weights)
        model.optimizer.learning_rate.assign(start_lr)
        stopper = EarlyStoppingWithReload(monitor="val_loss", patience=epoch_patience)
        hist = model.fit(train_for_seed(draw_seed), validation_data=dev, epochs=max_epochs,
                         shuffle=False, callbacks=[stopper, *callbacks], verbose=0)
        focus, whole = float(focus_loss(model)), float(dev_loss(model))
        best_before = best  # round 1: the pretrained model's
        improved = focus < best and whole <= dev_limit
        if improved:
            best, best_weights, wait = focus, model.get_weights(), 0
            if best_path:
                save_model_atomic(model, best_path)
        else:
            wait += 1
        row = {"round": r + 1, "seed": draw_seed, "epochs": len(hist.history["loss"]),
               "dev_loss": whole, "focus_dev_loss": focus, "improved": improved,
               "best_before": float(best_before)}
        rounds.append(row)
        if on_round:
            on_round(row)
        if wait >= patience_rounds:
            break
    model.set_weights(best_weights)
    return rounds


class _HistoryCSV(keras.callbacks.Callback):
    """Write each epoch's logs to history.csv with its stage, rewriting the file atomically.

    With ``cumulative`` the epoch number keeps counting across several ``fit`` calls (fine-tuning
    rounds); otherwise a resumed ``fit`` replaces the rows from the epoch it restarts at.
    """

    def __init__(self, path: str, stage: str, cumulative: bool = False):
        super().__init__()
        self.path, self.stage, self.cumulative = path, stage, cumulative
        self.count = 0

    def on_epoch_end(self, epoch, logs=None):
        rows = _read_csv(self.path)
        if self.cumulative:
            self.count += 1
            number = self.count
        else:
            number = epoch + 1
            rows = [r for r in rows if not (r["stage"] == self.stage and int(r["epoch"]) >= number)]
        rows.append({"stage": self.stage, "epoch": number,
                     **{k: float(v) for k, v in (logs or {}).items()}})
        _write_csv(self.path, rows)


def _read_csv(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_csv(path: str, rows: list[dict]) -> None:
    fields = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def training_data(records_dir: str, recipe: Recipe, drop_remainder: bool,
                  sample: dict[str, float] | None = None, seed: int | None = None
                  ) -> tf.data.Dataset:
    """Shuffled, labelled training batches of (flux, labels).

    With ``recipe.noise_augment`` each epoch sees each spectrum with fresh noise drawn as in the
    paper's Monte Carlo (N(0, 1) times the error capped at 5x the typical error; none at bad
    pixels), so a small training set is not memorised noise and all.
    """
    seed = recipe.seed if seed is None else seed
    features = ("flux", "err", "bad") if recipe.noise_augment else ("flux",)
    ds = make_dataset(records_dir, splits=["train"], batch_size=recipe.batch_size, shuffle=True,
                      seed=seed, sample=sample, labeled_only=True, features=features,
                      drop_remainder=drop_remainder)
    if not recipe.noise_augment:
        return ds
    return ds.map(add_noise, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def add_noise(features: dict, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """({"flux", "err", "bad"}, labels) -> (flux + N(0, 1) * ``uncertainty.noise_scale``, labels).

    The scale is the Monte Carlo's (paper 3.5): each pixel's error, capped at 5x the spectrum's
    typical error, and 0 at bad pixels, which keep their flux. Shapes (B, 8575); labels pass.
    """
    from .uncertainty import noise_scale

    scale = noise_scale(features["err"], features["bad"])
    return features["flux"] + tf.random.normal(tf.shape(scale)) * scale, labels


def schedule_callbacks(recipe: Recipe) -> list[keras.callbacks.Callback]:
    """The recipe's learning-rate schedule: Keras ReduceLROnPlateau on the dev loss, or none."""
    if recipe.lr_plateau_patience <= 0:
        return []
    return [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                              patience=recipe.lr_plateau_patience,
                                              min_lr=recipe.learning_rate / 64, verbose=0)]


def compile_model(model: keras.Model, recipe: Recipe, std,
                  dist: tf.distribute.Strategy | None = None) -> keras.Model:
    """Compile with the recipe's optimizer and the masked standardised MSE (Table 2's loss)."""
    model.compile(optimizer=make_optimizer(recipe), loss=MaskedStandardizedMSE(std))
    if isinstance(dist, tf.distribute.MultiWorkerMirroredStrategy):
        _build_for_multiworker(model, dist)
    return model


def _build_for_multiworker(model: keras.Model, dist: tf.distribute.Strategy) -> None:
    """Work around Keras 3.15 under MultiWorkerMirroredStrategy.

    Keras's fit and evaluate first reduce one input batch across the workers to build the model
    (``TensorFlowTrainer._maybe_symbolic_build``); this strategy cannot reduce an (x, y) pair and
    fails with "Attempt to convert a value (PerReplica...) to a Tensor". The model, its compiled
    loss and its optimizer are built here from zero inputs of the right shapes instead, and that
    step is switched off for this model (it only builds what is built already).
    """
    batch = (np.zeros((1, model.input_shape[-1]), np.float32), np.zeros((1, 3), np.float32))
    with dist.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


@dataclasses.dataclass
class FitResult:
    run_dir: str
    model: keras.Model
    epochs: dict  # stage -> epochs run
    rounds: list[dict]
    table2: object = None  # pandas DataFrame, paper Table 2
    table3: object = None  # pandas DataFrame, paper Table 3


def prepare_run_folder(run_dir: str, stage: str, resume: bool, overwrite: bool) -> None:
    """Take ``run_dir`` for training (``folders.claim``), before anything is written.

    A new or empty folder is taken. A folder that holds a run is continued by ``resume`` or by
    ``stage="finetune"`` (which starts from its pretrained model), and replaced by
    ``overwrite``: its ``RUN_FILES`` are deleted. Anything else is refused, so a model is never
    retrained over silently. The old calibration.json is always deleted: it was fitted on a
    model that training is about to change.

    Raises:
        ApnetError: the folder holds a run and neither resume, finetune nor overwrite was asked
            for; or it is not a run folder.
    """
    from .folders import check, claim, remove_made

    def old_run(folder):
        return any(os.path.exists(os.path.join(folder, n)) for n in (NORMALIZATION, BEST_MODEL))

    held = check(run_dir, "run", legacy=old_run)
    if held and not (overwrite or resume or stage == "finetune"):
        raise ApnetError(f"{run_dir}: already holds a run; pass --overwrite to replace it, "
                         "--resume to continue it, or choose a new folder")
    claim(run_dir, "run", legacy=old_run)
    if held and overwrite:
        remove_made(run_dir, RUN_FILES)
    names = ["calibration.json"]
    if not resume and stage == "finetune":
        # fine-tuning again keeps the pretraining record: pretrain.done, its early-stopping state
        # and its history rows; only the fine-tuning rounds and rows are replaced
        names += [ROUNDS, "backup"]
        history = os.path.join(run_dir, HISTORY)
        if os.path.exists(history):
            _write_csv(history, [r for r in _read_csv(history) if r["stage"] != "finetune"])
    elif not resume:  # a fresh start: the history and state of an earlier attempt go
        names += [HISTORY, ROUNDS, PRETRAIN_STATE, PRETRAIN_DONE, "backup"]
    remove_made(run_dir, names)


def fit(records_dir: str, run_dir: str, stage: str = "all", recipe: Recipe | None = None,
        resume: bool = False, strategy: str = "default",
        on_epoch: Callable[[str, int, dict], None] | None = None,
        on_round: Callable[[dict], None] | None = None, overwrite: bool = False) -> FitResult:
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
    """
    if stage not in STAGES:
        raise ApnetError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    recipe = (recipe or RECIPES["default"]).validate()
    if strategy not in STRATEGIES:
        raise ApnetError(f"--strategy: choose one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if strategy == "multiworker" and "TF_CONFIG" not in os.environ:
        get_strategy(strategy)  # its one-line error, before the run folder is touched
    precision = resolve_precision(recipe.precision)
    manifest = check_records(records_dir, stage)
    if stage == "finetune" and not os.path.exists(os.path.join(run_dir, PRETRAINED_MODEL)):
        raise ApnetError(f"{os.path.join(run_dir, PRETRAINED_MODEL)}: no pretrained model; "
                         "run --stage pretrain first")
    if resume and strategy == "multiworker":
        raise ApnetError("--resume does not work with --strategy multiworker; start the run "
                         "again without --resume")
    work_dir = worker_folder(strategy, run_dir, stage)
    try:
        prepare_run_folder(work_dir, stage, resume, overwrite)
        dist = get_strategy(strategy)
        result = _fit_in(work_dir, records_dir, manifest, stage, recipe, precision, resume,
                         dist, on_epoch, on_round)
        return dataclasses.replace(result, run_dir=run_dir)
    finally:
        if work_dir != run_dir:
            shutil.rmtree(work_dir, ignore_errors=True)


def is_chief(strategy: str) -> bool:
    """Whether this process writes the run: always, except on the workers of a multi-worker
    cluster (TF_CONFIG) other than the chief (the "chief" task, else worker 0)."""
    if strategy != "multiworker":
        return True
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    if task.get("type") == "chief":
        return True
    return (task.get("type") == "worker" and int(task.get("index", 0)) == 0
            and "chief" not in config.get("cluster", {}))


def worker_folder(strategy: str, run_dir: str, stage: str) -> str:
    """The folder this process writes the run in: ``run_dir`` on the chief (or a single
    process); a temporary folder on the other workers of a multi-worker run, so that they never
    write over the chief's files (``run_dir`` may be on a shared file system). For
    ``finetune`` that folder starts with a copy of the run's pretraining files."""
    if is_chief(strategy):
        return run_dir
    work_dir = tempfile.mkdtemp(prefix="apnet-worker-")
    if stage == "finetune":
        for name in (PRETRAINED_MODEL, NORMALIZATION, HISTORY, PRETRAIN_DONE):
            if os.path.exists(os.path.join(run_dir, name)):
                shutil.copy2(os.path.join(run_dir, name), work_dir)
    return work_dir


def _fit_in(run_dir, records_dir, manifest, stage, recipe, precision, resume, dist, on_epoch,
            on_round) -> FitResult:
    """``fit`` once the strategy is made and the folder to write is prepared."""
    pretrained = os.path.join(run_dir, PRETRAINED_MODEL)
    keras.utils.set_random_seed(recipe.seed)
    if recipe.deterministic:
        # Process-wide and permanent: every op, tf.data pipeline included, then runs in a fixed
        # order, so two runs with the same seed give bit-identical weights.
        tf.config.experimental.enable_op_determinism()
    run = _Run(records_dir, run_dir, recipe, precision, dist, on_epoch)
    with dist.scope():
        if stage == "finetune":
            model = load_keras(pretrained)
            mean, std = model_stats(model)
        else:
            mean, std = target_stats(manifest)
        write_normalization(run_dir, records_dir, manifest, mean, std, recipe, precision,
                            keep_existing=stage == "finetune")
        epochs_run: dict[str, int] = {}
        rounds: list[dict] = []
        if stage in ("pretrain", "all"):
            model, epochs_run["pretrain"] = pretrain(run, mean, std, resume)
        if stage in ("finetune", "all"):
            model, rounds = finetune(run, model, std, on_round)
            epochs_run["finetune"] = sum(r["epochs"] for r in rounds)
    shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
    model = with_precision(model, "float32")  # report what was saved
    tables = write_run_report(model, records_dir, run_dir, std)
    return FitResult(run_dir, model, epochs_run, rounds, *tables)


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


def model_stats(model: keras.Model) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std), each (3,), built into a model's de-standardisation layer."""
    labels = model.get_layer("labels")
    return np.asarray(labels.mean, dtype=float), np.asarray(labels.std, dtype=float)


def write_normalization(run_dir: str, records_dir: str, manifest: dict, mean, std,
                        recipe: Recipe, precision: str, keep_existing: bool = False) -> None:
    """Write normalization.json: the target statistics of the run's model and how it trained.

    With ``keep_existing`` (fine-tuning) the label range and the pretraining records of an
    existing file are kept, and the fine-tuning records are added as ``finetune_records``.
    """
    path = os.path.join(run_dir, NORMALIZATION)
    old = (read_json(path) or {}) if keep_existing else {}
    stats = manifest["target_stats"]
    norm = {"targets": manifest["targets"], "mean": list(map(float, mean)),
            "std": list(map(float, std)), "min": old.get("min", stats.get("min")),
            "max": old.get("max", stats.get("max")),
            "records": old.get("records", os.path.abspath(records_dir)),
            "recipe": dataclasses.asdict(recipe), "precision": precision}
    if keep_existing:
        norm["finetune_records"] = os.path.abspath(records_dir)
    write_json(path, norm)


class _Run:
    """What the stages of one ``fit`` share: folders, recipe, strategy, dev data, reporting."""

    def __init__(self, records_dir, run_dir, recipe, precision, dist, on_epoch):
        self.records_dir, self.run_dir, self.recipe = records_dir, run_dir, recipe
        self.precision, self.dist, self.on_epoch = precision, dist, on_epoch
        # Keras 3 under several replicas fails on a ragged last batch (AddN shape mismatch, even
        # in evaluate), so those runs drop it: at most batch_size - 1 stars, the same ones every
        # epoch for dev. One replica keeps every star.
        self.drop_remainder = dist.num_replicas_in_sync > 1
        bs = recipe.batch_size
        for split in ("train", "dev"):
            if self.drop_remainder and count_records(records_dir, [split]) < bs:
                raise ApnetError(f"{records_dir}: fewer {split} records than one batch ({bs}); "
                                 "use a smaller --batch-size with several replicas")
        self.dev = self.sharded(make_dataset(records_dir, splits=["dev"], batch_size=bs,
                                             labeled_only=True,
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


def pretrain(run: _Run, mean, std, resume: bool) -> tuple[keras.Model, int]:
    """Paper 3.3: train on every training star with early stopping; returns (model, epochs).

    The best model is saved as pretrained.keras and best.keras. A resumed run whose pretraining
    had finished loads pretrained.keras instead (0 epochs).
    """
    recipe, pretrained = run.recipe, run.path(PRETRAINED_MODEL)
    if resume and os.path.exists(run.path(PRETRAIN_DONE)) and os.path.exists(pretrained):
        model = load_keras(pretrained)
        save_model_atomic(model, run.path(BEST_MODEL))
        return model, 0
    model = build_model(mean, std, dropout=recipe.dropout, input_scaling=recipe.input_scaling,
                        initializer=recipe.initializer, precision=run.precision)
    compile_model(model, recipe, std, run.dist)
    train = run.sharded(training_data(run.records_dir, recipe,
                                      drop_remainder=run.drop_remainder))
    stopper = EarlyStoppingWithReload(pretrained, patience=recipe.patience,
                                      state_path=run.path(PRETRAIN_STATE))
    callbacks = [keras.callbacks.BackupAndRestore(run.path(os.path.join("backup", "pretrain"))),
                 *schedule_callbacks(recipe), stopper,
                 _HistoryCSV(run.path(HISTORY), "pretrain"), run.reporter("pretrain")]
    hist = model.fit(train, validation_data=run.dev, epochs=recipe.epochs, verbose=0,
                     shuffle=False, callbacks=callbacks)
    if not os.path.exists(pretrained):
        save_model_atomic(model, pretrained)
    open(run.path(PRETRAIN_DONE), "w").close()
    save_model_atomic(model, run.path(BEST_MODEL))
    return model, len(hist.history.get("loss", []))


def finetune_recipe(recipe: Recipe) -> Recipe:
    """The recipe of the fine-tuning rounds: the fine-tuning learning rate, and with it the
    schedule's floor (``schedule_callbacks``)."""
    return dataclasses.replace(recipe, learning_rate=recipe.finetune_learning_rate)


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
    focus_dev = make_dataset(records_dir, splits=["dev"], categories=focus_cats,
                             batch_size=bs, labeled_only=True)

    def train_for_seed(seed: int) -> tf.data.Dataset:
        return run.sharded(training_data(records_dir, recipe, run.drop_remainder,
                                         sample={"payne": recipe.finetune_fraction}, seed=seed))

    rounds_path = run.path(ROUNDS)

    def log_round(row):
        _write_csv(rounds_path, _read_csv(rounds_path) + [row])
        if on_round:
            on_round(row)

    if os.path.exists(rounds_path):
        os.remove(rounds_path)
    rounds = rolling_resample(
        model, train_for_seed, run.dev, lambda m: dataset_loss(m, focus_dev, std),
        dev_loss=lambda m: dataset_loss(m, run.dev, std),
        patience_rounds=recipe.finetune_patience, epoch_patience=recipe.patience,
        max_epochs=recipe.epochs, max_rounds=recipe.finetune_max_rounds,
        seed=recipe.seed * 1000, dev_tolerance=recipe.finetune_dev_tolerance,
        best_path=run.path(BEST_MODEL), on_round=log_round,
        callbacks=[*schedule_callbacks(tuning),
                   _HistoryCSV(run.path(HISTORY), "finetune", cumulative=True),
                   run.reporter("finetune")])
    save_model_atomic(model, run.path(BEST_MODEL))
    return model, rounds


def write_run_report(model: keras.Model, records_dir: str, run_dir: str, std):
    """Tables 2 and 3 (CSV and Markdown) and training.png for a run; returns (table2, table3)."""
    from .plots import training_curve

    res = predict_records(model, records_dir, splits=["train", "dev", "test"])
    table2, table3 = evaluation_tables(res["pred"], res["labels"], res["category"],
                                       res["split"], std)
    write_tables(run_dir, table2, table3)
    if os.path.exists(os.path.join(run_dir, HISTORY)):
        training_curve(os.path.join(run_dir, HISTORY), os.path.join(run_dir, "training.png"))
    return table2, table3
