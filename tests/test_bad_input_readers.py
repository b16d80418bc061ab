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


@contextlib.contextmanager
def writing(folder):
    """Hold FOLDER.lock exclusively, as fit, import-torch or calibrate writing it does."""
    with open(str(folder) + ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


def _lock_state(folder) -> str:
    """"shared" if a job reads FOLDER (its lock is held shared), else "free" or "exclusive"."""
    try:
        with open(str(folder) + ".lock") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    return "shared"
                except BlockingIOError:
                    return "exclusive"
            return "free"
    except FileNotFoundError:
        return "free"


def test_infer_refuses_a_run_being_written(run, small_survey, tmp_path):
    """Fails on the old code: infer read a run that fit --overwrite was rewriting."""
    before = snapshot(run)
    with writing(run):
        res = cli("infer", "--model", run, "--spectra", small_survey, "--out",
                  tmp_path / "c.csv", "--mc", 0)
    assert_one_line_error(res, str(run), "another process is writing it")
    assert snapshot(run) == before and not (tmp_path / "c.csv").exists()


@pytest.mark.parametrize("command", ["infer", "evaluate", "export"])
def test_jobs_that_read_a_run_hold_its_lock_shared(run, small_survey, small_records, tmp_path,
                                                   monkeypatch, command):
    """Fails on the old code: nothing held the run while infer, evaluate or export read it."""
    import apnet_tf.evaluation.tables as tables
    import apnet_tf.export.model_export as export
    import apnet_tf.inference.job as job

    module = {"infer": job, "evaluate": tables, "export": export}[command]
    seen = []
    real = module.load_model

    def spying(*args, **kwargs):
        seen.append(_lock_state(run))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "load_model", spying)
    args = {"infer": ["--spectra", small_survey, "--out", tmp_path / "c.csv", "--mc", 0],
            "evaluate": ["--records", small_records, "--out", tmp_path / "ev", "--mc", 2],
            "export": ["--out", tmp_path / "exp", "--tflite", "", "--mc", 2]}[command]
    res = cli(command, "--model", run, *args)
    assert res.exit_code == 0, res.output
    assert seen == ["shared"]
    assert _lock_state(run) == "free" and not os.path.exists(str(run) + ".lock")


def test_modelsha_is_the_hash_of_what_was_loaded(run, small_survey, tmp_path, monkeypatch):
    """Fails on the old code: MODELSHA was hashed when the catalog was written, so a model
    rewritten during the job (fit --overwrite) gave the hash of neither model."""
    from astropy.table import Table

    import apnet_tf.inference.job as job
    from apnet_tf.model.loading import files_sha256, model_files

    loaded_sha = files_sha256(model_files(str(run)))
    real = job.predict_settings

    def rewritten_meanwhile(*args, **kwargs):  # a writer that ignores the lock
        (run / "normalization.json").write_text((run / "normalization.json").read_text() + " ")
        return real(*args, **kwargs)

    monkeypatch.setattr(job, "predict_settings", rewritten_meanwhile)
    res = cli("infer", "--model", run, "--spectra", small_survey, "--out", tmp_path / "c.csv",
              "--mc", 0)
    assert res.exit_code == 0, res.output
    assert Table.read(tmp_path / "c.csv", format="ascii.ecsv").meta["MODELSHA"] == loaded_sha
    assert files_sha256(model_files(str(run))) != loaded_sha


def test_a_model_that_changes_while_it_loads_is_refused(run, monkeypatch):
    import apnet_tf.model.loading as loading
    from apnet_tf.errors import ApnetError

    real = loading._load

    def changing(path, calibration):
        got = real(path, calibration)
        (run / "normalization.json").write_text((run / "normalization.json").read_text() + " ")
        return got

    monkeypatch.setattr(loading, "_load", changing)
    with pytest.raises(ApnetError, match="changed while it was being loaded"):
        loading.load_model(str(run))


def test_infer_reads_a_folder_and_its_link_once(run, small_survey, tmp_path):
    """Fails on the old code: every star of the folder twice in the catalog."""
    from astropy.table import Table

    (tmp_path / "link").symlink_to(small_survey)
    res = cli("infer", "--model", run, "--spectra", small_survey, tmp_path / "link", "--out",
              tmp_path / "c.csv", "--mc", 0)
    assert res.exit_code == 0, res.output
    n = len(list(small_survey.glob("apStar-*.fits")))
    cat = Table.read(tmp_path / "c.csv", format="ascii.ecsv")
    assert len(cat) == n and len(set(cat["APOGEE_ID"])) == n
    notes = [line for line in res.stderr.splitlines() if "more than one path" in line]
    assert len(notes) == 1 and notes[0].startswith(f"note: {n} input file(s)"), res.stderr
