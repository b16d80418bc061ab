"""Issue 21, items 6 and the tracebacks: messages a user can act on, one line each."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from cli_helpers import assert_one_line_error, cli, snapshot


def test_fit_resume_and_overwrite_together_are_refused(small_records, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.keras").write_text("model")
    before = snapshot(run)
    res = cli("fit", "--records", small_records, "--out", run, "--resume", "--overwrite",
              "--epochs", "1")
    assert_one_line_error(res, "--resume", "--overwrite")
    assert snapshot(run) == before


def test_infer_out_that_is_a_folder_is_refused_first(small_survey, untrained_run, tmp_path):
    out = tmp_path / "x.fits"
    out.mkdir()
    res = cli("infer", "--model", untrained_run, "--spectra", small_survey, "--out", out,
              "--mc", "0")
    line = assert_one_line_error(res, "x.fits", "folder")
    assert ".tmp-" not in line


def test_infer_calibrated_on_an_export_says_what_to_do(untrained_run, small_survey, tmp_path):
    from apnet_tf.export.model_export import export_model

    out = tmp_path / "net"
    export_model(str(untrained_run), str(out), mc=2)
    res = cli("infer", "--model", out / "1", "--spectra", small_survey, "--out",
              tmp_path / "c.csv", "--calibrated", "--mc", "2")
    line = assert_one_line_error(res, "calibration")
    assert "export" in line and "run 'apnet-tf calibrate' first" not in line


def test_table_that_is_an_image_fits_is_one_line(small_survey, untrained_run, tmp_path):
    table = tmp_path / "allStar.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((3, 3)))]).writeto(table)
    res = cli("infer", "--model", untrained_run, "--table", table, "--root", tmp_path,
              "--out", tmp_path / "c.csv", "--mc", "0")
    assert_one_line_error(res, "allStar.fits", "table")


def test_evaluate_on_unlabelled_records_says_so(small_survey, untrained_run, tmp_path):
    records = tmp_path / "rec"
    assert cli("make-records", "--spectra", small_survey, "--out", records).exit_code == 0
    res = cli("evaluate", "--model", untrained_run, "--records", records, "--out",
              tmp_path / "eval", "--mc", "2")
    line = assert_one_line_error(res, "rec", "label")
    assert "hold no spectrum" not in line


def test_a_broken_yso_json_is_one_line(tmp_path):
    net = tmp_path / "yso_net"
    net.mkdir()
    (net / ".apnet-tf.json").write_text('{"kind": "yso_net"}')
    (net / "network.keras").write_text("x")
    (net / "yso.json").write_text("{not json")
    phot = tmp_path / "m.csv"
    phot.write_text("APOGEE_ID,G,PARALLAX\n2M1,15,2.5\n")
    res = cli("yso-labels", "--model", net, "--members", phot, "--out", tmp_path / "y.csv")
    assert_one_line_error(res, "yso.json")
    assert not (tmp_path / "y.csv").exists()


def _isochrones(tmp_path, case):
    from apnet_tf.labels.toy_isochrones import toy_isochrones, write_parsec

    ages = [6.5] if case == "one_age" else [6.0, 6.5, 7.0, 7.5, 8.0]
    table = toy_isochrones(log_ages=ages, masses=np.geomspace(0.08, 3.0, 20))
    if case == "negative_mass":
        table["Mini"] = -table["Mini"]
    if case == "linear_ages":  # ages in years under the logAge name (a CSV of the same columns)
        table["logAge"] = 10.0 ** table["logAge"]
        table.to_csv(tmp_path / "iso.csv", index=False)
        return tmp_path / "iso.csv"
    return write_parsec(table, str(tmp_path / "iso.dat"))


@pytest.mark.parametrize("case, words", [
    ("one_age", ("iso.dat", "one age")),
    ("negative_mass", ("iso.dat", "Mini", "negative")),
    ("linear_ages", ("iso.csv", "logAge", "log10")),
    ("g_inf", ("--extinction", "finite")),
])
def test_each_isochrone_problem_has_its_own_message(tmp_path, case, words):
    iso = _isochrones(tmp_path, case)
    extra = ["--extinction", "G=inf"] if case == "g_inf" else []
    res = cli("yso-train", "--isochrones", iso, "--out", tmp_path / "net", "--n-train", 50,
              "--n-val", 20, "--epochs", 1, *extra)
    line = assert_one_line_error(res, *words)
    assert "no G-detected" not in line
    assert not (tmp_path / "net").exists()


@pytest.mark.parametrize("suffix", ["csv", "dat"])
def test_text_in_an_isochrone_column(tmp_path, suffix):
    from apnet_tf.labels.toy_isochrones import toy_isochrones, write_parsec

    table = toy_isochrones(log_ages=[6.0, 7.0], masses=np.geomspace(0.08, 3.0, 5))
    table["logL"] = table["logL"].astype(object)
    table.loc[3, "logL"] = "bright"
    path = tmp_path / f"iso.{suffix}"
    if suffix == "csv":
        table.to_csv(path, index=False)
    else:
        write_parsec(table, str(path))
    res = cli("yso-train", "--isochrones", path, "--out", tmp_path / "net", "--n-train", 50,
              "--n-val", 20, "--epochs", 1)
    assert_one_line_error(res, path.name, "LOGL", "bright")


def test_detection_limits_without_a_band():
    from apnet_tf.errors import ApnetError
    from apnet_tf.labels.isochrones import DETECTION_LIMITS, IsochroneGrid, draw_stars
    from apnet_tf.labels.toy_isochrones import toy_isochrones

    table = toy_isochrones(log_ages=[6.0, 7.0, 8.0], masses=np.geomspace(0.08, 3.0, 20))
    grid = IsochroneGrid(table.rename(columns=str.upper).rename(columns={
        "GMAG": "G", "G_BPMAG": "BP", "G_RPMAG": "RP", "JMAG": "J", "HMAG": "H", "KSMAG": "K",
        "W1MAG": "W1", "W2MAG": "W2", "W3MAG": "W3"}))
    limits = {b: v for b, v in DETECTION_LIMITS.items() if b != "W3"}
    with pytest.raises(ApnetError, match="detection limits: no limit for band W3"):
        draw_stars(grid, 10, limits=limits)


def test_duplicate_table_rows_give_one_catalog_row_per_file(small_survey, untrained_run,
                                                            tmp_path):
    import shutil

    from astropy.table import Table

    files = sorted(small_survey.glob("*.fits"))[:3]
    rows = []
    for f in files:
        (tmp_path / "sas" / "apo25m" / "M67").mkdir(parents=True, exist_ok=True)
        shutil.copy(f, tmp_path / "sas" / "apo25m" / "M67" / f.name)
        rows.append((f"2M-{f.stem[-6:]}", "apo25m", "M67", f.name))
    # an allStar that lists the first file three times (rows 4 and 5 repeat row 1) and the
    # second twice (row 6 repeats row 2)
    rows += [rows[0], (rows[0][0] + "-again", *rows[0][1:]), rows[1]]
    cols = [fits.Column(name=n, format="64A", array=[r[k] for r in rows])
            for k, n in enumerate(("APOGEE_ID", "TELESCOPE", "FIELD", "FILE"))]
    fits.BinTableHDU.from_columns(cols).writeto(tmp_path / "allStar.fits")
    out = tmp_path / "cat.fits"
    res = cli("infer", "--model", untrained_run, "--table", tmp_path / "allStar.fits", "--root",
              tmp_path / "sas", "--out", out, "--mc", "0")
    assert res.exit_code == 0, res.output
    cat = Table.read(out)
    assert len(cat) == 3 and len(set(cat["FILE"])) == 3  # one row per file
    assert list(cat["APOGEE_ID"]) == [r[0] for r in rows[:3]]  # the first row of each file
    # the table's one note; the untrained run's other note says it has no novelty reference
    notes = [ln for ln in res.stderr.splitlines()
             if ln.startswith("note:") and "no novelty reference" not in ln]
    assert len(notes) == 1, res.stderr
    for word in ("allStar.fits", "3 rows", "row 4", "row 1", rows[0][0] + "-again", "first"):
        assert word in notes[0], notes[0]


def test_yso_json_with_broken_training_ranges_is_one_line(tmp_path):
    net = tmp_path / "yso_net"
    net.mkdir()
    (net / ".apnet-tf.json").write_text('{"kind": "yso_net"}')
    (net / "network.keras").write_text("x")
    (net / "yso.json").write_text('{"training_ranges": {"RSTAR": ["small", 3]}}')
    phot = tmp_path / "m.csv"
    phot.write_text("APOGEE_ID,G,PARALLAX\n2M1,15,2.5\n")
    res = cli("yso-labels", "--model", net, "--members", phot, "--out", tmp_path / "y.csv")
    assert_one_line_error(res, "yso.json", "training_ranges")
    assert not (tmp_path / "y.csv").exists()
