"""run_demo (``apnet-tf demo``): a re-run reuses the survey and a finished run, makes the rest."""

from __future__ import annotations

import os
import shutil

from cli_helpers import cli, snapshot


def test_demo_rerun_reuses_the_survey_and_a_finished_run(survey, trained_run, tmp_path):
    from apnet_tf.workflows import run_demo

    out = tmp_path / "demo"
    out.mkdir()
    os.symlink(survey, out / "spectra")  # a survey with its labels.csv: not made again
    shutil.copytree(trained_run, out / "run")  # a finished, calibrated run: not trained again
    before = snapshot(out / "run")
    steps, epochs = set(), []
    res = run_demo(str(out), n=150, epochs=1, mc=2, seed=0,
                   on_progress=lambda step, done, total: steps.add(step),
                   on_epoch=lambda *args: epochs.append(args))
    assert steps == {"make-records", "infer", "evaluate"}  # no "synth"
    assert epochs == []
    assert snapshot(out / "run") == before  # neither retrained nor recalibrated
    assert res.catalog_path == str(out / "catalog.fits") and os.path.exists(res.catalog_path)
    assert len(res.catalog) == 150 and res.catalog.meta["SIGMA"] == "calibrated"
    assert (out / "evaluation" / "table3.csv").exists()
    assert set(res.evaluation["table3"].columns) >= {"train", "dev", "test"}


def test_demo_recalibrates_a_calibration_of_an_older_version(survey, trained_run, tmp_path):
    from apnet_tf.model.calibration import FORMAT, Calibration
    from apnet_tf.workflows import run_demo

    out = tmp_path / "demo"
    out.mkdir()
    os.symlink(survey, out / "spectra")
    shutil.copytree(trained_run, out / "run")
    (out / "run" / "calibration.json").write_text('{"format": "apnet-tf calibration 2"}')
    epochs, steps = [], set()
    res = run_demo(str(out), n=150, epochs=1, mc=2, seed=0,
                   on_progress=lambda step, done, total: steps.add(step),
                   on_epoch=lambda *args: epochs.append(args))
    assert epochs == [] and "calibrate" in steps  # calibrated again, not trained again
    assert Calibration.load(str(out / "run" / "calibration.json")).format == FORMAT
    assert res.catalog.meta["SIGMA"] == "calibrated"


def test_demo_rerun_reuses_an_unchanged_catalog_and_evaluation(survey, trained_run, tmp_path):
    import json

    import pandas as pd

    from apnet_tf.data.demo_cache import DEMO_STATE
    from apnet_tf.workflows import run_demo

    out = tmp_path / "demo"
    out.mkdir()
    os.symlink(survey, out / "spectra")
    shutil.copytree(trained_run, out / "run")
    first = run_demo(str(out), n=150, epochs=1, mc=2, seed=0)
    assert first.reused == ["spectra", "run"]  # the records were made, as were the products
    assert set(json.loads((out / DEMO_STATE).read_text())) == {"catalog", "evaluation"}
    made = snapshot(out / "evaluation")
    made["catalog.fits"] = snapshot(out)["catalog.fits"]

    steps = set()
    again = run_demo(str(out), n=150, epochs=1, mc=2, seed=0,
                     on_progress=lambda step, done, total: steps.add(step))
    assert again.reused == ["spectra", "records", "run", "catalog", "evaluation"]
    # no step reports work: the records are all kept, infer and evaluate do not run again
    assert steps == set()
    assert snapshot(out / "evaluation") == {k: v for k, v in made.items() if k != "catalog.fits"}
    assert snapshot(out)["catalog.fits"] == made["catalog.fits"]
    assert len(again.catalog) == 150 and again.catalog.meta["SIGMA"] == "calibrated"
    for name in ("table2", "table3", "coverage"):
        pd.testing.assert_frame_equal(again.evaluation[name], first.evaluation[name])
    assert again.evaluation["coverage"].xs("test", level="split").shape[0] > 0
    res = cli("demo", "--out", out, "--n", 150, "--epochs", 1, "--mc", 2, "--seed", 0)
    assert res.exit_code == 0, res.output
    # what it reused comes first (it used to follow a make-records progress line)
    assert res.output.splitlines()[0] == (
        "reused: spectra, records, run, catalog, evaluation (inputs unchanged)")
    assert "Table 3" in res.stdout and "1-sigma coverage on the test split" in res.stdout

    # another seed (or mc) makes both again
    steps.clear()
    other = run_demo(str(out), n=150, epochs=1, mc=3, seed=0,
                     on_progress=lambda step, done, total: steps.add(step))
    assert other.reused == ["spectra", "records", "run"]
    assert {"infer", "evaluate"} <= steps
    steps.clear()
    assert run_demo(str(out), n=150, epochs=1, mc=3, seed=1,
                    on_progress=lambda step, done, total: steps.add(step)).reused[-1] == "run"
    assert {"infer", "evaluate"} <= steps


def test_demo_never_reuses_a_product_whose_remaking_was_cut_short(survey, trained_run,
                                                                  tmp_path, monkeypatch):
    import json

    import pytest

    from apnet_tf import workflows
    from apnet_tf.data.demo_cache import DEMO_STATE

    out = tmp_path / "demo"
    out.mkdir()
    os.symlink(survey, out / "spectra")
    shutil.copytree(trained_run, out / "run")
    workflows.run_demo(str(out), n=150, epochs=1, mc=2, seed=0)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(workflows, "evaluate", killed)  # killed while remaking the evaluation
    with pytest.raises(KeyboardInterrupt):
        workflows.run_demo(str(out), n=150, epochs=1, mc=2, seed=5)
    state = json.loads((out / DEMO_STATE).read_text())
    assert set(state) == {"catalog"}  # the seed-5 catalog; no evaluation to reuse
    monkeypatch.undo()
    res = workflows.run_demo(str(out), n=150, epochs=1, mc=2, seed=0)
    assert "evaluation" not in res.reused and "catalog" not in res.reused
