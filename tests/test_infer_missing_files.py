"""infer --table over a table most of whose files are not downloaded: one summary line, the full
list beside the catalog (the rsync --files-from format), exit 0 when every file there was read;
and the table cut down to the stars that have their file (``keep_rows_with_files``)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, cli, snapshot

#: Rows of the big table; the 24 real DR13 files are the first 24.
ROWS = 20_000


def _allstar(path, apstar_files, root, rows: int = ROWS):
    """An allStar-like table of ``rows`` rows whose first len(apstar_files) files are under
    ``root`` in the SAS layout (links to the real files); the others name files never fetched.
    Returns the table's APOGEE_IDs."""
    from astropy.io import fits

    ids, tels, fields, names = [], [], [], []
    for i in range(rows):
        tel, field = ("apo25m", f"F{i % 7:03d}") if i % 3 else ("lco25m", f"S{i % 5:03d}")
        if i < len(apstar_files):
            name = apstar_files[i].name
            os.makedirs(root / tel / field, exist_ok=True)
            os.symlink(apstar_files[i], root / tel / field / name)
            star = name[len("apStar-r6-"):-len(".fits")]
        else:
            star = f"2M{i:08d}+0000000"
            name = f"apStar-dr17-{star}.fits"
        ids.append(star), tels.append(tel), fields.append(field), names.append(name)
    cols = [fits.Column(name=n, format="40A", array=a) for n, a in
            (("APOGEE_ID", ids), ("TELESCOPE", tels), ("FIELD", fields), ("FILE", names))]
    cols.append(fits.Column(name="SNR", format="E", array=np.arange(rows, dtype=np.float32)))
    fits.BinTableHDU.from_columns(cols).writeto(path)
    return ids


@pytest.fixture(scope="module")
def big_table(apstar_files, tmp_path_factory):
    work = tmp_path_factory.mktemp("allstar")
    ids = _allstar(work / "allStar.fits", apstar_files, work / "stars")
    return work, ids


def test_a_table_of_20000_rows_with_24_files_says_so_in_a_few_lines(big_table, untrained_run,
                                                                    apstar_files):
    """Before: one 'skipped' line per missing row (19,976 here) and exit 2."""
    from astropy.table import Table

    work, ids = big_table
    out = work / "catalog.fits"
    res = cli("infer", "--model", untrained_run, "--table", work / "allStar.fits", "--root",
              work / "stars", "--out", out, "--mc", "0")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert len(lines) < 10, res.output
    note = next(line for line in lines if "name no file" in line)
    assert f"{ROWS - 24} of {ROWS} rows name no file under" in note
    assert all(i in note for i in ids[24:27]) and ids[27] not in note  # the first few only
    assert f"all listed in {out}.missing.txt" in note
    assert "skipped" not in res.output
    assert len(Table.read(out)) == len(apstar_files)
    listed = (work / "catalog.fits.missing.txt").read_text().splitlines()
    paths = [line for line in listed if not line.startswith("#")]
    assert len(paths) == ROWS - 24 and len(set(paths)) == ROWS - 24
    assert paths[:2] == [f"lco25m/S004/apStar-dr17-{ids[24]}.fits",
                         f"apo25m/F004/apStar-dr17-{ids[25]}.fits"]
    assert not any((work / "stars" / p).exists() for p in paths[:100])


def test_the_list_of_missing_files_is_replaced_and_removed_not_someone_elses(
        apstar_files, untrained_run, tmp_path):
    """A job of the same --out replaces its own list, removes it once nothing is missing, and
    refuses to write over a file of that name that it did not write."""
    ids = _allstar(tmp_path / "allStar.fits", apstar_files[:3], tmp_path / "stars", rows=5)
    out = tmp_path / "cat.fits"
    listed = tmp_path / "cat.fits.missing.txt"
    args = ("infer", "--model", untrained_run, "--root", tmp_path / "stars", "--out", out,
            "--mc", "0", "--table")
    assert cli(*args, tmp_path / "allStar.fits").exit_code == 0
    assert [line for line in listed.read_text().splitlines() if not line.startswith("#")] == [
        f"lco25m/S003/apStar-dr17-{ids[3]}.fits", f"apo25m/F004/apStar-dr17-{ids[4]}.fits"]
    listed.write_text(listed.read_text() + "an older list of this catalog\n")
    assert cli(*args, tmp_path / "allStar.fits").exit_code == 0
    assert "older" not in listed.read_text()  # replaced whole
    from astropy.table import Table

    t = Table.read(tmp_path / "allStar.fits")
    t[:3].write(tmp_path / "present.fits")
    res = cli(*args, tmp_path / "present.fits")
    assert res.exit_code == 0, res.output
    assert not listed.exists()  # nothing missing now: the old list is gone
    listed.write_text("my notes\n")
    before = snapshot(tmp_path)
    res = cli(*args, tmp_path / "allStar.fits")
    assert_one_line_error(res, "cat.fits.missing.txt", "not a list of missing files")
    assert snapshot(tmp_path) == before


def test_a_table_none_of_whose_files_is_there_is_refused_before_any_work(
        apstar_files, untrained_run, tmp_path):
    _allstar(tmp_path / "allStar.fits", [], tmp_path / "stars", rows=40)
    os.makedirs(tmp_path / "stars")
    res = cli("infer", "--model", untrained_run, "--table", tmp_path / "allStar.fits",
              "--root", tmp_path / "stars", "--out", tmp_path / "cat.fits", "--mc", "0")
    line = assert_one_line_error(res, "allStar.fits", "none of its 40 rows has its file",
                                 "2M00000000+0000000", "--root")
    assert "2M00000003+0000000" not in line
    assert not (tmp_path / "cat.fits").exists()


def test_keep_rows_with_files_cuts_the_table_to_the_downloaded_stars(big_table, apstar_files):
    from astropy.table import Table

    from apnet_tf.io.survey_table import keep_rows_with_files

    work, ids = big_table
    cut = keep_rows_with_files(str(work / "allStar.fits"), str(work / "stars"),
                               str(work / "mine.fits"))
    assert (cut.kept, cut.rows) == (24, ROWS)
    assert str(cut).startswith(f"kept 24 of {ROWS} rows of ")
    mine = Table.read(work / "mine.fits")
    assert list(mine["APOGEE_ID"]) == ids[:24]
    assert mine.colnames == ["APOGEE_ID", "TELESCOPE", "FIELD", "FILE", "SNR"]
    np.testing.assert_array_equal(mine["SNR"], np.arange(24, dtype=np.float32))
    from apnet_tf.errors import ApnetError

    with pytest.raises(ApnetError, match="name it .fits"):
        keep_rows_with_files(str(work / "allStar.fits"), str(work / "stars"), "mine.csv")


def test_sas_paths_and_write_file_list_make_an_rsync_files_from_list(big_table, apstar_files,
                                                                    tmp_path):
    from apnet_tf.io.survey_table import sas_paths, write_file_list

    work, ids = big_table
    paths = sas_paths(str(work / "allStar.fits"), apogee_ids=[ids[1], " " + ids[30]])
    assert paths == [f"apo25m/F001/{apstar_files[1].name}",
                     f"lco25m/S000/apStar-dr17-{ids[30]}.fits"]
    write_file_list(str(tmp_path / "my_stars.txt"), paths, ["the stars I label"])
    assert (tmp_path / "my_stars.txt").read_text().splitlines() == ["# the stars I label"] + paths


def test_predict_files_warns_the_same_one_line(apstar_files, untrained_run, tmp_path):
    """The notebook API leaves the rows with no file out with one warning, as infer does (it
    used to warn once per row, as a skipped input)."""
    import apnet_tf

    ids = _allstar(tmp_path / "allStar.fits", apstar_files[:3], tmp_path / "stars", rows=5)
    model = apnet_tf.load(str(untrained_run))
    with pytest.warns(UserWarning) as caught:
        cat = model.predict_files(table=str(tmp_path / "allStar.fits"),
                                  root=str(tmp_path / "stars"), mc=0)
    lines = [str(w.message) for w in caught if "name no file" in str(w.message)]
    assert len(lines) == 1 and "2 of 5 rows name no file" in lines[0] and ids[3] in lines[0]
    assert not any(str(w.message).startswith("skipped") for w in caught)
    assert list(cat["APOGEE_ID"]) == ids[:3]
