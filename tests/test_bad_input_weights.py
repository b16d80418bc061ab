"""import-torch: weights are read as what they are (their keys and shapes), strictly, and a file
torch cannot read is said in one line (BAD_INPUT.md, "Weights")."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, cli

torch = pytest.importorskip("torch")


def _state(arch: str, seed: int = 0, extra: dict | None = None) -> dict:
    """Seeded small weights of a layout's keys and shapes, as tensors (plus ``extra`` keys)."""
    from apnet_tf.model.torch_layouts import torch_shapes

    rng = np.random.default_rng(seed)
    arrays = {k: rng.normal(0, 0.05, s).astype(np.float32) for k, s in torch_shapes(arch).items()}
    arrays.update(extra or {})
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def _save(path, obj):
    torch.save(obj, path)
    return path


@pytest.fixture(scope="module")
def net1_file(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("w") / "anet1.pt", _state("anet1", 1))


@pytest.fixture(scope="module")
def net2_file(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("w") / "model.pt", _state("anet2", 2))


def test_a_published_net1_file_is_never_read_as_apnet_without_override(net1_file, tmp_path):
    """Fails on the old code: it imported the Net I file as apnet, exit 0 (1473 K off)."""
    res = cli("import-torch", net1_file, "--arch", "apnet", "--out", tmp_path / "run")
    assert_one_line_error(res, str(net1_file), "--arch anet1", "APOGEE Net I", "--force-arch")
    res = cli("import-torch", net1_file, "--arch", "appendix-b", "--out", tmp_path / "run")
    assert res.exit_code == 1 and "--force-arch" in res.stderr.splitlines()[-1]  # old name too
    assert not (tmp_path / "run").exists()
    res = cli("import-torch", net1_file, "--arch", "apnet", "--force-arch", "--out",
              tmp_path / "own")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "own" / "run.json").read_text())["arch"] == "apnet"


def test_the_layout_is_recognised_without_arch(net1_file, net2_file, tmp_path):
    """Fails on the old code: a Net II file without --arch was refused as a bad Net I file."""
    for path, arch in ((net1_file, "anet1"), (net2_file, "anet2")):
        res = cli("import-torch", path, "--out", tmp_path / arch)
        assert res.exit_code == 0, res.output
        assert f"(--arch {arch})" in res.stdout
        assert json.loads((tmp_path / arch / "run.json").read_text())["arch"] == arch


@pytest.mark.parametrize("arch", [None, "anet1", "anet2"])
def test_every_key_must_be_known(tmp_path, arch):
    """Fails on the old code: fc4.weight was ignored and the file imported as Net I, exit 0."""
    layout = arch or "anet1"
    path = _save(tmp_path / "net.pt",
                 _state(layout, extra={"fc4.weight": np.zeros((3, 3), np.float32)}))
    res = cli("import-torch", path, "--out", tmp_path / "run", *(["--arch", arch] if arch else []))
    assert_one_line_error(res, str(path), "unexpected key fc4.weight")
    assert not (tmp_path / "run").exists()


def test_a_layout_of_nothing_known_names_the_closest(tmp_path):
    path = _save(tmp_path / "net.pt", {"encoder.weight": torch.zeros(3, 3)})
    assert_one_line_error(cli("import-torch", path, "--out", tmp_path / "run"), str(path),
                          "not a layout import-torch knows", "no key")
    # a training checkpoint around a state_dict: said, with the entry to save
    _save(path, {"epoch": 3, "model_state_dict": _state("anet1")})
    assert_one_line_error(cli("import-torch", path, "--out", tmp_path / "run"), str(path),
                          "checkpoint", "'model_state_dict'")


@pytest.fixture(scope="module")
def own_file(untrained_run, tmp_path_factory):
    from apnet_tf.model.torch_weights import save_torch

    path = tmp_path_factory.mktemp("own") / "apogee_net.pt"
    save_torch(str(untrained_run), str(path))
    return path


def test_the_packages_own_file_without_its_sidecar(own_file, tmp_path):
    """Fails on the old code: imported as anet1, exit 0; every star then came out BAD."""
    lone = tmp_path / "apogee_net.pt"
    lone.write_bytes(own_file.read_bytes())
    for extra in ([], ["--arch", "anet1"]):
        res = cli("import-torch", lone, "--out", tmp_path / "run", *extra)
        assert_one_line_error(res, str(lone), "apogee_net.pt.json", "missing")
        assert not (tmp_path / "run").exists()


def test_the_packages_own_file_loads_strictly_in_the_papers_code(own_file):
    from apnet_tf.model.torch_reference import apnet_network

    net = apnet_network()
    result = net.load_state_dict(torch.load(own_file, weights_only=True), strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def _bad_files(tmp_path, good: bytes) -> dict:
    import argparse

    import h5py

    files = {"truncated": good[: len(good) // 2], "empty": b"", "text": b"weights\n1 2 3\n"}
    for name, data in files.items():
        (tmp_path / f"{name}.pt").write_bytes(data)
    torch.save({"fc1.weight": torch.zeros(2), "step": np.float64(3.0)}, tmp_path / "numpy.pt")
    torch.save({"args": argparse.Namespace(lr=1)}, tmp_path / "object.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    with h5py.File(tmp_path / "keras.pt", "w") as f:
        f["a"] = np.zeros(3)
    with zipfile.ZipFile(tmp_path / "model.pt", "w") as z:
        z.writestr("config.json", "{}")
    (tmp_path / "folder.pt").mkdir()
    return {p.stem: p for p in tmp_path.glob("*.pt")}


def test_torchs_loader_errors_become_one_clean_line(net1_file, tmp_path):
    """Fails on the old code: torch's text came through with terminal colour codes, cut off,
    advising weights_only=False, or (an empty file) as a bare 'EOFError'."""
    words = {"truncated": "truncated or damaged", "empty": "empty", "text": "not a PyTorch file",
             "numpy": "numpy", "object": "argparse.Namespace", "module": "torch.nn",
             "keras": "HDF5", "model": ".keras", "folder": "no model_chunk_0"}
    files = _bad_files(tmp_path, net1_file.read_bytes())
    assert set(files) == set(words)
    for name, path in files.items():
        line = assert_one_line_error(cli("import-torch", path, "--out", tmp_path / "run"),
                                     str(path), words[name])
        assert "\x1b" not in line and "weights_only" not in line and "miniz" not in line, line
        assert not (tmp_path / "run").exists()


def test_every_arch_has_a_layout():
    from apnet_tf.model.bossnet import BOSS_ARCHS
    from apnet_tf.model.published import ARCHS
    from apnet_tf.model.torch_layouts import LAYOUTS, recognise

    assert set(LAYOUTS) == set(ARCHS + BOSS_ARCHS)
    assert recognise(_state("anet2")) == ["anet2"]
    assert recognise(_state("anet1")) == ["anet1", "apnet"]  # the published one first


def test_a_later_layout_plugs_in_with_one_entry():
    """APOGEE Net III and BOSS Net (conv, BatchNorm and residual blocks, int64
    num_batches_tracked) recognised, checked and built through one table entry each."""
    from bossnet_fixtures import seeded_state

    from apnet_tf.errors import ApnetError
    from apnet_tf.model.bossnet_weights import bossnet_from_state, bossnet_shapes
    from apnet_tf.model.torch_layouts import (
        LAYOUTS,
        Layout,
        check_state_dict,
        choose_layout,
        recognise,
    )

    small = {"pool_size": 8, "linear_dim": 16}
    table = dict(LAYOUTS)
    for arch, title in (("anet3", "APOGEE Net III"), ("bossnet", "BOSS Net")):
        table[arch] = Layout(arch, title, True, lambda a=arch: bossnet_shapes(a, **small),
                             lambda arrays, *_, a=arch: bossnet_from_state(arrays, a, **small))
    states = {a: seeded_state(bossnet_shapes(a, **small), 3) for a in ("anet3", "bossnet")}
    assert recognise(states["anet3"], table) == ["anet3"]
    assert recognise(states["bossnet"], table) == ["bossnet"]
    assert recognise(_state("anet1"), table) == ["anet1", "apnet"]
    with pytest.raises(ApnetError, match="those of --arch bossnet .BOSS Net."):
        choose_layout(states["bossnet"], "boss.pt", "anet3", layouts=table)
    arrays = check_state_dict(states["anet3"], "net3.pt", "anet3", table)
    assert arrays["first_conv.bn.num_batches_tracked"].dtype == np.int64
    model = table["anet3"].to_model(arrays, None, None, None)
    flux = np.random.default_rng(0).uniform(0.5, 1.5, (2, model.input_shape[-1]))
    expect = bossnet_from_state(states["anet3"], "anet3", **small).predict(flux, verbose=0)
    np.testing.assert_array_equal(model.predict(flux, verbose=0), expect)


@pytest.fixture(scope="module")
def net3_files(tmp_path_factory):
    """APOGEE Net III stand-in weights as one torch.save file, and the same with a key left
    over (full size: the table's entries are the published networks')."""
    from bossnet_fixtures import seeded_state

    from apnet_tf.model.bossnet_weights import bossnet_shapes

    base = tmp_path_factory.mktemp("net3")
    state = {k: torch.as_tensor(v) for k, v in seeded_state(bossnet_shapes("anet3"), 3).items()}
    plain = _save(base / "net3.pt", state)
    extra = _save(base / "extra.pt", {**state, "fc4.weight": torch.zeros(3, 3)})
    return plain, extra


def test_net3_and_boss_net_are_recognised_by_their_layout(net3_files, net1_file, tmp_path):
    """Fails on the old code: a Net III .pt file without --arch was read as Net I ('no key
    conv1.weight'), and a file under another --arch named no layout it is."""
    plain, extra = net3_files
    res = cli("import-torch", plain, "--out", tmp_path / "run")
    assert res.exit_code == 0, res.output
    wrote = tmp_path / "run" / "best.keras"
    assert res.stdout == f"wrote {wrote} (--arch anet3, astra conventions)\n"
    assert json.loads((tmp_path / "run" / "run.json").read_text())["arch"] == "anet3"
    res = cli("import-torch", plain, "--arch", "bossnet", "--out", tmp_path / "a")
    assert_one_line_error(res, str(plain), "not --arch bossnet",
                          "its keys and shapes are those of --arch anet3 (APOGEE Net III)")
    res = cli("import-torch", net1_file, "--arch", "anet3", "--out", tmp_path / "b")
    assert_one_line_error(res, "not --arch anet3", "those of --arch anet1 (APOGEE Net I)")
    res = cli("import-torch", extra, "--out", tmp_path / "c")
    assert_one_line_error(res, str(extra), "closest is --arch anet3 (APOGEE Net III)",
                          "unexpected key fc4.weight")
    res = cli("import-torch", net1_file, "--convention", "astra", "--out", tmp_path / "d")
    assert_one_line_error(res, "--convention: it goes with --arch anet3 or bossnet")
    assert not any((tmp_path / n).exists() for n in "abcd")
