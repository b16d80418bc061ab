import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from apnet_tf.data.labels import assign_split, label_mask, load_labels, match_report, missing_counts
from apnet_tf.errors import ApnetError


def _csv(tmp_path, df, name="labels.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def test_missing_values_become_nan_and_masked(tmp_path):
    df = pd.DataFrame({"APOGEE_ID": ["a", "b", "c"], "TEFF": [5000, -9999, 4000],
                       "LOGG": [2.5, 3.0, np.nan], "FE_H": [0.0, -0.5, -9999.0]})
    labels = load_labels(_csv(tmp_path, df))
    assert len(labels) == 3  # a star with missing labels is kept
    np.testing.assert_array_equal(label_mask(labels),
                                  [[1, 1, 1], [0, 1, 1], [1, 0, 0]])
    assert missing_counts(labels) == {"TEFF": 1, "LOGG": 1, "FE_H": 1}
    assert list(labels["CATEGORY"]) == ["payne"] * 3


def test_missing_required_column_is_named(tmp_path):
    df = pd.DataFrame({"APOGEE_ID": ["a"], "TEFF": [5000], "FE_H": [0.0]})
    with pytest.raises(ApnetError, match="LOGG"):
        load_labels(_csv(tmp_path, df))


def test_unknown_category_is_an_error(tmp_path):
    df = pd.DataFrame({"APOGEE_ID": ["a"], "TEFF": [5000], "LOGG": [1], "FE_H": [0.0],
                       "CATEGORY": ["giant"]})
    with pytest.raises(ApnetError, match="giant"):
        load_labels(_csv(tmp_path, df))


def test_fits_table_reads_like_csv(tmp_path):
    t = Table({"APOGEE_ID": ["2M1", "2M2"], "TEFF": [4000.0, 5000.0], "LOGG": [4.8, 2.0],
               "FE_H": [-9999.0, 0.1], "CATEGORY": ["mstar", "payne"], "SNR": [50.0, 80.0]})
    t.write(tmp_path / "labels.fits")
    labels = load_labels(tmp_path / "labels.fits")
    assert list(labels["APOGEE_ID"]) == ["2M1", "2M2"]
    assert np.isnan(labels.loc[0, "FE_H"]) and labels.loc[1, "SNR"] == 80.0
    assert list(labels["CATEGORY"]) == ["mstar", "payne"]


def test_splits_are_stable_and_follow_the_paper_fractions(tmp_path):
    ids = [f"2M{i:08d}+0000000" for i in range(6000)]
    for cat, expected in (("payne", (0.8, 0.1, 0.1)), ("mstar", (0.6, 0.2, 0.2))):
        splits = pd.Series([assign_split(i, cat) for i in ids])
        frac = splits.value_counts(normalize=True)
        for name, f in zip(("train", "dev", "test"), expected):
            assert frac[name] == pytest.approx(f, abs=0.02)
    df = pd.DataFrame({"APOGEE_ID": ids[:200], "TEFF": 5000.0, "LOGG": 2.0, "FE_H": 0.0})
    a = load_labels(_csv(tmp_path, df, "a.csv")).set_index("APOGEE_ID")["SPLIT"]
    b = load_labels(_csv(tmp_path, df.iloc[::-1], "b.csv")).set_index("APOGEE_ID")["SPLIT"]
    assert (a == b.loc[a.index]).all()  # whatever the order of the table


def test_match_report_counts(tmp_path):
    df = pd.DataFrame({"APOGEE_ID": ["a", "b", "b", "c"], "TEFF": [4001, 4002, 4002, -9999],
                       "LOGG": 1.0, "FE_H": 0.0})
    rep = match_report(load_labels(_csv(tmp_path, df)), ["a", "d", "d"])
    assert rep.labels_without_spectrum == ["b", "c"]
    assert rep.spectra_without_label == ["d"]
    assert rep.duplicate_label_ids == ["b"] and rep.duplicate_spectrum_ids == ["d"]
    assert rep.missing_values["TEFF"] == 1
    text = "\n".join(rep.lines())
    assert "2 labels without a spectrum" in text and "1 spectra without a label" in text
