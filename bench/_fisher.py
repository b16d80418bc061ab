"""The Cramér-Rao bound of a spectrum from its forward model: numerical derivatives, the Fisher
matrix with the per-pixel errors, and the bound on each parameter with the others marginalised.

For a spectrum f(theta) observed with independent Gaussian errors sigma (known, per pixel), the
Fisher matrix is F = J^T diag(1 / sigma^2) J over the pixels used, with J = df / dtheta (pixels x
parameters). No unbiased estimator of theta_i can have a variance below (F^-1)_ii: that is the
bound with every other parameter unknown (marginalised), and it is never below 1 / F_ii, the
bound when the others are known.

``synth_star_bound`` applies this to the package's synthetic survey (``apnet_tf.data.synth``):
the parameters are Teff, log g, [Fe/H] and the two nuisances the generator draws for every star
that change its noiseless spectrum, the extinction A_H and the flux scale (as ln scale).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["SYNTH_PARAMS", "SYNTH_STEPS", "jacobian", "fisher_matrix", "marginal_bounds",
           "SynthForward", "fitted_ln_scale", "synth_star_bound"]

#: The parameters of the synthetic forward model, labels first, then the nuisances.
SYNTH_PARAMS = ("teff", "logg", "fe_h", "a_h", "ln_scale")
#: Central-difference half-steps, in the parameters' units (K, dex, dex, mag, ln units): small
#: next to the scale on which the spectrum bends, large next to float64 round-off
#: (``tests/test_information.py`` checks that halving or doubling them moves the bound by < 1e-3).
#: The generator's spectrum has a few kinks (the alpha enhancement starts at [Fe/H] = 0, the
#: water bands at 4,000 K, the CO strength caps near 2,630 K); a star within one step of one gets a
#: bound between the one-sided ones, which ``synth_star_bound``'s step check shows.
SYNTH_STEPS = (0.5, 0.002, 0.002, 0.002, 0.01)


def jacobian(fn: Callable[[np.ndarray], np.ndarray], theta, steps) -> np.ndarray:
    """Central differences of ``fn`` (parameters (P,) -> spectrum (N,)): J, shape (N, P)."""
    theta = np.asarray(theta, dtype=np.float64)
    cols = []
    for k, h in enumerate(steps):
        up, down = theta.copy(), theta.copy()
        up[k] += h
        down[k] -= h
        cols.append((np.asarray(fn(up), np.float64) - np.asarray(fn(down), np.float64))
                    / (2.0 * h))
    return np.stack(cols, axis=1)


def fisher_matrix(jac: np.ndarray, sigma: np.ndarray, good: np.ndarray | None = None
                  ) -> np.ndarray:
    """F = J^T diag(1 / sigma^2) J over the ``good`` pixels (default all). jac (N, P), sigma and
    good (N,); returns (P, P)."""
    good = np.ones(len(sigma), bool) if good is None else np.asarray(good, bool)
    white = jac[good] / np.asarray(sigma, np.float64)[good, None]
    return white.T @ white


def marginal_bounds(fisher: np.ndarray) -> np.ndarray:
    """sqrt(diag(F^-1)), shape (P,): the bound on each parameter with the others marginalised.

    The matrix is scaled to unit diagonal before it is inverted (the parameters differ in units
    by 10^5); a singular matrix (a parameter the data do not constrain) gives inf."""
    d = np.sqrt(np.diag(fisher))
    if not np.all(d > 0):
        return np.full(len(d), np.inf)
    corr = fisher / np.outer(d, d)
    try:
        inv = np.linalg.inv(corr)
    except np.linalg.LinAlgError:
        return np.full(len(d), np.inf)
    var = np.diag(inv) / d**2
    return np.where(var > 0, np.sqrt(np.abs(var)), np.inf)


class SynthForward:
    """The noiseless spectrum of ``apnet_tf.data.synth`` as a function of SYNTH_PARAMS:
    exp(ln_scale) * SpectrumModel().flux(teff, logg, fe_h, a_h), shape (8575,)."""

    def __init__(self):
        from apnet_tf.data.synth import SpectrumModel

        self.model = SpectrumModel()

    def __call__(self, theta) -> np.ndarray:
        teff, logg, feh, a_h, ln_scale = (float(v) for v in theta)
        return np.exp(ln_scale) * self.model.flux(teff, logg, feh, a_h)


def fitted_ln_scale(template: np.ndarray, flux: np.ndarray, err: np.ndarray,
                    good: np.ndarray) -> float:
    """ln of the least-squares scale s of ``flux`` ~ s * ``template`` (weights 1 / err^2): the
    star's brightness, which the survey does not record. The bound does not depend on it when
    the errors scale with the flux, as the generator's do; this only puts the derivatives on the
    scale of the written errors."""
    w = good / np.asarray(err, np.float64) ** 2
    s = float(np.sum(w * flux * template) / np.sum(w * template**2))
    return float(np.log(s)) if s > 0 else 0.0


def synth_star_bound(forward: SynthForward, labels, a_h: float, flux: np.ndarray,
                     err: np.ndarray, bad: np.ndarray, steps=SYNTH_STEPS,
                     check_steps: bool = True) -> tuple[np.ndarray, float]:
    """The marginalised bound on (teff, logg, fe_h) of one synthetic star, shape (3,), and the
    largest relative change of the three when every step is halved (NaN without
    ``check_steps``).

    Args:
        labels: the star's true (teff, logg, fe_h).
        a_h: its true extinction A_H (labels.csv).
        flux, err, bad: (8575,) as its record holds them: the observed flux (only to fit the
            star's scale), the per-pixel errors the generator wrote, and the bad pixels (chip
            gaps and flagged pixels), which carry no information.
    """
    good = ~np.asarray(bad, bool) & np.isfinite(err) & (err > 0) & (err < 1e9)
    theta = np.array([*labels, a_h, 0.0], np.float64)
    theta[4] = fitted_ln_scale(forward(theta), np.asarray(flux, np.float64), err, good)
    bound = marginal_bounds(fisher_matrix(jacobian(forward, theta, steps), err, good))[:3]
    if not check_steps:
        return bound, float("nan")
    half = marginal_bounds(fisher_matrix(jacobian(forward, theta, np.asarray(steps) / 2),
                                         err, good))[:3]
    return bound, float(np.max(np.abs(half / bound - 1.0)))
