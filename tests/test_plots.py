"""Every figure is written as a PNG of sensible size with something drawn on it."""

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from apnet_tf.evaluation import plots, sky_map
from apnet_tf.kiel import AGE_BIN_LABELS


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
    _check_png(sky_map.yso_sky_map(ra, dec, ages, str(tmp_path / "y.png"), note), min_w=900)
    _check_png(sky_map.yso_sky_map(ra[:0], dec[:0], ages[:0], str(tmp_path / "y0.png")))


def _history_and_rounds(improved):
    """A pretraining of 10 epochs (best at 8), three fine-tuning rounds of 4, 5 and 3 epochs
    whose dev losses fall round by round (each round's best: its 2nd epoch)."""
    rows = [{"stage": "pretrain", "epoch": e, "loss": 1 / e, "val_loss": abs(e - 8) + 1.0}
            for e in range(1, 11)]
    epoch = 0
    for r, n in enumerate((4, 5, 3)):
        for k in range(n):
            epoch += 1
            rows.append({"stage": "finetune", "epoch": epoch, "loss": 0.1,
                         "val_loss": 0.5 - 0.1 * r + (0 if k == 1 else 0.05)})
    rounds = pd.DataFrame({"round": [1, 2, 3], "epochs": [4, 5, 3], "improved": improved})
    return pd.DataFrame(rows), rounds


def test_kept_epoch_is_the_kept_model_not_the_lowest_dev_loss():
    hist, rounds = _history_and_rounds([True, True, False])
    # round 3 has the lowest dev loss but was not kept: the kept model is round 2's best epoch
    assert plots.kept_epoch(hist, rounds) == ("finetune", 6)
    hist, rounds = _history_and_rounds([False, False, False])
    assert plots.kept_epoch(hist, rounds) == ("pretrain", 8)  # no round kept: pretraining's
    hist, rounds = _history_and_rounds([True, False, True])
    assert plots.kept_epoch(hist, rounds) == ("finetune", 11)
    assert plots.kept_epoch(hist[hist["stage"] == "pretrain"], None) == ("pretrain", 8)


def test_the_average_of_the_rounds_is_no_round_of_epochs(tmp_path):
    """finetune_rounds.csv's row 'average' (fit's average_rounds) trained no epochs: read with
    it, the kept model was the pretraining's and the rounds' ends had one too many."""
    hist, rounds = _history_and_rounds([True, True, False])
    average = pd.DataFrame({"round": ["average"], "epochs": [0], "improved": [True]})
    csv = tmp_path / "finetune_rounds.csv"
    pd.concat([rounds, average]).to_csv(csv, index=False)
    read = plots._read_rounds(str(tmp_path / "history.csv"), None)
    assert plots.kept_epoch(hist, read) == ("finetune", 6)
    assert plots._round_ends(read) == [4, 9, 12]


def test_training_curve_reads_the_rounds_it_is_given(tmp_path):
    hist, rounds = _history_and_rounds([True, True, False])
    hist.to_csv(tmp_path / "history.csv", index=False)
    rounds.to_csv(tmp_path / "rounds.csv", index=False)
    _check_png(plots.training_curve(str(tmp_path / "history.csv"), str(tmp_path / "t.png"),
                                    rounds_csv=str(tmp_path / "rounds.csv")), min_w=1000)


def test_sigma_vs_snr_shows_the_calibrated_sigma_first(tmp_path, data):
    labels, pred, cats, snr, sigma, rng = data
    series = plots.sigma_series(sigma, 2 * sigma)
    assert [s[0] for s in series] == ["calibrated sigma (as in the catalog)",
                                      "raw Monte Carlo sigma (input noise only)"]
    assert np.array_equal(series[0][1], 2 * sigma)
    assert [s[0] for s in plots.sigma_series(sigma, None)] == [
        "raw Monte Carlo sigma (input noise only)"]
    _check_png(plots.sigma_vs_snr(snr, sigma, str(tmp_path / "s2.png"), "dev split",
                                  calibrated=2 * sigma), min_w=1200)


def test_sky_groups_finds_two_separated_clumps():
    rng = np.random.default_rng(1)
    big = np.stack([rng.normal(0, 1, 30) % 360, rng.normal(-15, 1, 30)], axis=1)  # across l=0
    small = np.stack([rng.normal(205, 0.5, 12), rng.normal(-19, 0.5, 12)], axis=1)
    lone = np.array([[90.0, 60.0]])
    lb = np.concatenate([small, big, lone])
    groups = sky_map.sky_groups(lb[:, 0], lb[:, 1], link_deg=3.0)
    assert [len(g) for g in groups] == [30, 12, 1]
    assert sorted(groups[0]) == list(range(12, 42)) and sorted(groups[1]) == list(range(12))
    l0, b0 = sky_map.group_centre(lb[groups[0], 0], lb[groups[0], 1])
    assert min(l0, 360 - l0) < 1 and abs(b0 + 15) < 1
    assert sky_map.sky_groups(np.array([]), np.array([])) == []


def test_yso_sky_map_with_groups_and_one_star(tmp_path):
    rng = np.random.default_rng(2)
    ra = np.concatenate([rng.normal(84, 1, 40), rng.normal(246, 1, 20), [10.0]])
    dec = np.concatenate([rng.normal(-5, 1, 40), rng.normal(-24, 1, 20), [40.0]])
    ages = rng.choice(AGE_BIN_LABELS, ra.size)
    _check_png(sky_map.yso_sky_map(ra, dec, ages, str(tmp_path / "g.png"), "all splits"),
               min_w=900, min_h=700)
    _check_png(sky_map.yso_sky_map(ra[:1], dec[:1], ages[:1], str(tmp_path / "g1.png")))


def test_every_group_on_the_yso_sky_map_has_a_number_that_can_be_read():
    """The synthetic survey's four star-forming fields (two of them 6 degrees apart): each
    group's number is drawn, on top, apart from the other numbers and off every star (the
    numbers used to sit 6 points from the centre, one of them hidden among the stars)."""
    from apnet_tf.data.synth import YSO_FIELDS

    rng = np.random.default_rng(0)
    fields = rng.integers(len(YSO_FIELDS), size=80)
    ra = np.array([YSO_FIELDS[f][1] for f in fields]) + rng.normal(0, 1, 80)
    dec = np.array([YSO_FIELDS[f][2] for f in fields]) + rng.normal(0, 1, 80)
    ages = rng.choice(AGE_BIN_LABELS, 80)
    lon, lat = sky_map.to_galactic(ra, dec)
    groups = sky_map._shown(sky_map.sky_groups(lon, lat), sky_map.MAX_GROUPS)
    assert len(groups) == 4
    fig, ax, _ = sky_map._layout(len(groups))
    sky_map._overview(ax, lon, lat, ages, groups)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()  # laid out as savefig lays it out
    numbers = [t for t in ax.texts if t.get_text().isdigit()]
    assert sorted(t.get_text() for t in numbers) == ["1", "2", "3", "4"]
    boxes = [t.get_bbox_patch().get_window_extent() for t in numbers]
    assert all(not a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    stars = ax.transData.transform(np.c_[(lon + 180) % 360 - 180, lat])
    assert not any(box.contains(x, y) for box in boxes for x, y in stars)
    assert all(t.get_zorder() > c.get_zorder() for t in numbers for c in ax.collections)
