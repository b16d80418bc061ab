import shutil

import numpy as np
import pytest
from astropy.table import Table

from apnet_tf.constants import CALIBRATION_MC_DRAWS, CALIBRATION_STARS_PER_STRATUM
from apnet_tf.inference.predict import predict_catalog
from apnet_tf.io.catalog import write_catalog
from apnet_tf.io.catalog_flags import flags
from apnet_tf.kiel import age_bin, in_triangle
from apnet_tf.model.loading import load_model

COLUMNS = ["APOGEE_ID", "RA", "DEC", "TEFF", "TEFF_ERR", "LOGG", "LOGG_ERR", "FE_H", "FE_H_ERR",
           "SNR"]


def test_yso_triangle_and_age_bins():
    # vertices (2200, 4.4), (4500, 3.9), (3200, 1.7); centroid (3300, 3.33) is inside
    teff = np.array([3300.0, 5000.0, 3000.0, 2300.0, 4400.0, np.nan])
    logg = np.array([3.33, 3.0, 4.8, 4.3, 3.85, 3.5])
    np.testing.assert_array_equal(in_triangle(teff, logg), [1, 0, 0, 1, 1, 0])
    bins = age_bin(np.array([3.5, 3.7, 3.9, 4.1, 4.3, 4.3]), [1, 1, 1, 1, 1, 0])
    assert list(bins) == ["<1 Myr", "1-2 Myr", "2-3 Myr", "3-5 Myr", ">5 Myr", ""]


def test_flags():
    f = flags(np.array([6800.0, 5000.0, np.nan, 20000.0]), np.array([4.0, 2.0, 2.0, 4.0]),
              np.array([0.0, 0.0, 0.0, 0.0]), np.full((4, 3), 1.0),
              np.array([50.0, 10.0, 50.0, 50.0]),
              ((3000.0, 8000.0), (0.0, 5.0), (-2.0, 0.5)))
    np.testing.assert_array_equal(f["TEFF_EDGE"], [1, 0, 0, 1])
    np.testing.assert_array_equal(f["LOW_SNR"], [0, 1, 0, 0])
    np.testing.assert_array_equal(f["BAD"], [0, 0, 1, 1])  # NaN, and far above 8000 K


def test_infer_real_files_with_a_bad_one(apstar_files, trained_run, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for f in apstar_files[:5]:
        shutil.copy(f, src)
    (src / "apStar-r6-broken.fits").write_bytes(apstar_files[0].read_bytes()[:20000])
    loaded = load_model(str(trained_run))
    res = predict_catalog(loaded, [str(src)], mc=20, batch_size=2)
    assert len(res.catalog) == 5 and len(res.failures) == 1
    assert "apStar-r6-broken.fits" in res.failures[0]
    assert res.catalog.colnames[:10] == COLUMNS
    for col in ("TEFF", "TEFF_ERR", "LOGG_ERR", "FE_H_ERR"):
        assert np.isfinite(np.asarray(res.catalog[col])).all()
    for path in (tmp_path / "c.csv", tmp_path / "c.fits"):
        write_catalog(res.catalog, str(path))
        back = Table.read(path, **({"format": "ascii.ecsv"} if path.suffix == ".csv" else {}))
        assert list(back["APOGEE_ID"]) == list(res.catalog["APOGEE_ID"])
        np.testing.assert_allclose(back["TEFF"], res.catalog["TEFF"], rtol=1e-6)
    assert not list(tmp_path.glob(".tmp-*"))


def test_infer_labelled_records_adds_labels(records, trained_run):
    res = predict_catalog(load_model(str(trained_run)), [str(records)], mc=0)
    cat = res.catalog
    assert len(cat) == 150
    for col in ("TEFF_LABEL", "LOGG_LABEL", "FE_H_LABEL", "SPLIT", "CATEGORY"):
        assert col in cat.colnames
    assert np.isnan(np.asarray(cat["TEFF_ERR"])).all()  # no Monte Carlo, no sigma


def test_fit_calibrates_and_infer_uses_it_by_default(trained_run, apstar_files, tmp_path):
    loaded = load_model(str(trained_run))
    assert loaded.calibration is not None  # fit ended by calibrating on dev
    # with calibrate's draws, over its subset (the 150-star survey: every star)
    assert loaded.calibration.mc == CALIBRATION_MC_DRAWS
    assert loaded.calibration.subset["stars_per_stratum"] == CALIBRATION_STARS_PER_STRATUM
    folder = str(apstar_files[0].parent)
    cal = predict_catalog(loaded, [folder], mc=6, seed=1).catalog
    raw = predict_catalog(loaded, [folder], mc=6, seed=1, calibrated=False).catalog
    assert cal.meta["SIGMA"] == "calibrated" and "dev stars" in cal.meta["SIGCAL"]
    assert raw.meta["SIGMA"] == "raw MC" and "SIGCAL" not in raw.meta
    assert cal.meta["MC"] == raw.meta["MC"] == 6 and cal.meta["MCSEED"] == 1
    write_catalog(cal, str(tmp_path / "cat.fits"))
    from astropy.io import fits

    header = fits.getheader(tmp_path / "cat.fits", 1)
    assert header["SIGMA"] == "calibrated" and header["MC"] == 6


def test_calibrated_sigma_uses_the_mc_draws_asked_for(records, trained_run,
                                                             apstar_files, tmp_path):
    """Review item 3: --mc is what runs, calibrated or not, and the header says so."""
    from apnet_tf.calibration.fit import calibrate

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    calibrate(str(run), str(records), mc=5)
    loaded = load_model(str(run))
    folder = str(apstar_files[0].parent)
    cal = predict_catalog(loaded, [folder], mc=12, calibrated=True, seed=2).catalog
    raw = predict_catalog(loaded, [folder], mc=12, calibrated=False, seed=2).catalog
    # the same 12 draws: the same Monte Carlo means, and the calibrated sigma is the
    # calibration's function of the raw one
    for col in ("TEFF", "LOGG", "FE_H", "TEFF_P50"):
        np.testing.assert_array_equal(np.asarray(cal[col]), np.asarray(raw[col]))
    cols = ("TEFF", "LOGG", "FE_H")
    pred = np.stack([np.asarray(raw[c], float) for c in cols], axis=1)
    sigma = np.stack([np.asarray(raw[c + "_ERR"], float) for c in cols], axis=1)
    expect = loaded.calibration.sigma(pred, sigma, np.asarray(raw["SNR"], float))
    for k, col in enumerate(cols):
        np.testing.assert_allclose(np.asarray(cal[col + "_ERR"]), expect[:, k], rtol=1e-5)
    assert (cal.meta["MC"], cal.meta["CALMC"], cal.meta["SIGMA"]) == (12, 5, "calibrated")


def test_calibrate_and_evaluate(records, trained_run, tmp_path):
    from apnet_tf.calibration.fit import calibrate
    from apnet_tf.evaluation.tables import evaluate

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    progress = []
    cal = calibrate(str(run), str(records), mc=20,
                    on_progress=lambda done, total: progress.append((done, total)))
    assert (run / "calibration.json").exists() and cal.mc == 20
    # the shape comes from every labelled training star, with their S/N terciles
    from apnet_tf.data.manifest import count_records

    n_train = count_records(str(records), ["train"])
    assert cal.shape_split == "train" and 0.9 * n_train <= cal.stars["all"] <= n_train
    assert cal.dev_stars == count_records(str(records), ["dev"])
    # its progress counts the train and dev stars of its Monte Carlo
    assert progress[-1] == (n_train + cal.dev_stars,) * 2
    assert np.isfinite(cal.snr_edges).all() and cal.snr_edges[0] < cal.snr_edges[1]
    assert all((np.asarray(v) > 0).all() for v in cal.noise.values())
    # fitted on dev: calibrated dev coverage is close to 68%
    assert all(0.5 < c < 0.85 for c in cal.coverage_dev_calibrated)
    res = evaluate(str(run), str(records), str(tmp_path / "eval"), mc=20)
    for name in ("table2.csv", "table2.md", "table3.csv", "table3.md", "coverage.csv",
                 "catalog.csv", "kiel.png", "label_vs_prediction.png", "sigma_vs_snr.png",
                 "yso_sky.png"):
        assert (tmp_path / "eval" / name).exists(), name
        if name.endswith(".png"):
            assert (tmp_path / "eval" / name).read_bytes()[:4] == b"\x89PNG"
    cov = res["coverage"]
    assert set(cov.index.get_level_values(0)) == {"raw (MC input noise)", "calibrated"}
    values = cov[["teff", "logg", "fe_h"]].to_numpy()
    assert ((values >= 0) & (values <= 1) | np.isnan(values)).all()
    groups = set(cov.loc[("calibrated", "test")].index)
    assert {"all", "payne", "mstar"} <= groups
    assert sum(g.startswith("S/N ") for g in groups) == 3
    test = cov.loc[("calibrated", "test")]
    assert test.loc["all", "stars"] == test[test.index.isin(["payne", "mstar", "yso"])][
        "stars"].sum()
    assert "test bias" in res["table3"].columns


def test_killed_inference_resumes_from_finished_batches(apstar_files, trained_run, tmp_path):
    loaded = load_model(str(trained_run))
    folder = str(apstar_files[0].parent)
    work = tmp_path / "catalog.csv.parts"

    class Killed(Exception):
        pass

    def kill_after_two_batches(done, total):
        if done >= 16:
            raise Killed

    with pytest.raises(Killed):
        predict_catalog(loaded, [folder], mc=10, batch_size=8, seed=1, work_dir=str(work),
                        on_progress=kill_after_two_batches)
    assert sorted(p.name for p in work.glob("part-*.npz")) == ["part-000000.npz",
                                                               "part-000001.npz"]
    calls = []
    real = loaded.monte_carlo
    loaded.monte_carlo = lambda *a, **k: calls.append(1) or real(*a, **k)
    res = predict_catalog(loaded, [folder], mc=10, batch_size=8, seed=1, work_dir=str(work))
    assert len(calls) == 1  # only the third batch was predicted again
    assert len(res.catalog) == 24 and np.isfinite(np.asarray(res.catalog["TEFF_ERR"])).all()
    # other settings do not reuse those batches
    calls.clear()
    predict_catalog(loaded, [folder], mc=12, batch_size=8, work_dir=str(work))
    assert len(calls) == 3


def test_settings_fingerprint_is_that_of_the_work_parts_made_before():
    # A work folder keeps a batch only when settings.json matches in full; these dicts are what
    # the release before InferenceSettings wrote for the same settings, so its parts stay
    # reusable after an upgrade.
    from apnet_tf.inference.settings import InferenceSettings

    phot = {"2M1": np.arange(7.0), "2M2": np.full(7, np.nan)}
    assert InferenceSettings(mc=100).fingerprint() == {
        "mc": 100, "batch_size": 256, "calibrated": None, "mc_dropout": False, "seed": None,
        "splits": []}
    assert InferenceSettings(mc=8, batch_size=32, calibrated=True, seed=3,
                             split_filter=["dev", "test"], precision="mixed_bfloat16",
                             mask_bits=(0, 1, 2), photometry=phot).fingerprint() == {
        "mc": 8, "batch_size": 32, "calibrated": True, "mc_dropout": False, "seed": 3,
        "splits": ["dev", "test"], "precision": "mixed_bfloat16", "mask_bits": [0, 1, 2],
        "photometry": "9c2d21fa3eef9a1daa80e2d5919ec192459a4edcfb85b3a1874d7072739c0b49"}
    assert InferenceSettings(mc=0, batch_size=16, calibrated=False, mc_dropout=True, seed=5,
                             split_filter=[], mask_bits=(6, 5, 4, 3, 2, 1, 0)).fingerprint() == {
        "mc": 0, "batch_size": 16, "calibrated": False, "mc_dropout": True, "seed": 5,
        "splits": [], "mask_bits": [0, 1, 2, 3, 4, 5, 6]}
    # the default bits, given or not, are no setting of their own
    assert "mask_bits" not in InferenceSettings(mc=2, mask_bits=(0, 1, 2, 3, 4, 5, 6)
                                                ).fingerprint()
