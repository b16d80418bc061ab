"""The synthetic BOSS survey: SDSS spec files that astropy reads as SDSS files are read,
deterministic, physical where BOSS Net looks (Balmer lines, the radial velocity)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table
from cli_helpers import assert_one_line_error, cli, snapshot

from apnet_tf.data.synth_boss import (
    DLOGLAM,
    LINES,
    BossSpectrumModel,
    make_boss_survey,
)

C_KMS = 299792.458


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.name != ".apnet-tf.json"}


def test_same_seed_same_bytes_other_seed_other_survey(tmp_path):
    a = make_boss_survey(str(tmp_path / "a"), 6, seed=2, names="both")
    b = make_boss_survey(str(tmp_path / "b"), 6, seed=2, names="both")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    pd.testing.assert_frame_equal(a, b)
    c = make_boss_survey(str(tmp_path / "c"), 6, seed=3, names="both")
    assert set(c.FILE).isdisjoint(a.FILE) and not np.allclose(c.TEFF, a.TEFF)
    before = snapshot(tmp_path / "a")  # the same command again resumes: nothing changes
    make_boss_survey(str(tmp_path / "a"), 6, seed=2, names="both")
    assert snapshot(tmp_path / "a") == before


@pytest.mark.parametrize("names,sdss5", [("field", True), ("plate", False)])
def test_files_follow_the_sdss_data_model(tmp_path, names, sdss5):
    table = make_boss_survey(str(tmp_path / "s"), 4, seed=1, names=names)
    assert list(table.columns[:8]) == ["SPEC_ID", "FILE", "TEFF", "LOGG", "FE_H", "RV",
                                       "CATEGORY", "SNR"]
    for row in table.itertuples():
        path = tmp_path / "s" / row.FILE
        with fits.open(path) as hdul:
            # the authors' read: hdul[1].data["flux"], "ivar", "loglam", in either case
            spec = hdul[1].data
            flux, ivar, loglam = (np.array(spec[k]) for k in ("flux", "ivar", "loglam"))
            names_in_file = hdul[1].columns.names
            assert [h.name for h in hdul][:3] == ["PRIMARY", "COADD", "SPALL"]
            assert len(hdul) == (5 if sdss5 else 4)  # lite: HDUs 0-3, SDSS-V 0-4
            assert hdul[1].columns["FLUX"].format == "E" and hdul[1].columns["AND_MASK"].format \
                == "J"
            header, spall = hdul[0].header, hdul[2].data
            assert header["PLUG_RA"] == pytest.approx(row.RA) and spall["MJD"][0] == row.MJD
            if sdss5:
                assert names_in_file[0] == "FLUX" and "WRESL" in names_in_file
                assert spall["CATALOGID"][0] == row.CATALOGID and len(row.FILE.split("-")[1]) == 6
                assert len(flux) == 4648
            else:
                assert names_in_file[0] == "flux" and "wresl" not in names_in_file
                assert (spall["PLATE"][0], spall["FIBERID"][0]) == (row.PLATE, row.FIBERID)
                assert 4600 < len(flux) <= 4648
        np.testing.assert_allclose(np.diff(loglam), DLOGLAM, atol=1e-6)  # float32 loglam
        assert 3550 < 10 ** loglam[0] < 3600 and 10 ** loglam[-1] > 10300
        assert (ivar >= 0).all() and (ivar == 0).any() and np.isfinite(flux[ivar > 0]).any()
        coadd = Table.read(path, hdu=1)  # astropy's table reader too
        assert len(coadd) == len(flux)


def test_masked_and_nan_pixels_are_marked(tmp_path):
    table = make_boss_survey(str(tmp_path / "s"), 12, seed=4)
    nan_files = 0
    for row in table.itertuples():
        data = fits.getdata(tmp_path / "s" / row.FILE, "COADD")
        rejected = data["IVAR"] == 0
        assert ((data["AND_MASK"][rejected] & (1 << 18)) != 0).all()  # FULLREJECT
        assert ((data["OR_MASK"] & (1 << 23)) != 0).any()  # BRIGHTSKY near sky lines
        nan_files += bool(np.isnan(data["FLUX"]).any())
    assert nan_files >= 3


def test_full_and_lite_share_the_coadd(tmp_path):
    lite = make_boss_survey(str(tmp_path / "lite"), 3, seed=8, names="both")
    full = make_boss_survey(str(tmp_path / "full"), 3, seed=8, names="both", full=True)
    pd.testing.assert_frame_equal(lite, full)
    for name in lite.FILE:
        with fits.open(tmp_path / "lite" / name) as a, fits.open(tmp_path / "full" / name) as b:
            assert len(b) >= len(a) + 4  # blue and red camera of at least two exposures
            for col in a["COADD"].columns.names:  # NaN flux where the lite file has it
                np.testing.assert_array_equal(a["COADD"].data[col], b["COADD"].data[col])
            assert b[len(a)].name.startswith("B1-")


def _line_center(model, wave_rest, teff, rv):
    flux = model.flux(teff, 4.0, 0.0, rv)
    near = np.abs(model.wave - wave_rest) < 40
    return model.wave[near][np.argmin(flux[near])]


def test_lines_move_with_rv_and_depend_on_every_label():
    model = BossSpectrumModel()
    pixel = model.wave * (10 ** DLOGLAM - 1)
    for rv in (-250.0, 0.0, 300.0):  # H-alpha's core sits at lambda (1 + RV / c)
        centre = _line_center(model, LINES["balmer"][0], 9000, rv)
        expected = LINES["balmer"][0] * (1 + rv / C_KMS)
        assert abs(centre - expected) <= pixel[np.abs(model.wave - centre).argmin()]
    base = model.flux(5000, 2.5, -0.5, 0.0)
    for args in ((5300, 2.5, -0.5, 0.0), (5000, 4.0, -0.5, 0.0), (5000, 2.5, 0.0, 0.0),
                 (5000, 2.5, -0.5, 80.0)):
        assert np.abs(model.flux(*args) / base - 1).max() > 0.02
    hot, cool = model.flux(9500, 4.0, 0.0, 0.0), model.flux(4500, 4.0, 0.0, 0.0)
    h_beta = np.abs(model.wave - LINES["balmer"][1]).argmin()
    cont = lambda f: np.median(f[h_beta + 60:h_beta + 90])  # noqa: E731
    assert hot[h_beta] / cont(hot) < 0.6 < cool[h_beta] / cont(cool)  # Balmer lines peak hot


def test_labels_are_physical(tmp_path):
    table = make_boss_survey(str(tmp_path / "s"), 60, seed=0)
    assert set(table.CATEGORY) >= {"payne", "hot"} and table.TEFF.between(2500, 30000).all()
    assert table.RV.abs().max() < 1000 and 20 < table.RV.std() < 150
    assert table.SNR.between(3, 200).all()
    assert table.SPEC_ID.is_unique and table.CATALOGID.notna().all()


def test_synth_command_boss(tmp_path):
    out = tmp_path / "survey"
    res = cli("synth", "--instrument", "boss", "--out", out, "--n", 3, "--names", "plate")
    assert res.exit_code == 0, res.output
    assert "wrote 3 spectra and labels.csv" in res.stdout
    assert sorted(p.name for p in out.glob("spec-*.fits")) == sorted(
        pd.read_csv(out / "labels.csv").FILE)
    assert_one_line_error(cli("synth", "--out", tmp_path / "x", "--n", 2, "--names", "plate"),
                          "--names", "--instrument boss")
    assert_one_line_error(cli("synth", "--out", tmp_path / "x", "--instrument", "lamost"),
                          "--instrument", "apogee, boss")
    assert_one_line_error(cli("synth", "--instrument", "boss", "--out", tmp_path / "x",
                              "--names", "fiber"), "--names", "field, plate, both")
    assert not (tmp_path / "x").exists()


def test_a_boss_survey_replaces_an_apogee_one_only_with_overwrite(tmp_path):
    out = tmp_path / "survey"
    assert cli("synth", "--out", out, "--n", 2).exit_code == 0
    before = snapshot(out)
    assert_one_line_error(cli("synth", "--instrument", "boss", "--out", out, "--n", 2),
                          "holds another synthetic survey", "--overwrite")
    assert snapshot(out) == before
    res = cli("synth", "--instrument", "boss", "--out", out, "--n", 2, "--overwrite")
    assert res.exit_code == 0, res.output
    assert not list(out.glob("apStar-*")) and not (out / "photometry.csv").exists()
    assert len(list(out.glob("spec-*.fits"))) == 2
