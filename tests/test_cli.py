"""The command line as a user runs it: real subprocesses, exit codes, no tracebacks."""

import json
import os
import subprocess
import sys

CLI = [sys.executable, "-m", "apnet_tf.cli"]


def run(*args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def test_synth_then_make_records(tmp_path):
    res = run("synth", "--out", tmp_path / "s", "--n", 12, "--seed", 1)
    assert res.returncode == 0, res.stderr
    assert "wrote 12 spectra" in res.stdout
    res = run("make-records", "--spectra", tmp_path / "s", "--labels",
              tmp_path / "s" / "labels.csv", "--out", tmp_path / "r", "--shards", 1)
    assert res.returncode == 0, res.stderr
    assert "wrote 12 records" in res.stdout
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert sum(sum(c.values()) for c in manifest["counts"].values()) == 12
    again = run("make-records", "--spectra", tmp_path / "s", "--labels",
                tmp_path / "s" / "labels.csv", "--out", tmp_path / "r", "--shards", 1)
    assert "0 new shards" in again.stdout and again.returncode == 0


def test_bad_input_is_one_line_and_nonzero(tmp_path):
    bad = tmp_path / "labels.csv"
    bad.write_text("APOGEE_ID,TEFF,FE_H\n2M1,4000,0.0\n")
    (tmp_path / "s").mkdir()
    broken = tmp_path / "s" / "apStar-x.fits"
    broken.write_text("not fits")
    res = run("make-records", "--spectra", tmp_path / "s", "--labels", bad, "--out", tmp_path / "r")
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "LOGG" in errors[0] and str(bad) in errors[0]

    res = run("make-records", "--spectra", tmp_path / "nothing*.fits", "--out", tmp_path / "r")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "matches no file" in res.stderr

    # one unreadable file among good ones: reported, the rest written, exit code 2
    res = run("synth", "--out", tmp_path / "s2", "--n", 3)
    (tmp_path / "s2" / "apStar-x.fits").write_text("not fits")
    res = run("make-records", "--spectra", tmp_path / "s2", "--out", tmp_path / "r2")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "apStar-x.fits" in res.stderr and "wrote 3 records" in res.stdout

    res = run("fit", "--records", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "manifest.json" in res.stderr


def test_infer_sigma_flags_exclude_each_other(tmp_path):
    res = run("infer", "--model", tmp_path / "run", "--spectra", tmp_path, "--out",
              tmp_path / "c.csv", "--calibrated", "--raw-sigma")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "--calibrated and --raw-sigma exclude each other" in res.stderr
