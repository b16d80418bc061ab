"""Issue 21, item 1: every seed is range-checked (0 to 2**32 - 1, ``errors.check_seed``) before
any deletion or work, so a bad --seed leaves an existing output untouched."""

from __future__ import annotations

import shutil

import pytest
from cli_helpers import assert_one_line_error, cli, snapshot

BAD_SEEDS = ["4294967296", "-1"]


@pytest.mark.parametrize("seed", BAD_SEEDS)
def test_fit_overwrite_with_a_bad_seed_keeps_the_run(small_records, tmp_path, seed):
    run = tmp_path / "run"
    run.mkdir()
    for name, text in (("normalization.json", "{}"), ("history.csv", "stage,epoch\n"),
                       ("calibration.json", "{}"), ("best.keras", "model")):
        (run / name).write_text(text)
    before = snapshot(run)
    res = cli("fit", "--records", small_records, "--out", run, "--overwrite", "--epochs", "1",
              f"--seed={seed}")
    assert_one_line_error(res, "--seed", "4294967295")
    assert snapshot(run) == before


@pytest.mark.parametrize("seed", BAD_SEEDS)
def test_synth_overwrite_with_a_bad_seed_keeps_the_survey(tmp_path, seed):
    out = tmp_path / "s"
    assert cli("synth", "--out", out, "--n", "3", "--seed", "1").exit_code == 0
    before = snapshot(out)
    res = cli("synth", "--out", out, "--n", "5", f"--seed={seed}", "--overwrite")
    assert_one_line_error(res, "--seed")
    assert snapshot(out) == before


@pytest.mark.parametrize("extra", [[], ["--mc-dropout"]])
@pytest.mark.parametrize("seed", BAD_SEEDS)
def test_infer_bad_seed_keeps_the_catalog(small_survey, untrained_run, tmp_path, seed, extra):
    out = tmp_path / "cat.csv"
    out.write_text("old catalog\n")
    res = cli("infer", "--model", untrained_run, "--spectra", small_survey, "--out", out,
              "--mc", "2", f"--seed={seed}", *extra)
    assert_one_line_error(res, "--seed")
    assert out.read_text() == "old catalog\n"
    assert not (tmp_path / "cat.csv.parts").exists()


@pytest.mark.parametrize("command", ["calibrate", "evaluate"])
def test_calibrate_and_evaluate_bad_seed(small_records, untrained_run, tmp_path, command):
    run = tmp_path / "run"
    shutil.copytree(untrained_run, run)
    before = snapshot(run)
    extra = ["--out", tmp_path / "eval"] if command == "evaluate" else []
    res = cli(command, "--model", run, "--records", small_records, "--mc", "2",
              "--seed=-1", *extra)
    assert_one_line_error(res, "--seed")
    assert snapshot(run) == before and not (tmp_path / "eval").exists()


def test_demo_bad_seed_starts_nothing(tmp_path):
    res = cli("demo", "--out", tmp_path / "d", "--seed", "4294967296")
    assert_one_line_error(res, "--seed")
    assert not (tmp_path / "d").exists()


def test_yso_train_bad_seed_before_training(tmp_path):
    from apnet_tf.labels.toy_isochrones import toy_isochrones, write_parsec

    iso = tmp_path / "toy.dat"
    write_parsec(toy_isochrones(), str(iso))
    out = tmp_path / "net"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    res = cli("yso-train", "--isochrones", iso, "--out", out, "--n-train", "20", "--n-val",
              "20", "--epochs", "1", "--seed", "4294967296")
    assert_one_line_error(res, "--seed")
    assert (out / "keep.txt").read_text() == "x"


def test_check_seed_range():
    from apnet_tf.errors import ApnetError, check_seed

    assert check_seed(0) == 0 and check_seed(2**32 - 1) == 2**32 - 1
    for bad in (-1, 2**32, 1.5, float("nan")):
        with pytest.raises(ApnetError, match="--seed"):
            check_seed(bad)


@pytest.mark.parametrize("bits", ["99", "-1"])
def test_infer_mask_bits_are_checked(small_survey, untrained_run, tmp_path, bits):
    out = tmp_path / "cat.csv"
    res = cli("infer", "--model", untrained_run, "--spectra", small_survey, "--out", out,
              "--mc", "0", f"--mask-bits={bits}")
    assert_one_line_error(res, "--mask-bits")
    assert not out.exists()
