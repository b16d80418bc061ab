"""Folders: the package deletes only what it made, never mixes outputs, and a killed re-run leaves
a folder that readers refuse with a clear message."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import tensorflow as tf
from cli_helpers import assert_one_line_error, cli, snapshot


def test_make_records_keeps_tfrecords_it_did_not_make(small_survey, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "my-own-data.tfrecord").write_bytes(b"precious")
    res = cli("make-records", "--spectra", small_survey, "--labels",
              small_survey / "labels.csv", "--out", out)
    assert_one_line_error(res, str(out), "not empty", "my-own-data.tfrecord")
    assert (out / "my-own-data.tfrecord").read_bytes() == b"precious"
    assert sorted(p.name for p in out.iterdir()) == ["my-own-data.tfrecord"]


def test_make_records_refuses_a_run_folder(small_survey, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "normalization.json").write_text('{"mean": [1, 2, 3]}')
    before = snapshot(run)
    res = cli("make-records", "--spectra", small_survey, "--out", run)
    assert_one_line_error(res, str(run))
    assert snapshot(run) == before


class _FailingWriter:
    """A TFRecordWriter that fails on its ``fail_at``-th record, as a full disk does."""

    count = 0

    def __init__(self, path, options=None):
        self.path = path
        open(path, "wb").close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, data):
        type(self).count += 1
        if type(self).count >= 3:
            raise tf.errors.ResourceExhaustedError(None, None, f"{self.path}; No space left on "
                                                   "device")
        with open(self.path, "ab") as f:
            f.write(data)


def _changed_labels(survey, tmp_path):
    table = pd.read_csv(survey / "labels.csv", dtype={"APOGEE_ID": str})
    table["TEFF"] = table["TEFF"].where(table["TEFF"] < 0, table["TEFF"] + 10.0)
    path = tmp_path / "labels2.csv"
    table.to_csv(path, index=False)
    return path


def test_disk_full_is_one_line_and_leaves_no_tmp(small_survey, tmp_path, monkeypatch):
    monkeypatch.setattr(tf.io, "TFRecordWriter", _FailingWriter)
    _FailingWriter.count = 0
    out = tmp_path / "r"
    res = cli("make-records", "--spectra", small_survey, "--labels",
              small_survey / "labels.csv", "--out", out, "--shards", 1)
    assert_one_line_error(res, "No space left on device", str(out))
    assert not list(out.glob(".tmp-*")) and not list(out.glob("*.tfrecord"))


def test_killed_rerun_leaves_a_folder_readers_refuse(small_survey, small_records, tmp_path,
                                                     monkeypatch):
    records = tmp_path / "records"
    shutil.copytree(small_records, records)
    monkeypatch.setattr(tf.io, "TFRecordWriter", _FailingWriter)
    _FailingWriter.count = 0
    res = cli("make-records", "--spectra", small_survey, "--labels",
              _changed_labels(small_survey, tmp_path), "--out", records, "--shards", 1)
    assert res.exit_code != 0
    monkeypatch.undo()
    res = cli("fit", "--records", records, "--out", tmp_path / "run", "--epochs", 1,
              "--stage", "pretrain")
    assert_one_line_error(res, "manifest.json", "make-records did not finish")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_synth_into_another_survey_needs_overwrite_and_never_mixes(tmp_path):
    out = tmp_path / "survey"
    assert cli("synth", "--out", out, "--n", 5, "--seed", 1).exit_code == 0
    before = snapshot(out)
    res = cli("synth", "--out", out, "--n", 3, "--seed", 2)
    assert_one_line_error(res, str(out), "--overwrite")
    assert snapshot(out) == before
    res = cli("synth", "--out", out, "--n", 3, "--seed", 2, "--overwrite")
    assert res.exit_code == 0, res.output
    listed = set(pd.read_csv(out / "labels.csv")["FILE"])
    assert {p.name for p in out.glob("*.fits")} == listed and len(listed) == 3


def _old_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.keras").write_bytes(b"an earlier model")
    (run / "normalization.json").write_text(json.dumps({"mean": [5000, 3, 0], "std": [1, 1, 1]}))
    (run / "calibration.json").write_text(json.dumps({"scale": [2.0, 2.0, 2.0]}))
    return run


def test_fit_into_a_finished_run_needs_overwrite(small_records, tmp_path):
    run = _old_run(tmp_path)
    before = snapshot(run)
    res = cli("fit", "--records", small_records, "--out", run, "--epochs", 1,
              "--stage", "pretrain")
    assert_one_line_error(res, str(run), "--overwrite")
    assert snapshot(run) == before


def test_fit_overwrite_removes_the_old_run_and_calibration(small_records, tmp_path,
                                                           monkeypatch):
    from apnet_tf.errors import ApnetError
    from apnet_tf.training import fitting as training

    def stop(name):  # training itself is not under test: stop once the folder is prepared
        raise ApnetError("stopped before training")

    monkeypatch.setattr(training, "get_strategy", stop)
    run = _old_run(tmp_path)
    res = cli("fit", "--records", small_records, "--out", run, "--epochs", 1,
              "--stage", "pretrain", "--overwrite")
    assert_one_line_error(res, "stopped before training")
    assert not (run / "calibration.json").exists()  # never applied to the new model
    assert not (run / "best.keras").exists()


def test_evaluate_and_export_keep_out_of_a_users_folder(small_records, untrained_run, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "catalog.csv").write_text("my own catalog\n")
    before = snapshot(mine)
    res = cli("evaluate", "--model", untrained_run, "--records", small_records, "--out", mine,
              "--mc", 2)
    assert_one_line_error(res, str(mine), "not empty", "catalog.csv")
    res = cli("export", "--model", untrained_run, "--out", mine, "--tflite", "")
    assert_one_line_error(res, str(mine), "not empty")
    assert snapshot(mine) == before
