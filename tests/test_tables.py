"""Tables 2 and 3 against numbers worked out by hand, and evaluate's normalisation."""

import shutil

import numpy as np
import pytest

from apnet_tf.errors import ApnetError
from apnet_tf.evaluation.tables import evaluate, evaluation_tables


def test_evaluate_uses_the_runs_normalisation_not_the_evaluated_sets(trained_run, records,
                                                                     tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    with_norm = evaluate(str(run), str(records), str(tmp_path / "a"), mc=2,
                         splits=("dev",))
    (run / "normalization.json").unlink()
    without = evaluate(str(run), str(records), str(tmp_path / "b"), mc=2,
                       splits=("dev",))
    # best.keras carries the run's std in its de-standardisation layer: same Table 2
    np.testing.assert_allclose(without["table2"]["dev"], with_norm["table2"]["dev"], rtol=1e-6)


def test_table_std_refuses_a_model_without_the_runs_normalisation():
    import keras

    from apnet_tf.evaluation.tables import table_std
    from apnet_tf.model.keras_runtime import KerasRuntime
    from apnet_tf.model.saved_model_runtime import SavedModelRuntime

    with pytest.raises(ApnetError, match="no normalization.json"):
        table_std(SavedModelRuntime(saved=object(), path="export/1"))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    assert table_std(KerasRuntime(model=model, path="run", normalization={"std": [1, 2, 3]})
                     ) == [1, 2, 3]


def test_tables_2_and_3_match_numbers_worked_by_hand():
    nan = np.nan
    std = [100.0, 0.1, 0.03]
    labels = np.array([[5000, 3.0, 0.0], [5000, 3.0, 0.0],      # payne, train
                       [3500, 5.0, nan], [3500, 5.0, 0.0],      # mstar, train; one [Fe/H] missing
                       [4000, 4.0, 0.0], [4000, 4.0, 0.0]])     # yso, dev
    resid = np.array([[100, 0.1, 0.03], [-100, -0.1, -0.03],
                      [200, 0.0, 0.5], [0, 0.0, 0.06],
                      [300, 0.2, 0.0], [100, 0.0, 0.0]])
    cats = ["payne", "payne", "mstar", "mstar", "yso", "yso"]
    splits = ["train"] * 4 + ["dev"] * 2
    t2, t3 = evaluation_tables(labels + resid, labels, cats, splits, std)
    # z^2 per present label: payne 1 x 6; mstar 4, 0, 0, 0, 4 (5 labels); yso 9, 1, 4, 0, 0, 0
    assert t2.loc["all", "train"] == pytest.approx(14 / 11)
    assert t2.loc["mstar", "train"] == pytest.approx(8 / 5)
    assert t2.loc["yso", "dev"] == pytest.approx(14 / 6)
    assert t2.loc["all", "dev"] == pytest.approx(14 / 6)
    assert np.isnan(t2.loc["mstar", "dev"]) and t2["test"].isna().all()
    # scatter = population std of the residuals of present labels
    assert t3.loc[("all", "teff (K)"), "train"] == pytest.approx(np.sqrt(12500))
    assert t3.loc[("all", "fe_h (dex)"), "train"] == pytest.approx(np.sqrt(42e-4 / 3))
    assert t3.loc[("mstar", "teff (K)"), "train"] == pytest.approx(100)
    assert t3.loc[("mstar", "logg (dex)"), "train"] == pytest.approx(0)
    assert np.isnan(t3.loc[("mstar", "fe_h (dex)"), "train"])  # one present label: no scatter
    assert t3.loc[("yso", "teff (K)"), "dev"] == pytest.approx(100)
    assert t3.loc[("yso", "logg (dex)"), "dev"] == pytest.approx(0.1)
    assert list(t3.index.get_level_values(0)) == ["all"] * 3 + ["mstar"] * 3 + ["yso"] * 3


def test_tables_name_groups_as_the_coverage_table_and_the_figures_do():
    """Table 2 and 3 said Full/MStar/YSO while the coverage table and the figures say the
    categories' names (payne, mstar, yso) and all."""
    from apnet_tf.constants import CATEGORIES
    from apnet_tf.evaluation.plots import CATEGORY_COLOURS
    from apnet_tf.evaluation.tables import GROUPS

    assert list(GROUPS) == ["all", "mstar", "yso"]
    assert set(GROUPS) <= {"all", *CATEGORIES}
    assert {name for name, _ in CATEGORY_COLOURS} == set(CATEGORIES)
