"""calibration.json: its fit (noise factor and floor per Kiel region, a factor per S/N tercile, its
shape from the training stars and its level from dev), its checks, and the coverage and Table 3
figures that judge it, on numbers small enough to work out by hand."""

import dataclasses
import json
import shutil

import numpy as np
import pytest

from apnet_tf.calibration.fit import fit_calibration
from apnet_tf.calibration.subset import Subset
from apnet_tf.errors import ApnetError
from apnet_tf.evaluation.tables import bias, coverage_table, evaluation_tables, rms, scatter
from apnet_tf.model.calibration import (
    CALIBRATION,
    KEYS,
    REGIONS,
    Calibration,
    calibrated_summaries,
    coverage,
    kiel_region,
)

# one star per region: pms (in the YSO triangle), cool_dwarf, giant, dwarf
KIEL = np.array([[3500.0, 3.5], [3300.0, 4.9], [4800.0, 2.5], [5800.0, 4.3]])


def test_kiel_regions_follow_the_paper():
    assert [REGIONS[i] for i in kiel_region(KIEL[:, 0], KIEL[:, 1])] == list(REGIONS)
    # NaN predictions get no region; a 3,900 K star at log g 4.45 is an M dwarf, not a YSO
    np.testing.assert_array_equal(kiel_region([np.nan, 3900.0], [4.0, 4.6]), [-1, 1])


def _dev_set(floor=(30.0, 0.05, 0.02), n=200, seed=5, widen=1.0):
    """Stars of each region whose residuals are Gaussian with sigma^2 = sigma_MC^2 + floor^2
    (pms: twice that), sigma_MC spread over a factor 30 as S/N would spread it (S/N = 300 /
    that factor). ``widen`` multiplies every residual (dev stars' errors exceed train's).
    Returns pred, sigma, labels (N, 3) and snr (N,)."""
    pred, sigma, labels, snr = [], [], [], []
    rng = np.random.default_rng(seed)
    for r in range(4):
        true = np.tile(KIEL[r].tolist() + [0.0], (n, 1))
        spread = np.geomspace(1, 30, n)
        sig = spread[:, None] * np.array([5.0, 0.005, 0.002])
        scale = np.sqrt(sig**2 + np.square(floor)) * (2.0 if r == 0 else 1.0) * widen
        pred.append(true + rng.normal(size=(n, 3)) * scale)
        sigma.append(sig)
        labels.append(true)
        snr.append(300.0 / spread)
    return [np.concatenate(x) for x in (pred, sigma, labels, snr)]


def _covers(cal, fresh, low=0.58, high=0.78, shape_only=False):
    """Coverage of fresh stars within (low, high) in every region and S/N tercile; with
    shape_only, each group's coverage within 0.1 of all fresh stars' (the level aside)."""
    pred, sigma, labels, snr = fresh
    s = cal.sigma(pred, sigma, snr)
    region = kiel_region(pred[:, 0], pred[:, 1])
    tercile = np.searchsorted(np.quantile(snr, [1 / 3, 2 / 3]), snr)
    overall = coverage(pred, s, labels)
    for sel in [region == r for r in range(4)] + [tercile == j for j in range(3)]:
        cov = coverage(pred[sel], s[sel], labels[sel])
        if shape_only:
            cov = cov - overall + 0.683
            low, high = 0.583, 0.783
        assert ((cov > low) & (cov < high)).all(), cov


def _pms_over_giant(cal) -> np.ndarray:
    """Median over fresh stars of sigma(pms star) / sigma(giant star) at the same raw sigma and
    S/N, per parameter; (3,)."""
    pred, sigma, _, snr = _dev_set(seed=11)
    s = cal.sigma(pred, sigma, snr)
    n = len(pred) // 4  # _dev_set's regions come in blocks, stars in the same S/N order
    return np.median(s[:n] / s[2 * n:3 * n], axis=0)


def test_fit_recovers_noise_and_floor_and_covers_every_region_and_snr():
    pred, sigma, labels, snr = _dev_set()
    cal = fit_calibration(pred, sigma, labels, mc=100, seed=0, snr=snr)
    assert cal.stars["all"] == 800 and cal.stars["pms"] == 200 and cal.shape_split == "dev"
    for t, floor in enumerate((30.0, 0.05, 0.02)):
        assert 0.5 * floor < cal.floor["giant"][t] < 2 * floor
    # pms residuals are twice as wide: so is its sigma
    ratio = _pms_over_giant(cal)
    assert ((ratio > 1.6) & (ratio < 2.4)).all(), ratio
    # the law is exactly noise + floor, so the S/N factors stay near 1
    assert np.allclose(cal.snr_factor["giant"], 1.0, atol=0.25)
    _covers(cal, _dev_set(seed=6))  # new stars of the same law
    # a star without a region (NaN prediction) takes the values of all stars, and one without
    # S/N the factor 1
    one = cal.sigma(np.array([[np.nan, 1.0, 0.0]]), np.array([[10.0, 0.01, 0.01]]))[0]
    expect = np.sqrt((np.array(cal.noise["all"]) * [10.0, 0.01, 0.01]) ** 2
                     + np.square(cal.floor["all"]))
    np.testing.assert_allclose(one, expect)


def test_shape_comes_from_train_and_level_from_dev():
    # 600 training stars per region fitted 20% better than new stars; dev has 25 stars per
    # region, too few for a region's own values: only the training stars can show that the
    # pms residuals are twice as wide
    train = _dev_set(n=600, seed=7, widen=0.8)
    dev = _dev_set(n=25, seed=8)
    cal = fit_calibration(*dev[:3], mc=100, seed=0, snr=dev[3], shape=tuple(train))
    assert cal.shape_split == "train" and cal.stars["pms"] == 600 and cal.dev_stars == 100
    ratio = _pms_over_giant(cal)
    assert ((ratio > 1.6) & (ratio < 2.4)).all(), ratio
    # the level is dev's: the floors are about 1/0.8 of those fitted on train alone
    alone = fit_calibration(*train[:3], mc=100, seed=0, snr=train[3])
    assert 1.05 < cal.floor["giant"][0] / alone.floor["giant"][0] < 1.6
    # its shape holds in every region and S/N tercile (its level rests on only 100 dev stars)
    _covers(cal, _dev_set(seed=9), shape_only=True)
    # with dev alone the pms stars would take all stars' values
    dev_only = fit_calibration(*dev[:3], mc=100, seed=0, snr=dev[3])
    assert dev_only.shape_split == "dev" and dev_only.stars["pms"] == 0
    assert dev_only.floor["pms"] == dev_only.floor["all"]
    # too few training stars: dev gives the shape
    few = tuple(x[:40] for x in train)
    assert fit_calibration(*dev[:3], mc=100, seed=0, snr=dev[3],
                           shape=few).shape_split == "dev"


def test_snr_factor_follows_errors_the_noise_model_misses():
    # errors twice the noise + floor law in the lowest S/N third: only the S/N factor sees it
    pred, sigma, labels, snr = _dev_set(n=600, seed=10)
    low = snr < np.quantile(snr, 1 / 3)
    pred = labels + (pred - labels) * np.where(low, 2.0, 1.0)[:, None]
    cal = fit_calibration(pred, sigma, labels, mc=100, seed=0, snr=snr)
    s = cal.sigma(pred, sigma, snr)
    for sel in (low, ~low):
        cov = coverage(pred[sel], s[sel], labels[sel])
        assert ((cov > 0.6) & (cov < 0.77)).all(), cov
    # the same calibration without its S/N factors leaves the low-S/N third under-covered
    flat = dataclasses.replace(cal, snr_factor={k: np.ones((3, 3)).tolist() for k in KEYS})
    cov = coverage(pred[low], flat.sigma(pred[low], sigma[low], snr[low]), labels[low])
    assert (cov < 0.6).any(), cov
    # without S/N (NaN, or a placeholder <= 0) a star takes f = 1
    for unknown in (np.nan, 0.0, -9999.0):
        no_snr = cal.sigma(pred[low], sigma[low], np.full(low.sum(), unknown))
        np.testing.assert_allclose(no_snr, flat.sigma(pred[low], sigma[low], snr[low]))


def test_a_calibration_without_snr_round_trips(tmp_path):
    # a survey whose spectra carry no S/N: no terciles, f = 1, and calibration.json still valid
    pred, sigma, labels, _ = _dev_set(n=50)
    cal = fit_calibration(pred, sigma, labels, mc=100, seed=0)
    assert cal.snr_edges == [None, None]
    # factors that are not 1 prove that the null edges, not the factors, give f = 1
    d = cal.to_dict()
    d["snr_factor"] = {k: (2 * np.ones((3, 3))).tolist() for k in KEYS}
    (tmp_path / CALIBRATION).write_text(json.dumps(d))
    again = Calibration.load(str(tmp_path / CALIBRATION))
    np.testing.assert_allclose(again.sigma(pred, sigma, np.full(len(pred), 50.0)),
                               cal.sigma(pred, sigma))


def test_calibrate_refuses_what_is_not_a_run_folder(tmp_path):
    from apnet_tf.calibration.fit import calibrate

    (tmp_path / "1").mkdir()  # e.g. an exported SavedModel's version folder
    with pytest.raises(ApnetError, match="needs a run folder with best.keras.*export again"):
        calibrate(str(tmp_path / "1"), str(tmp_path / "records"))


def test_calibrate_never_writes_what_infer_would_refuse(tmp_path, monkeypatch):
    import apnet_tf.calibration.fit as fit_module

    # a network that matches most [Fe/H] labels exactly: a zero noise factor, which load refuses
    pred, sigma, labels, snr = _dev_set(n=60)
    pred[:200, 2] = labels[:200, 2]
    monkeypatch.setattr(fit_module, "_monte_carlo", lambda *a: ((pred, sigma, labels, snr),) * 2)
    monkeypatch.setattr(fit_module, "count_records", lambda *a: len(pred))
    monkeypatch.setattr(fit_module, "choose_subset",
                        lambda *a: Subset({}, np.full(2, np.nan), {"seed": 0}))
    (tmp_path / "best.keras").write_bytes(b"")
    with pytest.raises(ApnetError, match="records: cannot calibrate on these stars: noise"):
        fit_module.calibrate(str(tmp_path), "records")
    assert not (tmp_path / CALIBRATION).exists()


def test_too_few_dev_stars_is_a_clear_error():
    pred, sigma, labels, _ = (x[:4] for x in _dev_set())
    with pytest.raises(ApnetError, match="too few labelled dev stars"):
        fit_calibration(pred, sigma, labels, mc=100, seed=0)


def test_calibrated_summaries_scale_sigma_and_percentiles():
    cal = fit_calibration(*_dev_set()[:3], mc=100, seed=0)
    res = {"mean": np.array([[3300.0, 4.9, 0.1]]), "std": np.array([[10.0, 0.1, 0.01]]),
           "p16": np.array([[3290.0, 4.8, 0.09]]), "p50": np.array([[3301.0, 4.9, 0.1]]),
           "p84": np.array([[3311.0, 5.0, 0.11]])}
    out = calibrated_summaries(res, cal)
    s = cal.sigma(res["mean"], res["std"])[0]
    np.testing.assert_allclose(out["std"][0], s)
    f = s / [10.0, 0.1, 0.01]
    np.testing.assert_allclose(out["p16"][0, 0], 3301.0 - 11.0 * f[0])
    np.testing.assert_allclose(out["p84"][0, 0], 3301.0 + 10.0 * f[0])
    assert out["mean"] is res["mean"] and out["p50"] is res["p50"]
    # a raw sigma of 0 (every pixel masked): the floor alone, around p50
    zero = calibrated_summaries(dict(res, std=np.zeros((1, 3)), p16=res["p50"],
                                     p84=res["p50"]), cal)
    np.testing.assert_allclose(zero["p84"] - zero["p50"], zero["std"])
    assert (zero["std"] > 0).all()


@pytest.fixture(scope="module")
def good_calibration():
    pred, sigma, labels, snr = _dev_set()
    return fit_calibration(pred, sigma, labels, mc=100, seed=0, snr=snr)


@pytest.mark.parametrize("change, words", [
    (lambda d: d["noise"]["giant"].__setitem__(1, float("nan")), "non-finite"),
    (lambda d: d["noise"]["dwarf"].__setitem__(0, -1.0), "positive"),
    (lambda d: d["noise"].__setitem__("pms", [1.0, 0.0, 1.0]), "positive"),
    (lambda d: d["floor"]["all"].__setitem__(2, -0.1), "negative"),
    (lambda d: d["floor"]["pms"].__setitem__(2, "x"), "numbers"),
    (lambda d: d.__setitem__("mc", "x"), "whole number"),
    (lambda d: d.__setitem__("typo", 1), "unknown key(s) typo"),
    (lambda d: d.pop("noise"), "missing key(s) noise"),
    (lambda d: d["floor"].pop("pms"), "keys"),
    (lambda d: d["noise"].__setitem__("giant", [1.0, 1.0]), "shape"),
    (lambda d: d.__setitem__("format", None), "older apnet-tf"),
    (lambda d: d.__setitem__("format", "apnet-tf calibration 2"), "older apnet-tf"),
    (lambda d: d["snr_factor"].__setitem__("giant", [1.0, 1.0, 1.0]), "shape"),
    (lambda d: d["snr_factor"]["dwarf"][1].__setitem__(2, 0.0), "positive"),
    (lambda d: d.__setitem__("snr_edges", [80.0, 20.0]), "increasing"),
    (lambda d: d.__setitem__("snr_edges", [-1.0, 20.0]), "positive"),
    (lambda d: d.__setitem__("shape_split", "test"), "train or dev"),
    (lambda d: d.__setitem__("snr_edges", None), "shape"),
    (lambda d: d["stars"].__setitem__("pms", -3), "whole number of at least 0"),
    (lambda d: d["stars"].__setitem__("pms", 2.5), "whole number"),
    (lambda d: d.__setitem__("mc", 1), "at least 2"),
    (lambda d: d.__setitem__("seed", 1.5), "whole number"),
    (lambda d: d.__setitem__("targets", None), "targets"),
])
def test_bad_calibration_json_is_one_line_naming_the_file(good_calibration, tmp_path, change,
                                                          words):
    d = json.loads(json.dumps(good_calibration.to_dict()))
    change(d)
    path = tmp_path / CALIBRATION
    path.write_text(json.dumps(d))
    with pytest.raises(ApnetError) as exc:
        Calibration.load(str(path))
    msg = str(exc.value)
    assert msg.startswith(str(path)) and words in msg and "\n" not in msg


def test_calibration_round_trip_and_unreadable_files(good_calibration, tmp_path):
    path = tmp_path / CALIBRATION
    good_calibration.save(str(path))
    assert Calibration.load(str(path)) == good_calibration
    # the format of earlier versions (one scale on MC-dropout sigmas) and broken JSON
    for text in ('{"scale": [1, 2, 3], "mc_dropout": true}', "{not json", "[1, 2]"):
        path.write_text(text)
        with pytest.raises(ApnetError, match=str(path)):
            Calibration.load(str(path))


def test_load_model_rejects_a_bad_calibration(trained_run, records, tmp_path):
    from apnet_tf.model.loading import load_model

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / CALIBRATION).write_text('{"format": "apnet-tf calibration 2", "scale": "x"}')
    with pytest.raises(ApnetError, match="calibration.json: invalid calibration"):
        load_model(str(run))
    assert load_model(str(run), calibration=False).calibration is None
    # a raw-sigma job does not read it, so an old or broken file cannot stop it
    from apnet_tf.inference.job import run_infer
    from apnet_tf.inference.settings import InferenceSettings

    out = tmp_path / "raw.csv"
    res = run_infer(str(run), str(out), [str(records)], InferenceSettings(mc=2, calibrated=False))
    assert out.exists() and res.catalog.meta["SIGMA"] == "raw MC"
    with pytest.raises(ApnetError, match="invalid calibration"):
        run_infer(str(run), str(tmp_path / "default.csv"), [str(records)],
                  InferenceSettings(mc=2))


def test_table3_bias_and_rms_by_hand():
    pred = np.array([[5010.0, 2.0, 0.0], [4990.0, 2.2, 0.1], [5030.0, np.nan, 0.2]])
    labels = np.array([[5000.0, 2.0, 0.0], [5000.0, 2.0, 0.0], [5000.0, 2.0, np.nan]])
    # residuals teff +10, -10, +30: mean 10, std sqrt(((0)^2 + 20^2 + 20^2) / 3), rms sqrt(1100/3)
    np.testing.assert_allclose(bias(pred, labels), [10.0, 0.1, 0.05])
    np.testing.assert_allclose(scatter(pred, labels), [np.sqrt(800 / 3), 0.1, 0.05])
    np.testing.assert_allclose(rms(pred, labels), [np.sqrt(1100 / 3), np.sqrt(0.02),
                                                   np.sqrt(0.005)])
    _, t3 = evaluation_tables(pred, labels, ["payne"] * 3, ["test"] * 3, [1000.0, 1.0, 0.5])
    assert list(t3.columns) == ["train", "dev", "test", "train bias", "dev bias", "test bias",
                                "train rms", "dev rms", "test rms"]
    row = t3.loc[("all", "teff (K)")]
    assert row["test bias"] == pytest.approx(10.0) and row["test rms"] == pytest.approx(
        np.sqrt(1100 / 3)) and np.isnan(row["train bias"])
    # evaluate --splits test: only the splits asked for are tabulated
    t2, t3 = evaluation_tables(pred, labels, ["payne"] * 3, ["test"] * 3, [1000.0, 1.0, 0.5],
                               columns=("test",))
    assert list(t2.columns) == ["test"] and list(t3.columns) == ["test", "test bias", "test rms"]
    # a pure offset leaves the scatter at 0 and shows in the bias and the RMS
    _, t3 = evaluation_tables(labels[:2] + [50.0, 0.0, 0.0], labels[:2], ["mstar"] * 2,
                              ["dev"] * 2, [1000.0, 1.0, 0.5])
    row = t3.loc[("mstar", "teff (K)")]
    assert (row["dev"], row["dev bias"], row["dev rms"]) == (0.0, 50.0, 50.0)


def test_coverage_per_category_and_snr_tercile_by_hand():
    # six test stars; |residual| in teff: 1, 3, 1, 3, 1, 3 and sigma 2 -> inside for 1, 3, 5
    labels = np.zeros((6, 3))
    pred = np.array([[1.0, 0, 0], [3, 0, 0], [1, 0, 0], [3, 0, 0], [1, 0, 0], [3, 0, 0]])
    sigma = np.full((6, 3), 2.0)
    cats = ["payne", "payne", "mstar", "mstar", "yso", "payne"]
    snr = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    table = coverage_table(pred, labels, {"raw": sigma, "twice": 2 * sigma}, cats, ["test"] * 6,
                           snr)
    raw = table.loc[("raw", "test")]
    assert raw.loc["all", "teff"] == pytest.approx(0.5) and raw.loc["all", "stars"] == 6
    assert raw.loc["payne", "teff"] == pytest.approx(1 / 3) and raw.loc["payne", "stars"] == 3
    assert raw.loc["mstar", "teff"] == 0.5 and raw.loc["yso", "teff"] == 1.0
    # terciles of S/N 10..60: edges 26.7 and 43.3 -> (10, 20), (30, 40), (50, 60)
    terciles = [g for g in raw.index if g.startswith("S/N")]
    assert terciles == ["S/N 10.0-26.7", "S/N 26.7-43.3", "S/N 43.3-60.0"]
    assert [raw.loc[g, "teff"] for g in terciles] == [0.5, 0.5, 0.5]
    assert [raw.loc[g, "stars"] for g in terciles] == [2, 2, 2]
    assert (table.loc[("twice", "test"), "teff"] == 1.0).all()  # |residual| <= 3 < 4
    assert (raw["logg"] == 1.0).all()  # a residual of 0 is within any sigma
