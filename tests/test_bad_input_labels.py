"""Bad numbers in label and photometry tables: refused or read as missing, never trained on."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from cli_helpers import assert_one_line_error, cli

#: The documented physical ranges (constants.LABEL_RANGES), written out so the test states them.
LABEL_RANGES = {"TEFF": (2000.0, 50000.0), "LOGG": (-1.0, 6.0), "FE_H": (-5.0, 1.5)}


def _labels(survey, tmp_path, edit) -> str:
    table = pd.read_csv(survey / "labels.csv", dtype={"APOGEE_ID": str}).astype({"TEFF": object})
    edit(table)
    path = tmp_path / "labels.csv"
    table.to_csv(path, index=False)
    return str(path)


def test_text_in_a_number_column_names_column_and_row(small_survey, tmp_path):
    def edit(t):
        t.loc[2, "TEFF"] = "hot"
    res = cli("make-records", "--spectra", small_survey, "--labels",
              _labels(small_survey, tmp_path, edit), "--out", tmp_path / "r")
    assert_one_line_error(res, "labels.csv", "TEFF", "'hot'", "data row 3")
    assert not (tmp_path / "r").exists()


def test_decimal_comma_is_an_error_not_a_missing_value(small_survey, tmp_path):
    def edit(t):
        t["LOGG"] = t["LOGG"].astype(object)
        t.loc[0, "LOGG"] = "4,5"
    res = cli("make-records", "--spectra", small_survey, "--labels",
              _labels(small_survey, tmp_path, edit), "--out", tmp_path / "r")
    assert_one_line_error(res, "LOGG", "'4,5'", "data row 1")


def test_placeholders_and_unphysical_labels_are_never_trained_on(small_survey, tmp_path):
    def edit(t):
        t.loc[0:5, "FE_H"] = -9999.99
        t.loc[6:9, "TEFF"] = 1e6
        t.loc[10:12, "LOGG"] = -50.0
    res = cli("make-records", "--spectra", small_survey, "--labels",
              _labels(small_survey, tmp_path, edit), "--out", tmp_path / "r", "--shards", 1)
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    stats = manifest["target_stats"]
    for k, col in enumerate(("TEFF", "LOGG", "FE_H")):
        lo, hi = LABEL_RANGES[col]
        assert stats["min"][k] >= lo and stats["max"][k] <= hi, (col, stats)
    report = " ".join(manifest["report"])
    assert "FE_H 6" in report and "TEFF 4" in report and "LOGG 3" in report, report
    assert "FE_H 6" in res.stderr  # the user sees the counts too


def _photometry(tmp_path, **cols) -> str:
    base = {"APOGEE_ID": ["2M00000001+0000001", "2M00000002+0000002"], "J": 10.0, "H": 9.4,
            "K": 9.15, "G_PS1": 14.15, "R_PS1": 13.5, "PARALLAX": 40.0, "PARALLAX_ERROR": 1.0}
    base.update(cols)
    path = tmp_path / "phot.csv"
    pd.DataFrame(base).to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("cols", [{"R_PS1": [99.999, 13.5]}, {"H": [99.999, 9.4]},
                                  {"R_PS1": [-999.0, 13.5]}, {"J": [-9999.99, 10.0]}])
def test_magnitude_placeholders_never_become_labels(tmp_path, cols):
    out = tmp_path / "labels.csv"
    res = cli("make-labels", "--label-photometry", _photometry(tmp_path, **cols), "--out", out)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out).replace(-9999.0, np.nan)
    for col, (lo, hi) in LABEL_RANGES.items():
        values = table[col].dropna()
        assert ((values >= lo) & (values <= hi)).all(), (col, values.tolist())
    assert table["APOGEE_ID"].tolist() == ["2M00000002+0000002"]  # only the good star
    name = next(iter(cols))
    assert f"photometry_rejected_{name}" in res.stdout


def test_columns_differing_only_in_case_are_one_line(tmp_path):
    path = _photometry(tmp_path)
    table = pd.read_csv(path)
    table["parallax"] = 12.0
    table.to_csv(path, index=False)
    res = cli("make-labels", "--label-photometry", path, "--out", tmp_path / "labels.csv")
    assert_one_line_error(res, "phot.csv", "PARALLAX", "case")
    assert not (tmp_path / "labels.csv").exists()


def test_text_in_photometry_is_named(tmp_path):
    path = _photometry(tmp_path, K=["9.15", "n/a mag"])
    res = cli("make-labels", "--label-photometry", path, "--out", tmp_path / "labels.csv")
    assert_one_line_error(res, "phot.csv", "column K", "data row 2")


def _payne(tmp_path, rows) -> str:
    path = tmp_path / "payne.csv"
    pd.DataFrame(rows, columns=["APOGEE_ID", "TEFF", "LOGG", "FE_H"]).to_csv(path, index=False)
    return str(path)


def test_conflicting_payne_duplicates_are_duplicates_not_precedence(tmp_path):
    # 2M1 twice with different labels, 2M2 twice with the same: two duplicated IDs; the first
    # row of each is kept. Nothing here is overridden by a higher-precedence source.
    payne = _payne(tmp_path, [("2M1", 5000.0, 2.5, 0.0), ("2M2", 4800.0, 2.0, -0.1),
                              ("2M1", 6000.0, 4.0, -1.0), ("2M3", 4500.0, 2.2, 0.1),
                              ("2M2", 4800.0, 2.0, -0.1)])
    out = tmp_path / "labels.csv"
    res = cli("make-labels", "--payne", payne, "--out", out)
    assert res.exit_code == 0, res.output
    counts = dict(line.split() for line in res.stdout.splitlines()[1:])
    assert counts["overridden_by_precedence"] == "0", res.stdout
    assert counts["payne_duplicates"] == "2", res.stdout
    notes = [ln for ln in res.stderr.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1, res.stderr
    assert "payne.csv" in notes[0] and "2 APOGEE_ID" in notes[0] and "first" in notes[0]
    assert "2M1" in notes[0]
    table = pd.read_csv(out).set_index("APOGEE_ID")
    assert sorted(table.index) == ["2M1", "2M2", "2M3"]
    assert table.loc["2M1", "TEFF"] == 5000.0 and table.loc["2M1", "LOGG"] == 2.5


def test_precedence_still_counts_what_its_name_says(tmp_path):
    payne = _payne(tmp_path, [("2M1", 5000.0, 2.5, 0.0), ("2M1", 5100.0, 2.6, 0.0)])
    yso = tmp_path / "yso.csv"
    pd.DataFrame({"APOGEE_ID": ["2M1"], "TEFF": [3500.0], "LOGG": [3.9], "FE_H": [0.0]}).to_csv(
        yso, index=False)
    res = cli("make-labels", "--payne", payne, "--yso", yso, "--out", tmp_path / "labels.csv")
    assert res.exit_code == 0, res.output
    counts = dict(line.split() for line in res.stdout.splitlines()[1:])
    assert counts["overridden_by_precedence"] == "1" and counts["payne_duplicates"] == "1"
    assert pd.read_csv(tmp_path / "labels.csv").CATEGORY.tolist() == ["yso"]
