"""Paper 3.4: the rolling Payne resample that adapts a pretrained model to M dwarfs and YSOs,
and the loss (Table 2's) that judges its rounds."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from apnet_tf.constants import EARLY_STOPPING_PATIENCE
from apnet_tf.model.network import predictor, save_model_atomic, standardized_mse
from apnet_tf.training.callbacks import EarlyStoppingWithReload

__all__ = ["dataset_loss", "rolling_resample", "average_rounds"]


def dataset_loss(model: keras.Model, ds: tf.data.Dataset, std) -> float:
    """Combined standardised MSE (paper Table 2) of a model over a (flux, labels) dataset, or
    ((flux, photometry), labels) for a two-input model.

    It calls the model directly rather than through ``evaluate``, so any batch size works under
    any distribution strategy.
    """
    predict = predictor(model)
    preds, labels = [], []
    for x, y in ds:
        preds.append(predict(*x) if isinstance(x, tuple) else predict(x))
        labels.append(y.numpy())
    if not preds:
        return float("nan")
    return standardized_mse(np.concatenate(preds), np.concatenate(labels), std)


def rolling_resample(model: keras.Model, train_for_seed: Callable[[int], tf.data.Dataset],
                     dev: tf.data.Dataset, focus_loss: Callable[[keras.Model], float], *,
                     patience_rounds: int = 3, epoch_patience: int = EARLY_STOPPING_PATIENCE,
                     epoch_min_improvement: float = 0.0, max_epochs: int = 100,
                     max_rounds: int = 20, seed: int = 0,
                     best_path: str | None = None, dev_tolerance: float = 0.05,
                     dev_loss: Callable[[keras.Model], float] | None = None,
                     on_round: Callable[[dict], None] | None = None,
                     callbacks: Sequence[keras.callbacks.Callback] = ()) -> list[dict]:
    """Paper 3.4: fine-tune on mstar + yso plus a fresh random fraction of the Payne stars.

    Each round draws a new sample (``train_for_seed(seed + round)``) and trains with early stopping
    on ``dev`` (``epoch_patience``, ``epoch_min_improvement``) and ends on its best weights. Every
    round starts from "the last best performing model" (paper): after a round not kept, the best
    round's weights are reloaded, and the optimizer's learning rate is set back to the model's
    compiled rate, so that a schedule in ``callbacks`` (which Keras resets at each ``fit``)
    halves from the same start every round. The loop ends when ``focus_loss(model)`` (mstar + yso
    dev loss) has not improved for ``patience_rounds`` rounds, or after ``max_rounds``.

    A round improves only if ``dev_loss(model)`` (whole dev; default the compiled loss) also stays
    within ``dev_tolerance`` (a fraction) of the starting model's: the paper adapts to M dwarfs and
    YSOs "without losing performance on the broader Payne data set". ``fit`` passes Table 2's loss.

    Returns:
        One dict per round: round, seed, epochs, dev_loss, focus_dev_loss, improved,
        best_before (the focus loss to beat), dev_limit (the most ``dev_loss`` may be).
    """
    dev_loss = dev_loss or (lambda m: float(m.evaluate(dev, verbose=0)))
    start_lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    best = focus_loss(model)
    dev_limit = dev_loss(model) * (1.0 + dev_tolerance)
    best_weights = model.get_weights()
    rounds, wait = [], 0
    for r in range(max_rounds):
        draw_seed = seed + r + 1
        model.set_weights(best_weights)
        model.optimizer.learning_rate.assign(start_lr)
        stopper = EarlyStoppingWithReload(monitor="val_loss", patience=epoch_patience,
                                          min_improvement=epoch_min_improvement)
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
               "best_before": float(best_before), "dev_limit": float(dev_limit)}
        rounds.append(row)
        if on_round:
            on_round(row)
        if wait >= patience_rounds:
            break
    model.set_weights(best_weights)
    return rounds


def average_rounds(model: keras.Model, ends: list[list[np.ndarray]], rounds: list[dict],
                   focus_loss: Callable[[keras.Model], float],
                   dev_loss: Callable[[keras.Model], float],
                   best_path: str | None = None) -> dict | None:
    """The end of a fine-tuning on the average of its rounds' weights, if that passes a round's
    gate (``rolling_resample``'s): a lower ``focus_loss`` than the best round's, ``dev_loss``
    within the limit. Weight averaging of fine-tuned networks that share a start (every round
    starts from the best so far), as in Wortsman et al. 2022's model soups: the wander of the
    weights from epoch to epoch, which the dev loss cannot see, partly cancels in the mean.

    Args:
        model: the network as ``rolling_resample`` left it (the best round's weights).
        ends: each round's end weights (``model.get_weights()`` when ``on_round`` had its row),
            of the rounds that kept the whole-dev loss within its limit.
        rounds: ``rolling_resample``'s rows.

    Returns:
        None for fewer than two ``ends``; else the average's row (``round`` "average", 0 epochs,
        ``averaged``: how many), the average left in ``model`` (and saved at ``best_path``) if
        it improved, the best round's weights if not.
    """
    if len(ends) < 2 or not rounds:
        return None
    last, kept = rounds[-1], model.get_weights()
    best = last["focus_dev_loss"] if last["improved"] else last["best_before"]
    model.set_weights([np.mean(np.stack(ws), axis=0, dtype=np.float64).astype(ws[0].dtype)
                       for ws in zip(*ends)])
    focus, whole = float(focus_loss(model)), float(dev_loss(model))
    row = {"round": "average", "seed": "", "epochs": 0, "dev_loss": whole,
           "focus_dev_loss": focus, "improved": focus < best and whole <= last["dev_limit"],
           "best_before": float(best), "dev_limit": float(last["dev_limit"]),
           "averaged": len(ends)}
    if not row["improved"]:
        model.set_weights(kept)
    elif best_path:
        save_model_atomic(model, best_path)
    return row
