"""Readers and writers of a run: jobs that read a folder hold ``OUT.lock`` shared, writers
(fit, import-torch, calibrate, export) exclusively; input files reached through two paths are
read once (BAD_INPUT.md, "Readers and writers of a run")."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil

import pytest
from cli_helpers import assert_one_line_error, cli, snapshot


@contextlib.contextmanager
def reading(folder):
    """Hold FOLDER.lock shared, as a job reading it does (another open file: another holder)."""
    with open(str(folder) + ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        yield


@pytest.fixture
def run(untrained_run, tmp_path):
    shutil.copytree(untrained_run, tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.parametrize("command", ["fit", "import-torch", "calibrate"])
def test_a_writer_refuses_a_run_that_a_job_reads(run, small_records, tmp_path, command):
    """Fails on the old code for the message: it said 'writing' of a reader's lock (and no
    reader took one: fit --overwrite rewrote the run under a running infer)."""
    args = {"fit": ["fit", "--records", small_records, "--out", run, "--epochs", "1",
                    "--overwrite"],
            "import-torch": ["import-torch", tmp_path / "net.pt", "--out", run, "--overwrite"],
            "calibrate": ["calibrate", "--model", run, "--records", small_records, "--mc", "2"],
            }[command]
    before = snapshot(run)
    with reading(run):
        res = cli(*args)
    assert_one_line_error(res, str(run), "another process is reading it")
    assert snapshot(run) == before


def test_readers_share_and_the_last_removes_the_lock(tmp_path):
    from apnet_tf.errors import ApnetError
    from apnet_tf.io.files import exclusive_lock, shared_lock

    lock = str(tmp_path / "run.lock")
    with shared_lock(lock, "run"):
        with reading(tmp_path / "run"):  # a second reader meanwhile
            with pytest.raises(ApnetError, match="another process is reading it"):
                with exclusive_lock(lock, "run"):
                    pass
        assert os.path.exists(lock)
    assert not os.path.exists(lock)
    with exclusive_lock(lock, "run"):
        with open(lock) as f:  # a writer holds it: a reader is refused
            with pytest.raises(BlockingIOError):
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)


def test_a_reading_lock_locks_what_the_writers_lock(run):
    from apnet_tf.io.folders import reading_lock, written_as

    assert written_as(str(run / "best.keras")) == str(run)
    assert written_as(str(run)) == str(run)
    with reading_lock(str(run / "best.keras")):
        assert os.path.exists(str(run) + ".lock")
        with reading_lock(str(run)):  # re-entrant
            pass
    assert not os.path.exists(str(run) + ".lock")


def test_expand_paths_reads_a_file_reached_twice_once(small_survey, tmp_path):
    """Fails on the old code: a folder and a link to it listed every file twice."""
    from apnet_tf.io.spectra import expand_paths

    src = tmp_path / "spectra"
    src.mkdir()
    for f in sorted(small_survey.glob("apStar-*.fits"))[:3]:
        shutil.copy(f, src)
    (tmp_path / "link").symlink_to(src)
    notes: list[str] = []
    got = expand_paths([str(src), str(tmp_path / "link"), str(src / os.listdir(src)[0])],
                       notes=notes)
    assert len(got) == 3 and all(p.startswith(str(src)) for p in got)
    assert len(notes) == 1 and notes[0].startswith("4 input file(s)"), notes


def test_make_records_reads_a_folder_and_its_link_once(small_survey, tmp_path):
    """Fails on the old code: every record twice."""
    (tmp_path / "link").symlink_to(small_survey)
    res = cli("make-records", "--spectra", small_survey, tmp_path / "link", "--out",
              tmp_path / "rec", "--shards", 1)
    assert res.exit_code == 0, res.output
    n = len(list(small_survey.glob("apStar-*.fits")))
    assert f"{n} records" in res.stdout or f"{n} spectra" in res.stdout, res.stdout
    assert "reached through more than one path" in res.stderr
