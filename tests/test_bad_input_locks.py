"""Issue 21, item 2: one lock per output folder (``OUT.lock`` beside it, the mechanism infer
uses) for every command that writes one. A second run on the same --out, while the first holds
the lock, is a one-line error naming the folder, and changes nothing in it."""

from __future__ import annotations

import contextlib
import fcntl
import shutil

import pytest
from cli_helpers import assert_one_line_error, cli, snapshot


@contextlib.contextmanager
def held(out):
    """Hold OUT.lock as a running command does."""
    with open(str(out) + ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


def _commands(small_survey, small_records, untrained_run, tmp_path):
    from apnet_tf.labels.toy_isochrones import toy_isochrones, write_parsec

    iso = tmp_path / "toy.dat"
    write_parsec(toy_isochrones(), str(iso))
    return {
        "synth": ["synth", "--n", "3"],
        "make-records": ["make-records", "--spectra", small_survey],
        "fit": ["fit", "--records", small_records, "--epochs", "1", "--overwrite"],
        "export": ["export", "--model", untrained_run, "--tflite", "float32", "--mc", "2"],
        "yso-train": ["yso-train", "--isochrones", iso, "--n-train", "20", "--n-val", "20",
                      "--epochs", "1", "--overwrite"],
        "evaluate": ["evaluate", "--model", untrained_run, "--records", small_records,
                     "--mc", "2"],
    }


@pytest.mark.parametrize("command", ["synth", "make-records", "fit", "export", "yso-train",
                                     "evaluate"])
def test_a_second_run_on_the_same_out_is_refused(small_survey, small_records, untrained_run,
                                                 tmp_path, command):
    args = _commands(small_survey, small_records, untrained_run, tmp_path)[command]
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("the first run's work")
    before = snapshot(out)
    with held(out):
        res = cli(*args, "--out", out)
    assert_one_line_error(res, str(out), "another process")
    assert snapshot(out) == before


def test_calibrate_refuses_a_run_being_written(small_records,
                                                                    untrained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(untrained_run, run)
    before = snapshot(run)
    with held(run):
        res = cli("calibrate", "--model", run, "--records", small_records, "--mc", "2")
    assert_one_line_error(res, str(run), "another process")
    assert snapshot(run) == before


def test_the_lock_is_reentrant_and_removed(tmp_path):
    from apnet_tf.io.files import output_lock

    out = tmp_path / "x"
    with output_lock(str(out)):
        with output_lock(str(out) + "/"):  # the same output, taken again by the same process
            assert (tmp_path / "x.lock").exists()
    assert not (tmp_path / "x.lock").exists()


@pytest.mark.parametrize("code", ["ENOSYS", "ENOLCK", "EOPNOTSUPP"])
def test_a_file_system_without_locks_runs_unlocked_with_a_warning(tmp_path, monkeypatch,
                                                                  capsys, code):
    """Some Lustre and NFS mounts have no flock: a command warns and runs instead of failing
    with "[Errno 38] Function not implemented" naming no file."""
    import errno

    from apnet_tf.io.files import exclusive_lock

    def no_flock(fd, op):
        raise OSError(getattr(errno, code), "not supported")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    ran = []
    with exclusive_lock(str(tmp_path / "out.lock"), "out"):
        ran.append(True)
    assert ran and not (tmp_path / "out.lock").exists()
    assert "cannot lock" in capsys.readouterr().err
