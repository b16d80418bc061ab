import numpy as np
import pandas as pd
from astropy.io import fits

from apnet_tf.data.synth import CHIP_GAPS, SpectrumModel, make_survey
from apnet_tf.io.photometry import PHOT_COLUMNS
from apnet_tf.io.spectra import read_apstar


def test_survey_files_look_like_apstar(survey):
    labels = pd.read_csv(survey / "labels.csv")
    assert len(labels) == 150 and set(labels.CATEGORY) == {"payne", "mstar", "yso"}
    assert (labels.CATEGORY == "payne").mean() > 0.6
    for row in labels.head(20).itertuples():
        with fits.open(survey / row.FILE) as hdul:
            assert len(hdul) >= 8 and hdul[1].header["CRVAL1"] == 4.179
            assert hdul[1].data.shape[-1] == 8575
            if hdul[0].header["NVISITS"] > 1:
                assert hdul[1].data.shape == (hdul[0].header["NVISITS"] + 2, 8575)
        spec = read_apstar(survey / row.FILE)
        assert spec.apogee_id == row.APOGEE_ID
        for a, b in CHIP_GAPS:
            assert (spec.err[a:b + 1] == 1e10).all() and (spec.flux[a:b + 1] == 0).all()
        assert np.median(spec.flux[~spec.bad]) > 0


def test_label_ranges_and_populations(survey):
    lab = pd.read_csv(survey / "labels.csv").replace(-9999.0, np.nan)
    assert lab.TEFF.between(2500, 8000).all() or lab.TEFF.isna().any()
    assert lab.TEFF.dropna().between(2500, 8000).all()
    assert lab.LOGG.dropna().between(-0.5, 5.5).all()
    assert lab.FE_H.dropna().between(-2.5, 0.5).all()
    m = lab[lab.CATEGORY == "mstar"]
    assert (m.TEFF.dropna() < 4000).all() and (m.LOGG.dropna() >= 4.5).all()
    y = lab[lab.CATEGORY == "yso"]
    assert y.LOGG.dropna().between(3.0, 4.4).all() and (y.TEFF.dropna() <= 4500).all()
    p = lab[lab.CATEGORY == "payne"]
    assert ((p.TEFF > 4000) | (p.LOGG < 3.5)).all()  # the paper's Payne rule (2.2)


def test_reproducible(tmp_path):
    a = make_survey(str(tmp_path / "a"), 4, seed=3)
    b = make_survey(str(tmp_path / "b"), 4, seed=3)
    pd.testing.assert_frame_equal(a, b)
    fa = fits.getdata(tmp_path / "a" / a.FILE[0], 1)
    fb = fits.getdata(tmp_path / "b" / b.FILE[0], 1)
    np.testing.assert_array_equal(fa, fb)
    c = make_survey(str(tmp_path / "c"), 4, seed=4)
    assert list(c.APOGEE_ID) != list(a.APOGEE_ID)


def test_spectrum_depends_on_every_label():
    model = SpectrumModel()
    base = model.flux(4500, 2.5, -0.3)
    for teff, logg, feh in ((4700, 2.5, -0.3), (4500, 3.5, -0.3), (4500, 2.5, 0.0)):
        other = model.flux(teff, logg, feh)
        rel = np.abs(other / base - 1)
        assert rel.max() > 0.02  # each label changes the spectrum visibly
    # log g changes line shapes, not only the continuum: the change is local, not smooth
    d = model.flux(4500, 3.5, -0.3) / base
    assert np.std(np.diff(d)) > 1e-3
    # cool dwarfs show H2O band edges that cool giants lack
    dwarf, giant = model.flux(3200, 5.0, 0.0), model.flux(3200, 1.0, 0.0)
    edge = slice(250, 600)
    depth = [(s[edge] / s[4000:4300].mean()).mean() for s in (dwarf, giant)]
    assert depth[0] < depth[1]


#: sha256 over labels.csv and the apStar files (in name order) of make_survey(n=4, seed=3), as
#: written before the survey had photometry (commit 71d1a3a): photometry.csv is drawn from a
#: random stream of its own and changes neither. (A numpy that computes the spectra's floats
#: differently changes this too: then every survey changed, which is worth knowing.)
SURVEY_4_3_SHA256 = "23bb832842bafe30f37e482909ea7c4136334848256b3355983fa38b83ecfacc"


def test_photometry_leaves_labels_and_spectra_as_they_were(tmp_path):
    import hashlib

    make_survey(str(tmp_path), 4, seed=3)
    h = hashlib.sha256()
    for name in ["labels.csv"] + sorted(p.name for p in tmp_path.glob("apStar-synth-*.fits")):
        h.update((tmp_path / name).read_bytes())
    assert h.hexdigest() == SURVEY_4_3_SHA256
    phot = pd.read_csv(tmp_path / "photometry.csv")
    assert list(phot.columns[:8]) == ["APOGEE_ID", *PHOT_COLUMNS]
    assert set(phot.APOGEE_ID) <= set(pd.read_csv(tmp_path / "labels.csv").APOGEE_ID)


def _stars(teff, logg, a_h=0.0):
    n = len(teff)
    return pd.DataFrame({"APOGEE_ID": [f"2M{i:08d}+0000000" for i in range(n)],
                         "TEFF": teff, "LOGG": logg, "A_H": np.broadcast_to(a_h, n)})


def test_giants_are_brighter_in_k_than_dwarfs_at_the_same_distance():
    from apnet_tf.data.synth_photometry import absolute_magnitudes, radii

    teff = np.array([4300.0, 5500.0, 3300.0])  # a red giant, a G dwarf, an M dwarf
    logg = np.array([1.8, 4.5, 5.0])
    radius = radii(np.array([1.2, 1.0, 0.3]), logg)
    assert radius[0] > 20 and 0.8 < radius[1] < 1.3 and radius[2] < 0.5
    k = absolute_magnitudes(teff, radius)[:, 5]
    assert k[0] < k[1] - 4 < k[2] - 4  # giant brightest in K, the M dwarf faintest
    # the Sun's own absolute magnitudes come back, and cooler means redder
    sun = absolute_magnitudes(np.array([5772.0]), np.array([1.0]))[0]
    np.testing.assert_allclose(sun, [4.67, 5.03, 4.18, 3.67, 3.32, 3.27])
    g_k = absolute_magnitudes(teff, radius)[:, 0] - k
    assert g_k[2] > g_k[0] > g_k[1]


def test_parallax_distance_limits_and_missing_values():
    from apnet_tf.data.synth_photometry import MISSING_MAG, draw_photometry, parallax_error

    n = 3000
    rng = np.random.default_rng(1)
    stars = _stars(rng.uniform(4000, 6000, n), rng.uniform(1.5, 4.6, n))
    phot = draw_photometry(stars, seed=0)
    plx, g = phot.GAIAEDR3_PARALLAX.to_numpy(), phot.GAIAEDR3_PHOT_G_MEAN_MAG.to_numpy()
    ok = np.isfinite(plx) & (g < 98)
    pull = (plx[ok] - 1000.0 / phot.DIST_PC[ok]) / parallax_error(g[ok])
    assert abs(np.mean(pull)) < 0.1 and 0.9 < np.std(pull) < 1.1  # parallax ~ 1 / distance
    assert phot.H.between(6.5, 13.0).sum() > 0.95 * n  # APOGEE's H range
    for col in ("J", "H", "K", "GAIAEDR3_PHOT_G_MEAN_MAG"):  # ~2% missing at random
        assert 0.01 < (phot[col] == MISSING_MAG).mean() < 0.04, col
    assert 0.01 < np.isnan(plx).mean() < 0.04
    assert draw_photometry(stars, seed=0).equals(phot)  # seeded
    # 5 mag of A_H pushes the optical bands beyond Gaia's limit: 99.999 and no parallax
    dusty = draw_photometry(_stars([3500.0] * 50, [4.8] * 50, a_h=5.0), seed=0)
    assert (dusty.GAIAEDR3_PHOT_BP_MEAN_MAG == MISSING_MAG).all()
    assert (dusty.GAIAEDR3_PHOT_G_MEAN_MAG == MISSING_MAG).all()
    assert dusty.GAIAEDR3_PARALLAX.isna().all()
    assert (dusty.K < 98).mean() > 0.9  # 2MASS still sees them
