"""The Cramér-Rao bound of bench/information.py: the Fisher matrix and its marginalised bound on
models whose bound is known analytically, the derivative steps of the synthetic forward model,
and the true labels of a synthetic survey."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from _fisher import (  # noqa: E402
    SYNTH_STEPS,
    SynthForward,
    fisher_matrix,
    fitted_ln_scale,
    jacobian,
    marginal_bounds,
    synth_star_bound,
)


def gaussian_line(x: np.ndarray, width: float):
    """A Gaussian absorption line on a flat continuum: theta = (centre, depth, continuum)."""
    return lambda t: t[2] - t[1] * np.exp(-0.5 * ((x - t[0]) / width) ** 2)


def test_line_centre_bound_matches_the_analytic_one():
    # A line of depth A and width s sampled every dx with noise sigma: the centre's Fisher
    # information is A^2 sqrt(pi) / (2 sigma^2 s dx) (the integral of the squared derivative),
    # and by symmetry depth and continuum do not correlate with the centre.
    dx, s, depth, sigma = 0.05, 1.3, 0.4, 0.01
    x = np.arange(-40, 40, dx)
    theta = np.array([0.2, depth, 1.0])
    jac = jacobian(gaussian_line(x, s), theta, (1e-4, 1e-4, 1e-4))
    bound = marginal_bounds(fisher_matrix(jac, np.full(x.size, sigma)))
    expected = np.sqrt(2 * sigma**2 * s * dx / (depth**2 * np.sqrt(np.pi)))
    assert bound[0] == pytest.approx(expected, rel=1e-3)


def test_marginalised_bound_is_the_diagonal_of_the_inverse():
    # y = a + b x: the slope's bound with the intercept unknown is sigma / sqrt(sum (x - mean)^2),
    # larger than 1 / sqrt(F_bb) = sigma / sqrt(sum x^2), the bound with the intercept known.
    x = np.linspace(1.0, 3.0, 50)
    sigma = np.full(x.size, 0.1)
    jac = jacobian(lambda t: t[0] + t[1] * x, [0.5, 2.0], (0.1, 0.1))
    fisher = fisher_matrix(jac, sigma)
    bound = marginal_bounds(fisher)
    assert bound[1] == pytest.approx(0.1 / np.sqrt(np.sum((x - x.mean()) ** 2)), rel=1e-9)
    assert bound[1] > 1.5 / np.sqrt(fisher[1, 1])
    assert bound[0] == pytest.approx(0.1 * np.sqrt(np.mean(x**2) / np.sum((x - x.mean()) ** 2)),
                                     rel=1e-9)


def test_bad_pixels_carry_no_information():
    x = np.linspace(0, 1, 40)
    jac = jacobian(lambda t: t[0] + t[1] * x, [0.0, 1.0], (0.1, 0.1))
    good = np.ones(x.size, bool)
    good[5:15] = False
    sigma = np.full(x.size, 0.2)
    huge = np.where(good, sigma, 1e30)
    assert np.allclose(fisher_matrix(jac, sigma, good), fisher_matrix(jac, huge), rtol=1e-12)
    assert not np.allclose(fisher_matrix(jac, sigma, good), fisher_matrix(jac, sigma))


def test_an_unconstrained_parameter_gives_an_infinite_bound():
    x = np.linspace(0, 1, 20)
    jac = jacobian(lambda t: (t[0] + t[1]) * x, [1.0, 1.0], (0.1, 0.1))  # only the sum shows
    assert np.isinf(marginal_bounds(fisher_matrix(jac, np.ones(x.size)))).all()


@pytest.fixture(scope="module")
def forward():
    return SynthForward()


def synth_errors(clean: np.ndarray, snr: float, gaps: np.ndarray) -> np.ndarray:
    """The generator's photon-noise errors (``synth._observe``), written here independently."""
    med = np.median(clean[~gaps])
    return (med / snr) * np.sqrt(np.clip(clean / med, 1e-3, None))


STARS = [((3200.0, 4.9, -0.1), 0.2), ((4700.0, 2.5, -0.2), 0.1), ((6500.0, 4.3, -0.1), 0.3),
         ((3500.0, 3.8, 0.0), 1.0)]  # an M dwarf, a giant, a hot dwarf, a YSO


@pytest.mark.parametrize("labels, a_h", STARS)
def test_synth_bound_does_not_depend_on_the_step(forward, labels, a_h):
    from apnet_tf.data.synth import gap_mask

    gaps = gap_mask()
    clean = 300.0 * forward([*labels, a_h, 0.0])
    err = synth_errors(clean, 50.0, gaps)
    bound, halved = synth_star_bound(forward, labels, a_h, clean, err, gaps)
    assert halved < 1e-3  # the steps halved move the bound by less than 0.1%
    doubled, _ = synth_star_bound(forward, labels, a_h, clean, err, gaps,
                                  steps=np.asarray(SYNTH_STEPS) * 2, check_steps=False)
    assert np.allclose(doubled, bound, rtol=1e-3)
    # a step far too large (500 K, 0.5 dex) no longer gives the same bound: the check can fail
    coarse, _ = synth_star_bound(forward, labels, a_h, clean, err, gaps,
                                 steps=(500.0, 0.5, 0.5, 0.01, 0.01), check_steps=False)
    assert not np.allclose(coarse, bound, rtol=1e-2)


def test_synth_bound_scales_with_the_noise_not_the_brightness(forward):
    from apnet_tf.data.synth import gap_mask

    gaps = gap_mask()
    (labels, a_h) = STARS[0]
    clean = 300.0 * forward([*labels, a_h, 0.0])
    b100, _ = synth_star_bound(forward, labels, a_h, clean, synth_errors(clean, 100, gaps), gaps,
                               check_steps=False)
    b400, _ = synth_star_bound(forward, labels, a_h, clean, synth_errors(clean, 400, gaps), gaps,
                               check_steps=False)
    assert np.allclose(b100, 4 * b400, rtol=1e-6)
    bright = 30.0 * clean  # 30x the photons at the same S/N: the same bound
    b_bright, _ = synth_star_bound(forward, labels, a_h, bright,
                                   synth_errors(bright, 100, gaps), gaps, check_steps=False)
    assert np.allclose(b_bright, b100, rtol=1e-6)
    assert fitted_ln_scale(clean, bright, synth_errors(bright, 100, gaps), ~gaps) == \
        pytest.approx(np.log(30.0), abs=1e-9)


def test_nuisances_widen_the_bound(forward):
    """With A_H and the scale marginalised the Teff bound is wider than with them known (the
    continuum slope that both change is no longer free information on Teff)."""
    from apnet_tf.data.synth import gap_mask

    gaps = gap_mask()
    labels, a_h = STARS[1]
    theta = np.array([*labels, a_h, 0.0])
    clean = forward(theta)
    err = synth_errors(clean, 100, gaps)
    fisher = fisher_matrix(jacobian(forward, theta, SYNTH_STEPS), err, ~gaps)
    known = marginal_bounds(fisher[:3, :3])
    both = marginal_bounds(fisher)[:3]
    assert both[0] > 1.05 * known[0]
    assert (both >= known * (1 - 1e-12)).all()


def test_true_labels_fill_the_missing_ones(tmp_path):
    from information import true_labels

    from apnet_tf.data.synth import make_survey

    table = make_survey(str(tmp_path), 120, seed=5)
    truth = true_labels(str(tmp_path))
    holes = (table[["TEFF", "LOGG", "FE_H"]] <= -9998).to_numpy()
    assert holes.any()  # 2% of the labels: 120 stars x 3 give some with seed 5
    for row, hole in zip(table.itertuples(), holes):
        labels, a_h = truth[row.APOGEE_ID]
        assert np.isfinite(labels).all() and a_h == pytest.approx(row.A_H, rel=1e-5)
        shown = np.array([row.TEFF, row.LOGG, row.FE_H])
        assert np.allclose(labels[~hole], shown[~hole], rtol=1e-5)
