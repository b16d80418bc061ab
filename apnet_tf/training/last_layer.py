"""The last layer fitted again in inference mode, each kind of star weighted alike: the end of
``fit`` when ``Recipe.refit_last_layer`` is on (``fit --refit-last-layer``; off by default).

Why: the network trains with dropout on and, in the default recipe, on noise-augmented spectra,
but predicts with dropout off on the spectra as they are; and its output wanders from epoch to
epoch by tens of kelvin at the learning rates that end training, while early stopping judges the
whole dev loss, in which an offset of the few M dwarfs and YSOs weighs less than that loss moves
from one epoch to the next. So a run can end with its cool stars offset in their own training
split (``bench/cool_bias.py`` measures both). Fitting the last layer (fc3, 512 -> 3) again by
least squares on the training split's features *as the network computes them at inference*, with
each category (payne, mstar, yso) given the same total weight, removes the offset: a linear
problem in the layer the offset lives in, solved in closed form.

It is a ridge regression toward the trained layer (penalty lambda times the mean diagonal of the
weighted F^T F; the intercept free) on the model's standardised targets, each target on the
training stars that have its label. lambda is chosen per target among ``LAST_LAYER_PENALTIES`` by
the dev split's standardised MSE averaged over its categories; infinity, the trained layer, is
one of the choices. Only sums over the stars are kept (F^T F, F^T z per category and target), so
memory does not grow with the survey.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from apnet_tf.data.dataset import make_dataset

__all__ = ["LAST_LAYER_PENALTIES", "Moments", "moments", "ridge_toward", "refit_last_layer"]

#: Ridge penalties tried, in units of the mean diagonal of the weighted F^T F (F: the training
#: features); infinity keeps the trained layer.
LAST_LAYER_PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, np.inf)


class Moments:
    """Per category and target: the sums A^T A (P+1, P+1), A^T z (P+1,), z^T z and the count of
    the stars with that label, where A is [features, 1] and z the standardised label."""

    def __init__(self):
        self.gram: dict[str, list[np.ndarray]] = {}
        self.cross: dict[str, list[np.ndarray]] = {}
        self.sq: dict[str, np.ndarray] = {}
        self.count: dict[str, np.ndarray] = {}

    def add(self, feats: np.ndarray, z: np.ndarray, categories: np.ndarray) -> None:
        """Add a batch: feats (B, P), z (B, 3) with NaN for missing labels, categories (B,)."""
        a = np.hstack([feats, np.ones((len(feats), 1))])
        for cat in np.unique(categories):
            if cat not in self.gram:
                p = a.shape[1]
                self.gram[cat] = [np.zeros((p, p)) for _ in range(3)]
                self.cross[cat] = [np.zeros(p) for _ in range(3)]
                self.sq[cat], self.count[cat] = np.zeros(3), np.zeros(3)
            for k in range(3):
                sel = (categories == cat) & np.isfinite(z[:, k])
                self.gram[cat][k] += a[sel].T @ a[sel]
                self.cross[cat][k] += a[sel].T @ z[sel, k]
                self.sq[cat][k] += float(np.sum(z[sel, k] ** 2))
                self.count[cat][k] += int(sel.sum())

    def balanced(self, k: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(A^T W A, A^T W z, categories) of target k with each star weighted by 1 / (stars of
        its category with that label): every category counts alike."""
        cats = [c for c in self.gram if self.count[c][k] > 0]
        gram = sum(self.gram[c][k] / self.count[c][k] for c in cats)
        cross = sum(self.cross[c][k] / self.count[c][k] for c in cats)
        return gram, cross, cats

    def mse(self, k: int, x: np.ndarray) -> float:
        """The mean over categories of the standardised MSE of target k for the layer x (P+1,)."""
        cats = [c for c in self.gram if self.count[c][k] > 0]
        per = [(x @ self.gram[c][k] @ x - 2 * x @ self.cross[c][k] + self.sq[c][k])
               / self.count[c][k] for c in cats]
        return float(np.mean(per)) if per else float("nan")


def moments(model: keras.Model, records_dir: str, split: str, batch_size: int = 256,
            photometry: bool = False) -> Moments:
    """``Moments`` of the input of fc3 at inference (dropout off) over a split's labelled
    records, targets standardised with the model's own mean and std."""
    sub = keras.Model(model.inputs, model.get_layer("fc3").input)
    run = tf.function(lambda x: sub(x, training=False), reduce_retracing=True)
    labels = model.get_layer("labels")
    mean, std = np.asarray(labels.mean, np.float64), np.asarray(labels.std, np.float64)
    features = ("flux", "category") + (("photometry",) if photometry else ())
    out = Moments()
    for ex, y in make_dataset(records_dir, splits=[split], batch_size=batch_size,
                              labeled_only=True, features=features):
        x = [ex["flux"], ex["photometry"]] if photometry else ex["flux"]
        feats = np.asarray(run(x), np.float64)
        out.add(feats, (y.numpy().astype(np.float64) - mean) / std,
                ex["category"].numpy().astype(str))
    return out


def ridge_toward(gram: np.ndarray, cross: np.ndarray, x0: np.ndarray,
                 penalty: float) -> np.ndarray:
    """argmin over x = (w, b) of x^T G x - 2 x^T c + lambda ||w - w0||^2 (the intercept b free),
    lambda = ``penalty`` times the mean diagonal of G's feature block; infinity gives x0.
    gram (P+1, P+1), cross and x0 (P+1,), the intercept last."""
    if not np.isfinite(penalty):
        return x0
    reg = np.full(len(gram), penalty * float(np.mean(np.diag(gram)[:-1])))
    reg[-1] = 0.0  # the offset is what the refit is for
    return np.linalg.solve(gram + np.diag(reg), cross + reg * x0)


def refit_last_layer(model: keras.Model, records_dir: str, batch_size: int = 256,
                     photometry: bool = False, penalties=LAST_LAYER_PENALTIES) -> dict:
    """Fit fc3 of ``model`` again, in place, on the train split (see the module's docstring).

    Returns:
        {"penalty": [3 values; None where the trained layer was kept], "dev_mse_before",
        "dev_mse_after": [3 values each, standardised, averaged over the dev categories],
        "train_stars": {category: stars with a Teff label}, "seconds": its wall time}.
    """
    start = time.perf_counter()
    fc3 = model.get_layer("fc3")
    w0, b0 = (np.asarray(v, np.float64) for v in fc3.get_weights())
    train = moments(model, records_dir, "train", batch_size, photometry)
    dev = moments(model, records_dir, "dev", batch_size, photometry)
    w, b = w0.copy(), b0.copy()
    out = {"penalty": [], "dev_mse_before": [], "dev_mse_after": [],
           "train_stars": {str(c): int(n[0]) for c, n in train.count.items()}}
    for k in range(3):
        x0 = np.append(w0[:, k], b0[k])
        gram, cross, _ = train.balanced(k)
        best = (dev.mse(k, x0), np.inf, x0)
        out["dev_mse_before"].append(best[0])
        for penalty in penalties:
            if not np.isfinite(penalty):
                continue
            x = ridge_toward(gram, cross, x0, penalty)
            mse = dev.mse(k, x)
            if mse < best[0]:
                best = (mse, penalty, x)
        w[:, k], b[k] = best[2][:-1], best[2][-1]
        out["penalty"].append(float(best[1]) if np.isfinite(best[1]) else None)
        out["dev_mse_after"].append(best[0])
    fc3.set_weights([w.astype(np.float32), b.astype(np.float32)])
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out
