"""The label rules of paper section 2, checked against values worked out by hand."""

import numpy as np
import pandas as pd
import pytest
from conftest import ASPCAP_LABELS

from apnet_tf.errors import ApnetError
from apnet_tf.labels.photometric import (
    absolute_k,
    hejazi_feh,
    make_labels,
    mann_teff,
    mdwarf_labels,
    payne_labels,
    standard_photometry,
    veyette_logg,
)


def test_hejazi_by_hand():
    # g-K = 5.0, J-K = 0.85:
    #   -14.259 + 0.0519*5 + 29.5926*0.85 - 0.0529*25 - 17.6762*0.7225 + 0.7032*4.25
    # = -14.259 + 0.2595 + 25.15371 - 1.3225 - 12.7710545 + 2.9886 = 0.0492555
    assert hejazi_feh(5.0, 0.85) == pytest.approx(0.0492555, abs=1e-7)


def test_mann_by_hand_is_teff_over_3500():
    # r-J = 3.5, J-H = 0.6:
    #   2.151 - 1.092*3.5 + 0.3767*12.25 - 0.06292*42.875 + 0.00395*150.0625
    #   + 0.1697*0.6 - 0.03106*0.36
    # = 2.151 - 3.822 + 4.614575 - 2.697695 + 0.592746875 + 0.10182 - 0.0111816 = 0.929265275
    # times 3500 K = 3252.4284625 K
    assert mann_teff(3.5, 0.6) == pytest.approx(3252.4284625, abs=1e-6)
    # across the M-dwarf colour range the result lies in 2700-4100 K
    r_j = np.linspace(2.4, 5.5, 30)
    assert ((mann_teff(r_j, 0.6) > 2700) & (mann_teff(r_j, 0.6) < 4100)).all()


def test_veyette_by_hand():
    # 7.912 - 0.1880*0.0492555 - 1.334e-3*3252.4284625 + 1.313e-7*3252.4284625^2
    # = 7.912 - 0.009260034 - 4.338739569 + 1.388929596 = 4.952929993
    assert veyette_logg(0.0492555, 3252.4284625) == pytest.approx(4.952929993, abs=1e-8)


def test_absolute_k():
    # K = 8, parallax 50 mas (20 pc): M_K = 8 + 5 log10(50) - 10 = 6.494850022
    assert absolute_k(8.0, 50.0) == pytest.approx(6.494850022, abs=1e-8)
    assert np.isnan(absolute_k(8.0, 0.0)) and np.isnan(absolute_k(8.0, -1.0))


def _phot(**cols):
    base = {"APOGEE_ID": ["s"], "J": [10.0], "H": [9.4], "K": [9.15], "G_PS1": [14.15],
            "R_PS1": [13.5], "PARALLAX": [40.0], "PARALLAX_ERROR": [1.0], "FIELD": ["120-45"]}
    base.update({k: [v] if not isinstance(v, list) else v for k, v in cols.items()})
    return standard_photometry(pd.DataFrame(base), "phot.csv")


def test_a_typical_mdwarf_is_selected_with_all_three_labels():
    # J-K = 0.85, g-K = 5.0, r-J = 3.5, J-H = 0.6; M_K = 9.15 + 5 log10(40) - 10 = 7.1530
    row = mdwarf_labels(_phot()).iloc[0]
    assert row.SELECTED and not row.YSO_FIELD
    assert row.FE_H == pytest.approx(0.0492555, abs=1e-6)
    assert row.TEFF == pytest.approx(3252.43, abs=0.01)
    assert row.LOGG == pytest.approx(4.95293, abs=1e-5)
    assert not (row.FLAG_HEJAZI or row.FLAG_MANN or row.FLAG_VEYETTE)


@pytest.mark.parametrize("cols, selected, reason", [
    ({"K": 9.3}, False, "colours"),                      # J-K = 0.70 exactly: open interval
    ({"K": 8.95}, False, "colours"),                     # J-K = 1.05 exactly
    ({"G_PS1": 9.15 + 3.34}, False, "colours"),          # g-K = 3.37 - 0.03 exactly
    ({"G_PS1": 9.15 + 3.345}, True, ""),                 # inside the widened cut
    ({"G_PS1": 9.15 + 8.49}, False, "colours"),          # g-K = 8.46 + 0.03 exactly
    ({"PARALLAX_ERROR": 40.0 / 3}, False, "parallax/error"),  # plx/sigma = 3 exactly
    ({"PARALLAX": 0.0}, False, "no positive parallax"),
    ({"PARALLAX": -2.0}, False, "no positive parallax"),
    ({"PARALLAX": np.nan}, False, "no positive parallax"),
    ({"PARALLAX": 10 ** ((5 - 9.15 + 10) / 5)}, False, "M_K"),  # M_K = 5 exactly
    ({"J": -9999.0}, False, "missing photometry"),
    ({"R_PS1": np.nan}, False, "missing photometry"),
])
def test_cut_edges(cols, selected, reason):
    row = mdwarf_labels(_phot(**cols)).iloc[0]
    assert bool(row.SELECTED) is selected
    assert reason in row.REASON
    assert np.isnan(row.TEFF) != selected


def test_star_forming_fields_go_to_the_yso_route():
    row = mdwarf_labels(_phot(FIELD="IC348")).iloc[0]
    assert row.SELECTED and row.YSO_FIELD and np.isnan(row.TEFF)
    assert mdwarf_labels(_phot(FIELD="IC348"), yso_fields=("ORION*",)).iloc[0].TEFF > 0


def test_outside_validity_is_flagged_not_dropped():
    # J-K = 1.04 is inside the selection (< 1.05) but outside Hejazi's 0.71-1.01
    row = mdwarf_labels(_phot(K=8.96)).iloc[0]
    assert row.SELECTED and row.FLAG_HEJAZI and np.isfinite(row.FE_H)


def test_payne_rule_edges():
    payne = pd.DataFrame({"APOGEE_ID": list("abcdef"),
                          "TEFF": [4000.0, 4000.1, 3000.0, 3000.0, np.nan, 5000.0],
                          "LOGG": [3.5, 4.5, 3.49, 3.5, 2.0, np.nan], "FE_H": 0.0})
    assert list(payne_labels(payne).APOGEE_ID) == ["b", "c", "e", "f"]


def test_missing_column_is_named(tmp_path):
    with pytest.raises(ApnetError, match="PARALLAX_ERROR"):
        standard_photometry(pd.DataFrame({"APOGEE_ID": ["a"], "J": [1], "H": [1], "K": [1],
                                          "G_PS1": [1], "R_PS1": [1], "PARALLAX": [1]}), "p.csv")
    bad = tmp_path / "payne.csv"
    bad.write_text("APOGEE_ID,TEFF,FE_H\na,5000,0\n")
    with pytest.raises(ApnetError, match="LOGG"):
        make_labels(str(tmp_path / "out.csv"), payne=str(bad))


def test_end_to_end_with_real_aspcap_labels(tmp_path):
    if not ASPCAP_LABELS.exists():
        pytest.skip("real ASPCAP labels not found")
    aspcap = pd.read_csv(ASPCAP_LABELS)
    payne = aspcap.rename(columns={"PARAM_TEFF": "TEFF", "PARAM_LOGG": "LOGG",
                                   "PARAM_M_H": "FE_H"})[["APOGEE_ID", "TEFF", "LOGG", "FE_H"]]
    payne.to_csv(tmp_path / "payne.csv", index=False)
    # photometry: a field M dwarf (2M00452143), one in IC348 (YSO route), one with a bad parallax
    ids = ["2M00452143+1634446", "2M03434763+3209025", "2M06154934-0100415",
           "2M17334253-1654573"]
    phot = pd.DataFrame({"APOGEE_ID": ids, "J": 10.0, "H": 9.4, "K": 9.15, "G_PS1": 14.15,
                         "R_PS1": 13.5, "PARALLAX": [40.0, 40.0, -1.0, 40.0],
                         "PARALLAX_ERROR": 1.0, "FIELD": ["120-45", "IC348", "210-08", "009+09"]})
    phot.to_csv(tmp_path / "phot.csv", index=False)
    yso = pd.DataFrame({"APOGEE_ID": ["2M03434763+3209025", "2M13564148+4342587"],
                        "TEFF": [3100.0, 2900.0], "LOGG": [3.8, 3.9], "FE_H": [0.0, -9999.0]})
    yso.to_csv(tmp_path / "yso.csv", index=False)
    res = make_labels(str(tmp_path / "labels.csv"), payne=str(tmp_path / "payne.csv"),
                      label_photometry=str(tmp_path / "phot.csv"), yso=str(tmp_path / "yso.csv"))
    out = pd.read_csv(tmp_path / "labels.csv").set_index("APOGEE_ID")
    # Payne rule on the real values: only 2M05392474 (logg 3.45), 2M13564148 (logg 3.46) and
    # 2M17334253 (logg 1.08) pass; the other 22 have -9999 or Teff < 4000 with logg > 3.5
    assert res.counts["payne"] == 3 and res.counts["payne_rejected_by_rule"] == 22
    assert out.loc["2M05392474+4038437", "CATEGORY"] == "payne"
    # 2M17334253 is claimed by Payne and by photometry: mstar wins
    assert out.loc["2M17334253-1654573", "CATEGORY"] == "mstar"
    assert out.loc["2M17334253-1654573", "LABEL_SOURCE"] == "photometric"
    # 2M13564148 is in Payne and in the YSO table: yso wins, its missing FE_H stays -9999
    assert out.loc["2M13564148+4342587", "CATEGORY"] == "yso"
    assert out.loc["2M13564148+4342587", "FE_H"] == -9999.0
    assert out.loc["2M00452143+1634446", "CATEGORY"] == "mstar"
    assert "2M06154934-0100415" not in out.index  # non-positive parallax: not selected
    assert out.loc["2M03434763+3209025", "CATEGORY"] == "yso"
    assert res.counts["mstar_in_yso_fields"] == 1 and res.counts["overridden_by_precedence"] == 2
    assert res.counts["total"] == len(out) == 5
    # and make-records reads it
    from apnet_tf.data.labels import load_labels
    assert set(load_labels(tmp_path / "labels.csv").CATEGORY) == {"payne", "mstar", "yso"}
