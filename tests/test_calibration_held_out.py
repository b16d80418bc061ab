"""The coverage that fit and calibrate print is measured on dev stars the calibration was not
fitted on (each half of dev calibrated on the other); the coverage on the stars that set the
level, 0.683 by construction, is kept in calibration.json but never printed as a result."""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest
from cli_helpers import cli
from test_calibration import KIEL, _dev_set

from apnet_tf.calibration import fit as fit_module
from apnet_tf.calibration.fit import dev_halves, fit_calibration
from apnet_tf.model.calibration import FORMAT, KEYS, ONE_SIGMA, Calibration


def _held_out_by_hand(cal, dev, half) -> np.ndarray:
    """The pooled coverage of each half under the level fitted on the other, worked out from
    the fitted calibration's sigma alone: the level multiplies sigma, so the other half's
    level relative to all of dev's is the 68.3% quantile of |residual| / sigma over it."""
    pred, sigma, labels, snr = dev
    s = cal.sigma(pred, sigma, snr)
    ratio = np.abs(pred - labels) / s
    covered = np.zeros(3)
    for h in (0, 1):
        level = np.quantile(ratio[half == h], ONE_SIGMA, axis=0)  # fitted on half h
        covered += (ratio[half != h] < level).sum(axis=0)  # measured on the other
    return covered / len(pred)


def test_the_held_out_coverage_is_that_of_stars_the_level_never_saw():
    train = _dev_set(n=100, seed=1)
    dev = _dev_set(n=40, seed=2, widen=1.3)
    cal = fit_calibration(*dev[:3], mc=20, seed=4, snr=dev[3], shape=train)
    assert cal.shape_split == "train"
    half = dev_halves(dev[2], 4)
    np.testing.assert_allclose(cal.coverage_dev_held_out, _held_out_by_hand(cal, dev, half),
                               atol=1e-12)
    # the coverage on the stars that set the level is the target by construction
    np.testing.assert_allclose(cal.coverage_dev_calibrated, ONE_SIGMA, atol=1 / len(dev[0]))


def test_halves_that_differ_show_it_where_the_fitted_coverage_cannot():
    """One half of dev fits the labels 10,000 times better than the other: each half's level
    covers none or all of the other half, so the held-out coverage is 0.5, where the coverage on
    the stars the level was fitted on is 0.683 whatever the stars."""
    train = _dev_set(n=100, seed=1)
    pred, sigma, labels, snr = _dev_set(n=40, seed=2)
    half = dev_halves(labels, 0)
    res = pred - labels
    pred = labels + np.where((half == 0)[:, None], 0.01 * res, 100 * res)
    cal = fit_calibration(pred, sigma, labels, mc=20, seed=0, snr=snr, shape=train)
    np.testing.assert_allclose(cal.coverage_dev_held_out, [0.5, 0.5, 0.5])
    np.testing.assert_allclose(cal.coverage_dev_calibrated, ONE_SIGMA, atol=0.01)
    # with dev giving the shape too (no training stars), each half is fitted whole on its own
    alone = fit_calibration(pred, sigma, labels, mc=20, seed=0, snr=snr)
    assert alone.shape_split == "dev"
    np.testing.assert_allclose(alone.coverage_dev_held_out, [0.5, 0.5, 0.5])


def test_dev_halves_are_seeded_and_split_every_region():
    labels = np.concatenate([np.tile(KIEL[r].tolist() + [0.0], (n, 1))
                             for r, n in enumerate((7, 20, 31, 4))])
    labels = np.concatenate([labels, [[np.nan, 4.0, 0.0]] * 3])
    half = dev_halves(labels, 3)
    for rows in (slice(0, 7), slice(7, 27), slice(27, 58), slice(58, 62), slice(62, 65)):
        assert abs(half[rows].sum() - len(half[rows]) / 2) <= 0.5, rows
    np.testing.assert_array_equal(half, dev_halves(labels, 3))
    assert not np.array_equal(half, dev_halves(labels, 4))


def test_a_half_too_small_to_fit_has_no_held_out_coverage():
    pred, sigma, labels, snr = _dev_set(n=2, seed=2)  # 8 stars: halves of 4, a level needs 5
    cal = fit_calibration(pred, sigma, labels, mc=20, seed=0, snr=snr,
                          shape=_dev_set(n=100, seed=1))
    assert cal.coverage_dev_held_out == [None, None, None]
    assert all(c is not None for c in cal.coverage_dev_calibrated)
    Calibration.from_dict(cal.to_dict())  # and it is written and read as nulls


def _calibration(**changes) -> Calibration:
    d = {"noise": {k: [1.0] * 3 for k in KEYS}, "floor": {k: [0.0] * 3 for k in KEYS},
         "snr_factor": {k: [[1.0] * 3] * 3 for k in KEYS}, "snr_edges": [50.0, 100.0],
         "stars": {k: 40 for k in KEYS}, "shape_split": "train", "mc": 20, "seed": 0,
         "dev_stars": 60, "coverage_dev_raw": [0.111, 0.222, 0.333],
         "coverage_dev_calibrated": [0.683, 0.683, 0.683],
         "coverage_dev_held_out": [0.615, 0.742, None], "targets": ["teff", "logg", "fe_h"],
         "format": FORMAT}
    return Calibration.from_dict({**d, **changes})


def test_calibrate_prints_the_held_out_coverage(monkeypatch, tmp_path):
    monkeypatch.setattr(fit_module, "calibrate", lambda *a, **k: _calibration())
    res = cli("calibrate", "--model", tmp_path / "run", "--records", tmp_path / "records")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[1] == ("dev 1-sigma coverage, raw -> calibrated (each half of dev calibrated "
                        "on the other):")
    assert lines[2:] == ["  teff  0.111 -> 0.615", "  logg  0.222 -> 0.742",
                         "  fe_h  0.333 -> n/a"]
    assert "0.683" not in res.stdout


def test_fit_prints_the_held_out_coverage(monkeypatch, tmp_path):
    import apnet_tf.workflows

    table3 = pd.DataFrame({"train": [1.0]}, index=pd.Index(["teff (K)"], name="target"))
    result = types.SimpleNamespace(notes=[], chief=True, table3=table3, epochs={"pretrain": 1},
                                   calibration=_calibration())
    monkeypatch.setattr(apnet_tf.workflows, "fit", lambda *a, **k: result)
    res = cli("fit", "--records", tmp_path / "records", "--out", tmp_path / "run")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[-1] == (
        f"sigma calibration: {tmp_path / 'run' / 'calibration.json'}; dev 1-sigma coverage raw "
        "0.11 0.22 0.33 -> calibrated 0.61 0.74 n/a (each half of dev calibrated on the other)")
    assert "0.68" not in res.stdout


def test_a_calibration_of_the_previous_format_still_loads():
    new = _calibration().to_dict()
    old = {k: v for k, v in new.items() if k != "coverage_dev_held_out"}
    old["format"] = "apnet-tf calibration 3"
    loaded = Calibration.from_dict(old)
    assert loaded.coverage_dev_held_out == [None, None, None] and loaded.format == FORMAT
    assert loaded.noise == new["noise"]
    # the current format must say it
    with pytest.raises(ValueError, match="missing key.*coverage_dev_held_out"):
        Calibration.from_dict({k: v for k, v in new.items() if k != "coverage_dev_held_out"})
    with pytest.raises(ValueError, match="coverage_dev_held_out must have shape"):
        Calibration.from_dict(dict(new, coverage_dev_held_out=[0.5]))
