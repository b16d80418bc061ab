"""run_demo (``apnet-tf demo``): a re-run reuses the survey and a finished run, makes the rest."""

from __future__ import annotations

import os
import shutil

from cli_helpers import snapshot


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
