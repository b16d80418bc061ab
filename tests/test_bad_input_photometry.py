"""Photometry that must match: IDs compared without case and spaces, duplicates noted and
resolved as make-labels does, placeholders filled and marked, text refused, a table of other
stars stopped (BAD_INPUT.md, "Photometry that must match")."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cli_helpers import assert_one_line_error, cli

from apnet_tf.errors import ApnetError
from apnet_tf.io.photometry import (
    PHOT_COLUMNS,
    check_matches,
    filled_bits,
    lookup,
    read_photometry,
)

ROW = [2.5, 13.0, 13.6, 12.3, 11.2, 10.6, 10.4]


def _write(tmp_path, rows, name="phot.csv"):
    path = tmp_path / name
    pd.DataFrame([[i, *v] for i, v in rows], columns=["APOGEE_ID", *PHOT_COLUMNS]).to_csv(
        path, index=False)
    return str(path)


def test_ids_are_joined_without_case_and_spaces(tmp_path):
    """Fails on the old code: a lower-case or padded ID matched nothing, silently filled."""
    path = _write(tmp_path, [("2m00452143+1634446", ROW), ("  2M03122509+0021585 ", ROW)])
    table = read_photometry(path)
    got = lookup(table, ["2M00452143+1634446", "2M03122509+0021585", "2M0"])
    np.testing.assert_array_equal(got[:2], [ROW, ROW])
    assert np.isnan(got[2]).all()
    assert check_matches(table, ["2M00452143+1634446", "2M0"], path) == 1


def test_a_star_listed_twice_keeps_its_first_row_with_a_note(tmp_path):
    """Fails on the old code: the first row was used without a word."""
    other = [v + 1 for v in ROW]
    path = _write(tmp_path, [("2M1", ROW), ("2M2", ROW), ("2m1", other), ("2M2", ROW)])
    notes: list[str] = []
    table = read_photometry(path, notes)
    np.testing.assert_array_equal(lookup(table, ["2M1"])[0], ROW)
    assert len(notes) == 1
    for word in ("phot.csv", "2 APOGEE_ID(s) listed in more than one row",
                 "(1 with different values)", "2M1", "2M2", "first row"):
        assert word in notes[0], notes[0]


@pytest.mark.parametrize("column, value", [
    (0, -9999.0), (1, -9999.0), (4, -9999.99), (5, -999.0), (0, 5000.0), (6, 45.0), (2, -5.0)])
def test_placeholders_are_filled_and_marked(tmp_path, column, value):
    """Fails on the old code: -9999 went into the network as a value, PHOT_FILLED 0."""
    row = list(ROW)
    row[column] = value
    notes: list[str] = []
    table = read_photometry(_write(tmp_path, [("2M1", row)]), notes)
    got = lookup(table, ["2M1"])
    assert np.isnan(got[0, column]) and np.isfinite(np.delete(got[0], column)).all()
    assert filled_bits(got)[0] == 1 << column
    assert len(notes) == 1 and f"{PHOT_COLUMNS[column]} 1" in notes[0], notes


def test_99999_is_left_to_the_network_and_marked(tmp_path):
    row = list(ROW)
    row[1] = 99.999
    notes: list[str] = []
    got = lookup(read_photometry(_write(tmp_path, [("2M1", row)]), notes), ["2M1"])
    assert got[0, 1] == 99.999 and filled_bits(got)[0] == 2 and notes == []


@pytest.mark.parametrize("text", ["abc", "12,5"])
def test_text_in_a_numeric_column_is_refused(tmp_path, text):
    """Fails on the old code: read as missing (infer), although make-records refused it."""
    path = tmp_path / "phot.csv"
    path.write_text("APOGEE_ID," + ",".join(PHOT_COLUMNS) + "\n"
                    + "2M1," + ",".join(map(str, ROW)) + "\n"
                    + f'2M2,2.5,13,13.6,12.3,"{text}",10.6,10.4\n')
    with pytest.raises(ApnetError) as err:
        read_photometry(str(path))
    for word in ("phot.csv", "column J", repr(text), "row 2"):
        assert word in str(err.value), str(err.value)


def test_a_table_of_other_stars_names_two_ids_of_each_side(tmp_path):
    path = _write(tmp_path, [("GAIA-1", ROW), ("GAIA-2", ROW), ("GAIA-3", ROW)])
    with pytest.raises(ApnetError) as err:
        check_matches(read_photometry(path), ["2M1", "2M2", "2M3"], path)
    for word in ("phot.csv", "APOGEE_ID", "GAIA-1", "GAIA-2", "2M1", "2M2"):
        assert word in str(err.value), str(err.value)
    assert "GAIA-3" not in str(err.value) and "2M3" not in str(err.value)


@pytest.fixture(scope="module")
def survey_phot(small_survey):
    return pd.read_csv(small_survey / "photometry.csv")


def test_make_records_joins_lower_case_ids_and_notes_the_lacking(small_survey, survey_phot,
                                                                 tmp_path):
    """Fails on the old code: lower-case IDs stored every star's photometry as missing."""
    table = survey_phot.iloc[1:].assign(APOGEE_ID=lambda t: t.APOGEE_ID.str.lower())
    path = tmp_path / "phot.csv"
    table.to_csv(path, index=False)
    res = cli("make-records", "--spectra", small_survey, "--photometry", path, "--out",
              tmp_path / "rec", "--shards", 1)
    assert res.exit_code == 0, res.output
    assert "1 absent" in res.stdout
    lacking = [line for line in res.stderr.splitlines() if "have no row" in line]
    assert len(lacking) == 1 and "1 of" in lacking[0], res.stderr


def test_make_records_with_photometry_of_other_stars_stops(small_survey, survey_phot, tmp_path):
    """Fails on the old code: exit 0, every star's photometry stored as missing."""
    path = tmp_path / "phot.csv"
    survey_phot.assign(APOGEE_ID=[f"X{i}" for i in range(len(survey_phot))]).to_csv(
        path, index=False)
    res = cli("make-records", "--spectra", small_survey, "--photometry", path, "--out",
              tmp_path / "rec")
    assert_one_line_error(res, str(path), "APOGEE_ID", "X0", "X1", "2M")
    assert not (tmp_path / "rec").exists()


@pytest.fixture(scope="module")
def net2_run(tmp_path_factory):
    """An APOGEE Net II run (seeded small weights in the authors' layout)."""
    torch = pytest.importorskip("torch")
    from apnet_tf.model.torch_layouts import torch_shapes

    rng = np.random.default_rng(5)
    base = tmp_path_factory.mktemp("net2")
    state = {k: torch.from_numpy(rng.normal(0, 0.02, s).astype(np.float32))
             for k, s in torch_shapes("anet2").items()}
    torch.save(state, base / "model.pt")
    res = cli("import-torch", base / "model.pt", "--arch", "anet2", "--out", base / "run")
    assert res.exit_code == 0, res.output
    return base / "run"


def _spectra(small_survey, tmp_path, n=6, rename=False):
    import shutil

    src = tmp_path / "spectra"
    src.mkdir()
    files = sorted(small_survey.glob("apStar-*.fits"))[:n]
    for i, f in enumerate(files):
        shutil.copy(f, src / (f"star{i}.fits" if rename else f.name))
    ids = [f.name.split("-", 2)[-1][:-len(".fits")] for f in files]
    return src, ids


def _infer(net2_run, src, phot, out):
    return cli("infer", "--model", net2_run, "--spectra", src, "--photometry", phot,
               "--out", out, "--mc", 0)


def test_infer_joins_lower_case_ids_and_counts_the_stars_without(net2_run, small_survey,
                                                                 survey_phot, tmp_path):
    """Fails on the old code: lower-case IDs matched nothing (PHOT_FILLED 127 for every star,
    "6 with photometry filled in (6 with none at all)")."""
    from astropy.table import Table

    src, ids = _spectra(small_survey, tmp_path)
    table = survey_phot[survey_phot.APOGEE_ID.isin(ids[2:])]
    path = tmp_path / "phot.csv"
    table.assign(APOGEE_ID=table.APOGEE_ID.str.lower()).to_csv(path, index=False)
    res = _infer(net2_run, src, path, tmp_path / "cat.fits")
    assert res.exit_code == 0, res.output
    cat = Table.read(tmp_path / "cat.fits")
    filled = dict(zip(cat["APOGEE_ID"], cat["PHOT_FILLED"]))
    assert sorted(i for i, v in filled.items() if v == 127) == sorted(ids[:2])
    some = sum(v != 0 for v in filled.values())  # the table's own 99.999 bands count too
    assert f"{some} with photometry filled in (2 with none at all)" in res.stdout, res.stdout
    assert cat.meta["NPHOTNON"] == 2 and cat.meta["NPHOTFIL"] == some


@pytest.mark.parametrize("rename", [False, True])
def test_infer_with_photometry_of_other_stars_stops(net2_run, small_survey, survey_phot,
                                                     tmp_path, rename):
    """Fails on the old code: exit 0 and "0 flagged BAD", every star on Net II's fill values.
    With apStar names the job stops before any work; with other names, before the catalog."""
    src, ids = _spectra(small_survey, tmp_path, rename=rename)
    path = tmp_path / "phot.csv"
    survey_phot.assign(APOGEE_ID=[f"GAIA{i}" for i in range(len(survey_phot))]).to_csv(
        path, index=False)
    res = _infer(net2_run, src, path, tmp_path / "cat.fits")
    if rename:  # the job ran: its step marker, then the error
        assert res.exit_code == 1 and "Traceback" not in res.output
        marker, line = res.stderr.strip().splitlines()
        assert marker.startswith("infer: 6 of 6"), res.stderr
    else:
        line = assert_one_line_error(res)
    for word in (str(path), "APOGEE_ID", "GAIA0", "GAIA1"):
        assert word in line, line
    assert line.startswith("error:") and sum(i in line for i in ids) == 2, line
    assert not (tmp_path / "cat.fits").exists()


def test_infer_fills_and_marks_placeholders(net2_run, small_survey, survey_phot, tmp_path):
    """Fails on the old code: -9999 went into the network as a value, PHOT_FILLED 0."""
    from astropy.table import Table

    src, ids = _spectra(small_survey, tmp_path, n=2)
    table = survey_phot[survey_phot.APOGEE_ID.isin(ids)].copy()
    table.loc[table.APOGEE_ID == ids[0], "J"] = -9999
    table.loc[table.APOGEE_ID == ids[0], "GAIAEDR3_PARALLAX"] = -9999.99
    table = pd.concat([table, table.iloc[[1]]])  # and one star twice
    path = tmp_path / "phot.csv"
    table.to_csv(path, index=False)
    res = _infer(net2_run, src, path, tmp_path / "cat.fits")
    assert res.exit_code == 0, res.output
    notes = [line for line in res.stderr.splitlines() if line.startswith("note:")]
    assert any("GAIAEDR3_PARALLAX 1, J 1" in n for n in notes), notes
    assert any("1 APOGEE_ID(s) listed in more than one row" in n for n in notes), notes
    cat = Table.read(tmp_path / "cat.fits")
    filled = dict(zip(cat["APOGEE_ID"], cat["PHOT_FILLED"]))
    assert filled[ids[0]] == 1 | 16 and filled[ids[1]] == 0
    assert "1 with photometry filled in;" in res.stdout, res.stdout
    assert cat.meta["NPHOTNON"] == 0 and cat.meta["NPHOTFIL"] == 1


def test_infer_refuses_text_in_the_photometry(net2_run, small_survey, survey_phot, tmp_path):
    """Fails on the old code: 'abc' was read as missing (make-records refused it)."""
    src, ids = _spectra(small_survey, tmp_path, n=2)
    path = tmp_path / "phot.csv"
    survey_phot.astype({"H": object}).assign(H="12,5").to_csv(path, index=False)
    res = _infer(net2_run, src, path, tmp_path / "cat.fits")
    assert_one_line_error(res, str(path), "column H", "'12,5'")
    assert not (tmp_path / "cat.fits").exists()


def test_the_notebook_api_joins_a_dict_as_infer_joins_a_table(net2_run, small_survey,
                                                               survey_phot, tmp_path):
    """Fails on the old code: a dict with lower-case APOGEE_IDs matched no star (PHOT_FILLED
    127 for all), and a dict of other stars gave every star Net II's fill values silently."""
    import apnet_tf
    from apnet_tf.io.spectra import read_apstar

    src, ids = _spectra(small_survey, tmp_path, n=2)
    specs = [read_apstar(p) for p in sorted(src.glob("*.fits"))]
    flux = np.stack([s.flux for s in specs])
    err = np.stack([s.err for s in specs])
    star_ids = [s.apogee_id for s in specs]
    rows = survey_phot.set_index("APOGEE_ID").loc[star_ids, list(PHOT_COLUMNS)].to_numpy()
    model = apnet_tf.load(net2_run)
    lower = {i.lower(): r for i, r in zip(star_ids, rows)}
    got = model.predict(flux, err, apogee_id=star_ids, photometry=lower, mc=0)
    assert list(got["PHOT_FILLED"]) == [0, 0]
    other = {f"GAIA{i}": r for i, r in enumerate(rows)}
    with pytest.raises(ApnetError, match="no APOGEE_ID matches a star") as info:
        model.predict(flux, err, apogee_id=star_ids, photometry=other, mc=0)
    assert "GAIA0" in str(info.value) and star_ids[0] in str(info.value)
