"""Every option is checked before any work or deletion: one line naming the flag, exit 1."""

from __future__ import annotations

import shutil

import pytest
from cli_helpers import assert_one_line_error, cli, snapshot

FIT_OPTIONS = [("--batch-size", "0"), ("--dropout", "1.5"), ("--learning-rate", "-1"),
               ("--input-scaling", "foo"), ("--initializer", "foo"), ("--epochs", "0"),
               ("--optimizer", "foo"), ("--momentum", "2"), ("--finetune-fraction", "0"),
               ("--precision", "foo"), ("--strategy", "foo"), ("--patience", "0")]


@pytest.mark.parametrize("flag,value", FIT_OPTIONS)
def test_fit_options(small_records, tmp_path, flag, value):
    run = tmp_path / "run"
    epochs = [] if flag == "--epochs" else ["--epochs", "1"]
    res = cli("fit", "--records", small_records, "--out", run, *epochs, flag, value)
    assert_one_line_error(res, flag)
    assert not run.exists()  # nothing was made


def test_a_bad_option_deletes_nothing_even_with_overwrite(small_records, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name, text in (("normalization.json", "{}"), ("history.csv", "stage,epoch\n"),
                       ("calibration.json", "{}"), ("best.keras", "model")):
        (run / name).write_text(text)
    before = snapshot(run)
    res = cli("fit", "--records", small_records, "--out", run, "--overwrite", "--dropout", "1.5")
    assert_one_line_error(res, "--dropout")
    assert snapshot(run) == before


@pytest.mark.parametrize("args,flag", [
    (["--mask-bits", "99"], "--mask-bits"), (["--mask-bits", "-1"], "--mask-bits"),
    (["--mask-bits", "x"], "--mask-bits"), (["--shards", "0"], "--shards")])
def test_make_records_options(small_survey, tmp_path, args, flag):
    out = tmp_path / "r"
    res = cli("make-records", "--spectra", small_survey, "--labels", small_survey / "labels.csv",
              "--out", out, *args)
    assert_one_line_error(res, flag)
    assert not out.exists()


@pytest.mark.parametrize("args,flag", [(["--mc", "-5"], "--mc"),
                                       (["--batch-size", "0"], "--batch-size")])
def test_infer_options(small_survey, untrained_run, tmp_path, args, flag):
    out = tmp_path / "cat.csv"
    res = cli("infer", "--model", untrained_run, "--spectra", small_survey, "--out", out, *args)
    assert_one_line_error(res, flag)
    assert not out.exists()


@pytest.mark.parametrize("command,args", [
    ("calibrate", ["--mc", "-5"]), ("evaluate", ["--mc", "0", "--out", "EVAL"])])
def test_mc_of_calibrate_and_evaluate(small_records, untrained_run, tmp_path, command, args):
    run = tmp_path / "run"
    shutil.copytree(untrained_run, run)
    before = snapshot(run)
    args = [str(tmp_path / "eval") if a == "EVAL" else a for a in args]
    res = cli(command, "--model", run, "--records", small_records, *args)
    assert_one_line_error(res, "--mc")
    assert snapshot(run) == before and not (tmp_path / "eval").exists()


@pytest.mark.parametrize("args,flag", [(["--mc", "0"], "--mc"), (["--tflite", "foo"], "--tflite"),
                                       (["--version", "0"], "--version")])
def test_export_options(untrained_run, tmp_path, args, flag):
    out = tmp_path / "saved"
    res = cli("export", "--model", untrained_run, "--out", out, *args)
    assert_one_line_error(res, flag)
    assert not out.exists()


def test_synth_needs_a_star(tmp_path):
    assert_one_line_error(cli("synth", "--out", tmp_path / "s", "--n", "0"), "--n")
    assert not (tmp_path / "s").exists()


def test_demo_checks_before_it_starts(tmp_path):
    res = cli("demo", "--out", tmp_path / "demo", "--n", "5", "--epochs", "0")
    assert_one_line_error(res, "--epochs")
    assert not (tmp_path / "demo").exists()


def test_make_labels_gk_margin(tmp_path):
    phot = tmp_path / "phot.csv"
    phot.write_text("APOGEE_ID,J,H,K,G_PS1,R_PS1,PARALLAX,PARALLAX_ERROR\n"
                    "2M1,10,9.4,9.15,14.15,13.5,40,1\n")
    res = cli("make-labels", "--label-photometry", phot, "--out", tmp_path / "l.csv",
              "--gk-margin", "nan")
    assert_one_line_error(res, "--gk-margin")
    assert not (tmp_path / "l.csv").exists()
