"""Issue 21, item 5: outputs that look complete are complete (export's version folder, the
format make-labels writes, a fit that ends in NaN), and disk-full is one line."""

from __future__ import annotations

import json
import os

import pytest
from cli_helpers import assert_one_line_error, cli


def test_an_export_killed_during_tflite_leaves_no_version(untrained_run, tmp_path, monkeypatch):
    from apnet_tf.export import model_export

    out = tmp_path / "net"

    def killed(model, variants):
        raise KeyboardInterrupt  # kill -9 during the TFLite step, as far as the folder goes

    monkeypatch.setattr(model_export, "tflite_variants", killed)
    with pytest.raises(KeyboardInterrupt):
        model_export.export_model(str(untrained_run), str(out), tflite=["float32"],
                                  mc=2)
    assert not (out / "1").exists()  # no version folder that looks complete
    monkeypatch.undo()
    meta = model_export.export_model(str(untrained_run), str(out), tflite=["float32"],
                                     mc=2)
    assert meta["version"] == 1
    assert (out / "1" / "assets.extra" / "export_metadata.json").exists()
    assert not [p for p in os.listdir(out) if p.startswith(".tmp")]


def test_export_of_a_tflite_model_is_one_line(untrained_run, tmp_path):
    from apnet_tf.export.model_export import export_model

    out = tmp_path / "net"
    export_model(str(untrained_run), str(out), tflite=["float32"], mc=2)
    tfl = out / "net_float32.tflite"
    res = cli("export", "--model", tfl, "--out", tmp_path / "again", "--mc", "2")
    assert_one_line_error(res, "--model", "tflite")


def test_export_disk_full_is_one_line(untrained_run, tmp_path, monkeypatch):
    import tensorflow as tf

    from apnet_tf.export import model_export

    def full(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    monkeypatch.setattr(model_export, "tflite_variants", full)
    res = cli("export", "--model", untrained_run, "--out", tmp_path / "net", "--mc", "2",
              "--tflite", "float32")
    assert_one_line_error(res, "No space left on device", "net")
    assert not (tmp_path / "net" / "1").exists()


def _payne(tmp_path):
    path = tmp_path / "payne.csv"
    path.write_text("APOGEE_ID,TEFF,LOGG,FE_H\n2M00000001+0000001,4800,2.4,-0.1\n"
                    "2M00000002+0000002,5200,3.1,0.05\n")
    return path


def test_make_labels_writes_the_format_its_out_names(tmp_path):
    from astropy.table import Table

    out = tmp_path / "labels.fits"
    res = cli("make-labels", "--payne", _payne(tmp_path), "--out", out)
    assert res.exit_code == 0, res.output
    table = Table.read(out)  # FITS, not CSV text under a .fits name
    assert len(table) == 2 and "TEFF" in table.colnames
    from apnet_tf.data.labels import load_labels

    assert len(load_labels(str(out))) == 2


@pytest.mark.parametrize("name", ["labels.txt", "folder"])
def test_make_labels_refuses_an_out_it_cannot_write(tmp_path, name):
    out = tmp_path / name
    if name == "folder":
        out = tmp_path / "folder.csv"
        out.mkdir()
    res = cli("make-labels", "--payne", _payne(tmp_path), "--out", out)
    assert_one_line_error(res, "--out")
    assert not out.exists() or out.is_dir()


def test_a_fit_that_diverges_fails_and_keeps_no_best_model(small_records, tmp_path):
    run = tmp_path / "run"
    res = cli("fit", "--records", small_records, "--out", run, "--epochs", "2",
              "--learning-rate", "1e9", "--stage", "pretrain")
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    last = res.stderr.strip().splitlines()[-1]  # after the epoch lines
    assert last.startswith("error:") and "--learning-rate" in last and "not finite" in last
    assert "best model:" not in res.output
    assert not (run / "best.keras").exists() and not (run / "pretrained.keras").exists()


def test_fit_disk_full_is_one_line_and_resume_after_it_works(small_records, tmp_path,
                                                              monkeypatch):
    import errno

    import keras

    run = tmp_path / "run"
    real_save_weights = keras.Model.save_weights

    def full(self, filepath, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save_weights", full)
    res = cli("fit", "--records", small_records, "--out", run, "--stage", "pretrain",
              "--epochs", 2)
    assert_one_line_error(res, "No space left on device",
                          str(run / "backup" / "pretrain" / "latest.weights.h5"))
    monkeypatch.setattr(keras.Model, "save_weights", real_save_weights)
    # what a full disk leaves behind (h5py's write cut short): a truncated backup
    backup = run / "backup" / "pretrain"
    backup.mkdir(parents=True, exist_ok=True)
    keras.models.load_model(_any_model(tmp_path)).save_weights(str(backup / "latest.weights.h5"))
    data = (backup / "latest.weights.h5").read_bytes()
    (backup / "latest.weights.h5").write_bytes(data[: len(data) // 3])
    (backup / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    # the killed run's early stopping state: a restarted stage must not inherit it (with it,
    # the fresh weights would never beat the old best and the old best would be kept)
    (run / "early_stopping_pretrain.json").write_text(
        '{"best": 1e-09, "wait": 0, "best_epoch": 7}')
    res = cli("fit", "--records", small_records, "--out", run, "--stage", "pretrain",
              "--epochs", 1, "--resume")
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    notes = [line for line in res.stderr.splitlines() if "latest.weights.h5" in line]
    assert len(notes) == 1 and notes[0].startswith("note:"), res.stderr
    assert (run / "best.keras").exists()
    state = json.loads((run / "early_stopping_pretrain.json").read_text())
    assert state["best"] > 1e-9 and state["best_epoch"] != 7


def _any_model(tmp_path):
    from apnet_tf.model.network import build_model, save_model_atomic

    path = tmp_path / "any.keras"
    save_model_atomic(build_model([4700.0, 2.9, -0.2], [730.0, 1.2, 0.3]), str(path))
    return path
