"""Keras callbacks of training: early stopping with reload (paper 3.3), the per-epoch history
file, the learning-rate schedule, and the atomic, always-float32 model save."""

from __future__ import annotations

import errno
import os

import h5py
import keras
import numpy as np

from apnet_tf.constants import EARLY_STOPPING_PATIENCE
from apnet_tf.errors import ApnetError, first_line
from apnet_tf.io.files import atomic_path, read_json, write_json
from apnet_tf.model.network import save_model_atomic
from apnet_tf.training.run_folder import read_csv_rows, write_csv_rows

__all__ = ["EarlyStoppingWithReload", "HistoryCSV", "schedule_callbacks", "average_callbacks",
           "average_momentum", "check_finite", "SafeBackupAndRestore"]


class EarlyStoppingWithReload(keras.callbacks.Callback):
    """Paper 3.3: evaluate on dev after every epoch, save on improvement, stop after ``patience``
    epochs without one, and reload the best weights so the run ends with the best model.

    Args:
        best_path: where the best model is saved (a ``.keras`` file), or None to keep it in memory.
        monitor: the logs key that holds the dev loss (``val_loss`` when fit has validation_data).
        patience: epochs without improvement before stopping.
        state_path: optional JSON file holding (best, wait, best_epoch) so a resumed run goes on
            counting where it was killed.
        min_improvement: an epoch improves only when its dev loss is at least this fraction
            below the best so far (0: any decrease).
    """

    def __init__(self, best_path: str | None = None, monitor: str = "val_loss",
                 patience: int = EARLY_STOPPING_PATIENCE, state_path: str | None = None,
                 min_improvement: float = 0.0):
        super().__init__()
        self.best_path = best_path
        self.monitor = monitor
        self.patience = patience
        self.state_path = state_path
        self.min_improvement = min_improvement
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
        if current < self.best * (1.0 - self.min_improvement):
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


class HistoryCSV(keras.callbacks.Callback):
    """Write each epoch's logs to history.csv with its stage, rewriting the file atomically.

    With ``cumulative`` the epoch number keeps counting across several ``fit`` calls (fine-tuning
    rounds); otherwise a resumed ``fit`` replaces the rows from the epoch it restarts at.
    """

    def __init__(self, path: str, stage: str, cumulative: bool = False):
        super().__init__()
        self.path, self.stage, self.cumulative = path, stage, cumulative
        self.count = 0

    def on_epoch_end(self, epoch, logs=None):
        rows = read_csv_rows(self.path)
        if self.cumulative:
            self.count += 1
            number = self.count
        else:
            number = epoch + 1
            rows = [r for r in rows if not (r["stage"] == self.stage and int(r["epoch"]) >= number)]
        rows.append({"stage": self.stage, "epoch": number,
                     **{k: float(v) for k, v in (logs or {}).items()}})
        write_csv_rows(self.path, rows)


def schedule_callbacks(recipe) -> list[keras.callbacks.Callback]:
    """The recipe's learning-rate schedule: Keras ReduceLROnPlateau on the dev loss, or none."""
    if recipe.lr_plateau_patience <= 0:
        return []
    return [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                              patience=recipe.lr_plateau_patience,
                                              min_lr=recipe.learning_rate / 64, verbose=0)]


def average_callbacks(recipe) -> list[keras.callbacks.Callback]:
    """With ``recipe.ema_momentum`` > 0, Keras' SwapEMAWeights: the optimizer's moving average of
    the weights is in the model while it is validated and from each epoch's end to the next
    epoch's start, so the callbacks after it judge, save and reload the averaged weights.

    It must come after the backup callback (whose epoch-end save then holds the raw weights that
    training continues from) and before the callbacks that read the dev loss or save the model.
    """
    if recipe.ema_momentum <= 0:
        return []
    return [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)]


def average_momentum(momentum: float, steps_per_epoch: int) -> float:
    """The weight average's momentum for an epoch of ``steps_per_epoch`` steps: ``momentum``,
    but at most 1 - 1 / (steps + 1), so that the average spans at most about one epoch. It is
    validated once an epoch; a longer span would lag behind training, and on a small training
    set (a few steps an epoch) would still hold the initial weights when early stopping judges.
    An unknown epoch length (0 or less) keeps ``momentum``.
    """
    if momentum <= 0 or steps_per_epoch <= 0:
        return momentum
    return min(momentum, 1.0 - 1.0 / (steps_per_epoch + 1))


def check_finite(model: keras.Model, stopper: EarlyStoppingWithReload, stage: str,
                 made: list[str]) -> None:
    """Raise ApnetError when a training stage ended without a finite dev loss or with
    non-finite weights (it diverged: e.g. a learning rate far too large), after removing the
    model files ``made`` so that no "best" model of a diverged run is left.
    """
    finite = np.isfinite(stopper.best) and all(
        np.isfinite(w).all() for w in model.get_weights())
    if finite:
        return
    for path in made:
        if os.path.exists(path):
            os.remove(path)
    raise ApnetError(f"{stage} diverged: the dev loss or the weights are not finite (NaN); no "
                     "model was kept; lower --learning-rate or check the records")


class SafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore (``--resume``) whose backup survives a full disk.

    Each epoch's weights are written under a temporary name and renamed, so a write cut short
    never replaces the last good backup; a failed write is one ApnetError naming the file. On
    resume, a backup that cannot be read whole (truncated by a crash or an older version) is
    discarded and the stage starts again; ``on_notice`` gets one line saying so.
    """

    def __init__(self, backup_dir: str, on_notice=None):
        super().__init__(backup_dir, double_checkpoint=False)
        self.on_notice = on_notice

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        try:
            with atomic_path(self._weights_path) as tmp:
                self.model.save_weights(tmp, overwrite=True)
            write_json(self._training_metadata_path,
                       {"epoch": self._current_epoch, "batch": self._last_batch_seen})
        except (OSError, RuntimeError, ValueError) as exc:
            raise ApnetError(f"{self._weights_path}: cannot write the training backup "
                             f"({_reason(exc)}); free some space, then run fit --resume") from None

    def discard_unreadable(self) -> bool:
        """Remove a backup that cannot be resumed from (and say so through ``on_notice``);
        True when one was removed, so the caller can reset what else the stage kept."""
        if not (os.path.exists(self._weights_path)
                or os.path.exists(self._training_metadata_path)):
            return False
        problem = _unreadable_backup(self._weights_path, self._training_metadata_path)
        if not problem:
            return False
        for path in (self._weights_path, self._training_metadata_path):
            if os.path.exists(path):
                os.remove(path)
        if self.on_notice:
            self.on_notice(f"{self._weights_path}: {problem}; discarded it, the stage starts "
                           "again")
        return True

    def on_train_begin(self, logs=None):
        self.discard_unreadable()
        super().on_train_begin(logs)


def _reason(exc: BaseException) -> str:
    """Why a write failed, in one line: h5py's ENOSPC message runs over several lines of HDF5
    internals (buffer addresses, offsets) and names only the temporary file."""
    if getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in str(exc):
        return os.strerror(errno.ENOSPC)
    strerror = getattr(exc, "strerror", None)
    return str(strerror).splitlines()[0] if strerror else first_line(exc)


def _unreadable_backup(weights_path: str, metadata_path: str) -> str | None:
    """Why a BackupAndRestore backup cannot be resumed from, or None if it can."""
    meta = read_json(metadata_path)
    if not isinstance(meta, dict) or not isinstance(meta.get("epoch"), int):
        return f"no usable {os.path.basename(metadata_path)} beside it"
    try:
        with h5py.File(weights_path, "r") as f:
            f.visititems(lambda name, obj: obj[()] if isinstance(obj, h5py.Dataset) else None)
    except Exception as exc:  # h5py raises OSError, KeyError, RuntimeError ... for a cut file
        return f"not a complete weights file (truncated or damaged: {first_line(exc)})"
    return None
