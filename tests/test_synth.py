import numpy as np
import pandas as pd
from astropy.io import fits

from apnet_tf.data.synth import CHIP_GAPS, SpectrumModel, make_survey
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
