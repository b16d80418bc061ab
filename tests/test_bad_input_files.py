"""Every file the package reads is checked, and a bad one is reported in one line naming it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, cli, snapshot


def _copy(src, tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_shard(small_records, untrained_run, tmp_path):
    records = _copy(small_records, tmp_path, "records")
    shard = next(records.glob("test-*.tfrecord"))
    _truncate(shard)
    res = cli("evaluate", "--model", untrained_run, "--records", records, "--out",
              tmp_path / "eval", "--mc", 2)
    assert_one_line_error(res, shard.name, "truncated")


def test_missing_shard(small_records, tmp_path):
    records = _copy(small_records, tmp_path, "records")
    shard = next(records.glob("train-*.tfrecord"))
    shard.unlink()
    res = cli("fit", "--records", records, "--out", tmp_path / "run", "--epochs", 1,
              "--stage", "pretrain")
    assert_one_line_error(res, shard.name, "missing")


def test_manifest_without_target_statistics(small_records, tmp_path):
    records = _copy(small_records, tmp_path, "records")
    manifest = json.loads((records / "manifest.json").read_text())
    del manifest["target_stats"]
    (records / "manifest.json").write_text(json.dumps(manifest))
    res = cli("fit", "--records", records, "--out", tmp_path / "run", "--epochs", 1)
    assert_one_line_error(res, "manifest.json", "target statistics")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text", ["{not json", '{"mean": [1, 2, 3], "std": [0, 1, 1]}',
                                  '{"mean": "x"}'])
def test_corrupt_normalization_is_not_ignored(untrained_run, small_survey, tmp_path, text):
    run = _copy(untrained_run, tmp_path, "run")
    (run / "normalization.json").write_text(text)
    res = cli("infer", "--model", run, "--spectra", small_survey, "--out", tmp_path / "c.csv",
              "--mc", 0)
    assert_one_line_error(res, "normalization.json")
    assert not (tmp_path / "c.csv").exists()


def test_truncated_keras_is_not_file_not_found(untrained_run, small_survey, tmp_path):
    run = _copy(untrained_run, tmp_path, "run")
    _truncate(run / "best.keras")
    res = cli("infer", "--model", run, "--spectra", small_survey, "--out", tmp_path / "c.csv",
              "--mc", 0)
    line = assert_one_line_error(res, "best.keras", "truncated")
    assert "not found" not in line.lower()


def test_a_network_of_other_inputs_is_refused_at_load(small_survey, tmp_path):
    """The YSO photometric network's .keras file given to infer: it loaded as a spectral model
    and the first spectra ended in a TypeError traceback."""
    import keras

    from apnet_tf.labels.yso import TrainResult, build_network, save_network

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).uniform(8.0, 16.0, (16, 12)).astype(np.float32)
    y = np.random.default_rng(1).normal(size=(16, 5)).astype(np.float32)
    save_network(TrainResult(build_network(x, y, (4, 4, 4), 8), {}, {}), str(tmp_path / "yso"))
    res = cli("infer", "--model", tmp_path / "yso" / "network.keras", "--spectra", small_survey,
              "--out", tmp_path / "c.csv", "--mc", 0)
    line = assert_one_line_error(res, "network.keras", "not a network of apStar spectra")
    assert "yso-labels" in line
    assert not (tmp_path / "c.csv").exists()


@pytest.fixture(scope="module")
def good_state(untrained_run):
    import keras

    from apnet_tf.model.torch_weights import keras_to_torch_state_dict

    return keras_to_torch_state_dict(keras.models.load_model(untrained_run / "best.keras"))


def _save(tmp_path, obj):
    import torch

    path = tmp_path / "net.pt"
    torch.save(obj, path)
    return path


def _tensors(state, **changes):
    import torch

    state = {**state, **changes}
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


@pytest.mark.parametrize("case", ["nan", "fc1", "conv2d", "list", "tensor"])
def test_import_torch_bad_state_dict(good_state, tmp_path, case):
    import torch

    obj = {
        "nan": lambda: _tensors(good_state, **{"fc2.weight": np.full((512, 512), np.nan,
                                                                     np.float32)}),
        "fc1": lambda: _tensors(good_state, **{"fc1.weight": np.zeros((512, 64 * 100),
                                                                      np.float32)}),
        "conv2d": lambda: _tensors(good_state, **{"conv3.weight": np.zeros((16, 24),
                                                                         np.float32)}),
        "list": lambda: [torch.zeros(3)],
        "tensor": lambda: torch.zeros(3),
    }[case]()
    path = _save(tmp_path, obj)
    res = cli("import-torch", path, "--out", tmp_path / "run")
    key = {"nan": "fc2.weight", "fc1": "fc1.weight", "conv2d": "conv3.weight"}.get(case, "")
    assert_one_line_error(res, str(path), key)
    assert not (tmp_path / "run").exists()


def test_import_torch_std_zero(good_state, tmp_path):
    path = _save(tmp_path, _tensors(good_state))
    res = cli("import-torch", path, "--out", tmp_path / "run", "--arch", "apnet",
              "--std", "0,0,0")
    assert_one_line_error(res, "--std")
    assert not (tmp_path / "run").exists()


def test_import_torch_into_a_run_needs_overwrite(good_state, untrained_run, tmp_path):
    run = _copy(untrained_run, tmp_path, "run")
    (run / "calibration.json").write_text('{"scale": [1, 1, 1]}')
    before = snapshot(run)
    path = _save(tmp_path, _tensors(good_state))
    assert_one_line_error(cli("import-torch", path, "--out", run), "--overwrite")
    assert snapshot(run) == before


def test_import_apnet_tf_is_enough_to_load_a_model(untrained_run):
    code = ("import sys, apnet_tf\n"
            "assert 'tensorflow' not in sys.modules, 'import apnet_tf imported TensorFlow'\n"
            "import keras\n"
            f"m = keras.models.load_model({str(untrained_run / 'best.keras')!r})\n"
            "print(m.get_layer('flux_scaling').__class__.__name__)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "FluxScaling"


@pytest.fixture(scope="module")
def short_run(small_records, tmp_path_factory):
    """A run trained for one epoch with the default input scaling ("mean")."""
    from apnet_tf.training.recipes import get_recipe
    from apnet_tf.workflows import fit

    run = tmp_path_factory.mktemp("short_run")
    fit(str(small_records), str(run), stage="pretrain", recipe=get_recipe("default", epochs=1))
    return run


def _catalog_labels(path):
    from astropy.table import Table

    cat = Table.read(path, format="ascii.ecsv")
    return np.stack([np.asarray(cat[c], float) for c in ("TEFF", "LOGG", "FE_H")], axis=1)


def test_import_torch_of_an_exported_run_gives_the_runs_numbers(short_run, small_survey,
                                                                 tmp_path):
    import keras

    from apnet_tf.model.torch_layouts import torch_shapes
    from apnet_tf.model.torch_weights import keras_to_torch_state_dict, save_torch

    model = keras.models.load_model(short_run / "best.keras")
    # a plain state_dict: exactly the paper's keys, which its PyTorch code loads strictly
    assert list(keras_to_torch_state_dict(model)) == list(torch_shapes("anet1"))
    pt = tmp_path / "apogee_net.pt"
    save_torch(str(short_run), str(pt))
    sidecar = json.loads((tmp_path / "apogee_net.pt.json").read_text())
    assert sidecar["arch"] == "apnet" and sidecar["input_scaling"] == "mean"
    res = cli("import-torch", pt, "--out", tmp_path / "imported")
    assert res.exit_code == 0, res.output
    assert "apnet" in res.stdout
    for run, name in ((short_run, "a.csv"), (tmp_path / "imported", "b.csv")):
        res = cli("infer", "--model", run, "--spectra", small_survey, "--out", tmp_path / name,
                  "--mc", 0, "--raw-sigma")
        assert res.exit_code == 0, res.output
    a, b = _catalog_labels(tmp_path / "a.csv"), _catalog_labels(tmp_path / "b.csv")
    std = np.asarray(json.loads((short_run / "normalization.json").read_text())["std"])
    ok = np.isfinite(a).all(axis=1)
    assert ok.any()
    np.testing.assert_allclose(a[ok], b[ok], rtol=0, atol=1e-4 * std.min())
    # a conflicting --arch is refused in one line; nothing written
    res = cli("import-torch", pt, "--out", tmp_path / "other", "--arch", "anet1")
    assert_one_line_error(res, "apogee_net.pt.json", "--arch anet1")
    assert not (tmp_path / "other").exists()


def test_import_torch_bad_sidecar(good_state, tmp_path):
    path = _save(tmp_path, _tensors(good_state))
    (tmp_path / "net.pt.json").write_text('{"arch": "apnet", "input_scaling": "mean", '
                                          '"mean": [1, 2, 3], "std": ["x", 1, 1]}')
    res = cli("import-torch", path, "--out", tmp_path / "run")
    assert_one_line_error(res, "net.pt.json", "std")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("field, text", [
    ("min", '"min": ["x", 0, -2], "max": [7000, 5, 0.5]'),
    ("max", '"min": [3000, 0, -2], "max": [7000, "five", 0.5]'),
    ("mean", '"min": [3000, 0, -2], "max": [7000, 5, 0.5], "mean": ["4700", 2.9, -0.2]'),
])
def test_text_in_a_normalization_number_field(untrained_run, small_survey, tmp_path, field,
                                              text):
    run = _copy(untrained_run, tmp_path, "run")
    norm = json.loads((run / "normalization.json").read_text())
    extra = json.loads("{" + text + "}")
    (run / "normalization.json").write_text(json.dumps({**norm, **extra}))
    res = cli("infer", "--model", run, "--spectra", small_survey, "--out", tmp_path / "c.csv",
              "--mc", 0)
    assert_one_line_error(res, "normalization.json", field)
    assert not (tmp_path / "c.csv").exists()


def test_a_savedmodel_of_another_package(small_survey, tmp_path):
    import tensorflow as tf

    class Other(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def serve(self, x):
            return {"y": tf.reduce_sum(x, axis=1)}

    other = Other()
    tf.saved_model.save(other, str(tmp_path / "other"), signatures={"serving_default": other.serve})
    res = cli("infer", "--model", tmp_path / "other", "--spectra", small_survey, "--out",
              tmp_path / "c.csv", "--mc", 0)
    assert_one_line_error(res, "other", "serving_default")
    assert not (tmp_path / "c.csv").exists()
