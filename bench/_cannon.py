"""The Cannon (Ness et al. 2015, ApJ 808, 16): the data-driven reference for time to a fitted model.

A quadratic model in the labels at every pixel, with a per-pixel intrinsic scatter s^2:

    flux[n, p] = theta[p] . v(labels[n]) + noise,  noise ~ N(0, err[n, p]^2 + s[p]^2)

with v(l) = (1, l1, l2, l3, l1^2, l1 l2, l1 l3, l2^2, l2 l3, l3^2) of standardised labels. The
training step fits theta and s^2 per pixel by maximum likelihood (weighted least squares on a grid
of s^2); the test step fits each star's labels by Gauss-Newton on the same likelihood. Flux is
divided by each star's median (the synthetic spectra carry no continuum normalisation; so does the
ridge reference). ``thecannon`` (Casey, the package APOGEE used) would be the library to use, but
its last release (0.2.6) does not import on numpy 2 or Python 3.10+ (``collections.Iterable``,
``numpy.RankWarning``); this is the same model, written in numpy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SCATTER_GRID", "label_vector", "fit_cannon"]

#: Intrinsic scatter s of a pixel, in units of the median-normalised flux, tried per pixel.
SCATTER_GRID = np.concatenate([[0.0], np.geomspace(1e-3, 0.3, 12)])
_GN_ITERATIONS = 12


def label_vector(z: np.ndarray) -> np.ndarray:
    """(N, 3) standardised labels -> (N, 10) quadratic label vector."""
    i, j = np.triu_indices(z.shape[1])
    return np.concatenate([np.ones((len(z), 1)), z, z[:, i] * z[:, j]], axis=1)


def _jacobian(z: np.ndarray) -> np.ndarray:
    """(N, 3) -> (N, 10, 3): d label_vector / d z."""
    n, k = z.shape
    jac = np.zeros((n, 1 + k + k * (k + 1) // 2, k))
    jac[:, 1:1 + k] = np.eye(k)
    for q, (i, j) in enumerate(zip(*np.triu_indices(k))):
        jac[:, 1 + k + q, i] += z[:, j]
        jac[:, 1 + k + q, j] += z[:, i]
    return jac


def _normalise(flux: np.ndarray, err: np.ndarray, bad: np.ndarray):
    """(flux / median, inverse variance) with bad or non-positive pixels at inverse variance 0."""
    ok = (~bad) & (flux > 0) & np.isfinite(err) & (err > 0)
    med = np.array([np.median(f[m]) if m.any() else 1.0 for f, m in zip(flux, ok)])[:, None]
    return np.where(ok, flux / med, 0.0), np.where(ok, (med / np.where(ok, err, 1.0)) ** 2, 0.0)


def _train(f: np.ndarray, ivar: np.ndarray, v: np.ndarray):
    """Per pixel (theta (P, 10), s2 (P,)) maximising the likelihood over SCATTER_GRID."""
    outer = (v[:, :, None] * v[:, None, :]).reshape(len(v), -1)  # (N, 100)
    best_nll = np.full(f.shape[1], np.inf)
    theta = np.zeros((f.shape[1], v.shape[1]))
    s2 = np.zeros(f.shape[1])
    var = np.where(ivar > 0, 1.0 / np.where(ivar > 0, ivar, 1.0), np.inf)
    for s in SCATTER_GRID:
        w = np.where(ivar > 0, 1.0 / (var + s * s), 0.0)  # (N, P)
        a = (w.T @ outer).reshape(-1, v.shape[1], v.shape[1]) + 1e-8 * np.eye(v.shape[1])
        b = (w * f).T @ v  # (P, 10)
        th = np.linalg.solve(a, b[:, :, None])[:, :, 0]
        r2 = (f - v @ th.T) ** 2
        nll = 0.5 * np.sum(w * r2 - np.log(np.where(w > 0, w, 1.0)), axis=0)
        better = nll < best_nll
        best_nll[better], theta[better], s2[better] = nll[better], th[better], s * s
    return theta, s2


def _test(f: np.ndarray, ivar: np.ndarray, theta: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """(N, 3) standardised labels of each star by Gauss-Newton, from the training mean."""
    var = np.where(ivar > 0, 1.0 / np.where(ivar > 0, ivar, 1.0), np.inf)
    w = np.where(ivar > 0, 1.0 / (var + s2[None]), 0.0)
    z = np.zeros((len(f), 3))
    for _ in range(_GN_ITERATIONS):
        resid = f - label_vector(z) @ theta.T  # (N, P)
        jac = np.einsum("pk,nkj->npj", theta, _jacobian(z))  # (N, P, 3)
        a = np.einsum("npi,np,npj->nij", jac, w, jac) + 1e-6 * np.eye(3)
        b = np.einsum("npi,np,np->ni", jac, w, resid)
        z = np.clip(z + np.linalg.solve(a, b[:, :, None])[:, :, 0], -5.0, 5.0)
    return z


def fit_cannon(train: dict, labels: np.ndarray, chunk: int = 256):
    """Train The Cannon on ``train`` ({"flux", "err", "bad"}, each (N, 8575)) and its labels
    (N, 3) with no NaN; returns predict(spectra dict) -> (M, 3) labels."""
    mean, std = labels.mean(0), labels.std(0)
    f, ivar = _normalise(train["flux"], train["err"], train["bad"])
    theta, s2 = _train(f, ivar, label_vector((labels - mean) / std))

    def predict(spectra: dict) -> np.ndarray:
        f, ivar = _normalise(spectra["flux"], spectra["err"], spectra["bad"])
        z = np.concatenate([_test(f[i:i + chunk], ivar[i:i + chunk], theta, s2)
                            for i in range(0, len(f), chunk)])
        return z * std + mean

    return predict
