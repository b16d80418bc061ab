"""Every figure is written as a PNG of sensible size with something drawn on it."""

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from apnet_tf.evaluation import plots
from apnet_tf.io.catalog_flags import AGE_BIN_LABELS


def _check_png(path, min_w=500, min_h=300):
    img = matplotlib.image.imread(str(path))
    h, w = img.shape[:2]
    assert w >= min_w and h >= min_h, (w, h)
    grey = img[..., :3].mean(axis=2)
    assert (grey < 0.9).mean() > 0.01, "almost blank"  # ink on more than 1% of the pixels
    assert grey.std() > 0.05


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 400
    labels = np.stack([rng.uniform(3000, 7000, n), rng.uniform(0.5, 5, n),
                       rng.uniform(-2.5, 0.5, n)], axis=1)
    pred = labels + rng.normal(0, 1, (n, 3)) * [100, 0.2, 0.1]
    snr = 10 ** rng.uniform(1, 2.5, n)
    sigma = np.array([50, 0.05, 0.03]) * (100 / snr)[:, None]
    return labels, pred, rng.choice(["payne", "mstar", "yso"], n), snr, sigma, rng


def test_training_curve_with_rounds(tmp_path):
    rows = [{"stage": "pretrain", "epoch": e, "loss": 1 / e, "val_loss": 1.1 / e}
            for e in range(1, 21)]
    rows += [{"stage": "finetune", "epoch": e, "loss": 0.1 - e / 1000, "val_loss": 0.12}
             for e in range(1, 16)]
    pd.DataFrame(rows).to_csv(tmp_path / "history.csv", index=False)
    pd.DataFrame({"round": [1, 2, 3], "epochs": [5, 6, 4]}).to_csv(
        tmp_path / "finetune_rounds.csv", index=False)
    _check_png(plots.training_curve(str(tmp_path / "history.csv"), str(tmp_path / "t.png")),
               min_w=1000)


def test_evaluation_figures(tmp_path, data):
    labels, pred, cats, snr, sigma, rng = data
    note = plots.describe(("dev", "test"), "raw Monte Carlo")
    assert note == "dev + test splits; sigma: raw Monte Carlo"
    _check_png(plots.label_vs_prediction(labels, pred, cats, str(tmp_path / "l.png"), note),
               min_w=1200)
    _check_png(plots.kiel_diagram(pred[:, 0], pred[:, 1], pred[:, 2], str(tmp_path / "k.png")))
    _check_png(plots.sigma_vs_snr(snr, sigma, str(tmp_path / "s.png"), note), min_w=1200)
    ra, dec = rng.uniform(0, 360, 50), rng.uniform(-40, 60, 50)
    ages = rng.choice(AGE_BIN_LABELS, 50)
    _check_png(plots.yso_sky_map(ra, dec, ages, str(tmp_path / "y.png"), note), min_w=900)
    _check_png(plots.yso_sky_map(ra[:0], dec[:0], ages[:0], str(tmp_path / "y0.png")))
