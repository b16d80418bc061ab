"""Issue 21, item 5: outputs that look complete are complete (export's version folder, the
format make-labels writes, a fit that ends in NaN), and disk-full is one line."""

from __future__ import annotations

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
                                  mc_realizations=2)
    assert not (out / "1").exists()  # no version folder that looks complete
    monkeypatch.undo()
    meta = model_export.export_model(str(untrained_run), str(out), tflite=["float32"],
                                     mc_realizations=2)
    assert meta["version"] == 1
    assert (out / "1" / "assets.extra" / "export_metadata.json").exists()
    assert not [p for p in os.listdir(out) if p.startswith(".tmp")]


def test_export_of_a_tflite_model_is_one_line(untrained_run, tmp_path):
    from apnet_tf.export.model_export import export_model

    out = tmp_path / "net"
    export_model(str(untrained_run), str(out), tflite=["float32"], mc_realizations=2)
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
