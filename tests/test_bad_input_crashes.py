"""The last crashes: a yso.json whose detection limits lack a band, and fit onto a disk that
really fills (BAD_INPUT.md, "No traceback, for real")."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, cli


@pytest.fixture(scope="module")
def yso_net(tmp_path_factory):
    """A YSO network folder (untrained weights, the real layout) and a members table."""
    from apnet_tf.io import folders
    from apnet_tf.labels.isochrones import DETECTION_LIMITS
    from apnet_tf.labels.yso import FEATURES, OUTPUTS, TrainResult, build_network, save_network

    base = tmp_path_factory.mktemp("yso")
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(10, 2, (64, len(FEATURES)))) + 1
    model = build_network(x, rng.normal(0, 1, (64, len(OUTPUTS))))
    folders.claim(str(base / "net"), "yso_net")
    save_network(TrainResult(model, {}, {"detection_limits": dict(DETECTION_LIMITS)}),
                 str(base / "net"))
    members = base / "members.csv"
    members.write_text("APOGEE_ID,G,BP,RP,J,H,K,W1,W2,W3,PARALLAX\n"
                       "2M1,15,15.8,14.2,13,12.4,12.2,12,11.9,11,2.5\n")
    return base / "net", members


def test_a_yso_network_with_every_limit_labels_its_members(yso_net, tmp_path):
    net, members = yso_net
    res = cli("yso-labels", "--model", net, "--members", members, "--out", tmp_path / "y.csv")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("limits, words", [
    ("no_w3", ["W3", "detection_limits"]),
    ("text", ["K", "'faint'"]),
    ("list", ["detection_limits", "list"]),
])
def test_yso_json_with_broken_detection_limits_is_one_line(yso_net, tmp_path, limits, words):
    """Fails on the old code: KeyError: 'W3' on the command line (and the others)."""
    import shutil

    from apnet_tf.labels.isochrones import DETECTION_LIMITS

    net = tmp_path / "net"
    shutil.copytree(yso_net[0], net)
    info = json.loads((net / "yso.json").read_text())
    info["detection_limits"] = {
        "no_w3": {b: v for b, v in DETECTION_LIMITS.items() if b != "W3"},
        "text": {**DETECTION_LIMITS, "K": "faint"},
        "list": list(DETECTION_LIMITS.values()),
    }[limits]
    (net / "yso.json").write_text(json.dumps(info))
    res = cli("yso-labels", "--model", net, "--members", yso_net[1], "--out", tmp_path / "y.csv")
    assert_one_line_error(res, str(net / "yso.json"), *words)
    assert not (tmp_path / "y.csv").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 20 MiB tmpfs (the run's first backup does not fit), remountable larger; skipped where
    the machine does not let this process mount one (not root, no mount, a container)."""
    import os
    import shutil
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fit(records, run, *extra):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "apnet_tf.cli", "fit", "--records",
                           str(records), "--out", str(run), "--stage", "pretrain", "--epochs", "1",
                           *extra], capture_output=True, text=True, timeout=900, env=env,
                          cwd=Path(__file__).resolve().parents[1])


def test_fit_onto_a_really_full_disk_ends_in_one_line_and_resumes(small_records, small_disk):
    """Fails on the old code: the one-line error ran over two lines of HDF5 internals, then
    h5py printed 'Exception ignored ... Traceback' and the process died of a segmentation
    fault, exit 139."""
    import subprocess

    run = small_disk / "run"
    res = _fit(small_records, run)
    assert res.returncode == 1, (res.returncode, res.stderr[-3000:])
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].endswith("then run fit --resume"), res.stderr[-2000:]
    assert "No space left on device" in errors[0] and "latest.weights.h5" in errors[0]
    assert [p.name for p in run.rglob(".tmp-*")] == []
    # room again: the same run resumes and finishes
    subprocess.run(["mount", "-o", "remount,size=400m", str(small_disk)], check=True)
    res = _fit(small_records, run, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (run / "best.keras").exists() and (run / "pretrain.done").exists()


@pytest.mark.parametrize("target", ["folder", "network.keras"])
def test_infer_given_the_yso_network_is_one_line(yso_net, small_survey, tmp_path, target):
    """Fails on the old code: Keras' '... could not be deserialized properly. Please ensure
    that components ...' (or 'not a run folder (best.keras) or a SavedModel')."""
    model = yso_net[0] if target == "folder" else yso_net[0] / "network.keras"
    res = cli("infer", "--model", model, "--spectra", small_survey, "--out",
              tmp_path / "c.csv", "--mc", 0)
    line = assert_one_line_error(res, str(model), "YSO photometric network", "yso-labels")
    assert "deserialized" not in line
    assert not (tmp_path / "c.csv").exists()
