"""APOGEE Net III and BOSS Net, run exactly: the Keras network against an independent PyTorch
reference (``bossnet_reference``) and against golden outputs of the authors' own code
(tests/golden/*_golden.json, made by bench/golden_bossnet.py from hutchresearch/BOSSNet and
sdss/astra), their state_dict layout checked key by key, their chunk folders read.

The weights are seeded stand-ins rebuilt from the golden files' recipe
(``bossnet_fixtures.apply_recipe``): BatchNorm statistics and a last layer measured so that the
outputs differ from star to star by about half of each label's sigma. Parity is asked to 1e-4
of each label's spread over the stars; the Monte Carlo sigmas, on the golden draws, to 0.1%.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bossnet_fixtures import (
    BOSS_SPECS,
    apply_recipe,
    fixed_draws,
    seeded_state,
    state_fingerprint,
    write_boss_spec,
)
from conftest import DATA

from apnet_tf.errors import ApnetError
from apnet_tf.model.bossnet import LogFluxClip, scaled_network
from apnet_tf.model.bossnet_weights import (
    bossnet_from_state,
    bossnet_shapes,
    check_bossnet_state,
    keras_to_bossnet_state,
    load_bossnet_state,
)

GOLDEN = Path(__file__).parent / "golden"
TOL = 1e-4  # of each label's standard deviation over the stars
MC_TOL = 1e-3  # relative, Monte Carlo sigmas (the issue asks 1%; they agree to 1e-5)
CONVENTIONS = ("astra", "hutchresearch")


@pytest.fixture(scope="module", params=["anet3", "bossnet"])
def arch(request):
    return request.param


@pytest.fixture(scope="module")
def golden(arch):
    return json.loads((GOLDEN / f"{arch}_golden.json").read_text())


@pytest.fixture(scope="module")
def state(arch, golden):
    recipe = golden["weights"]
    built = apply_recipe(seeded_state(bossnet_shapes(arch), recipe["seed"]), recipe)
    assert state_fingerprint(built) == recipe["fingerprint"]
    return built


@pytest.fixture(scope="module")
def keras_model(arch, state):
    return bossnet_from_state(state, arch)


@pytest.fixture(scope="module")
def reference(arch, state):
    pytest.importorskip("torch")
    ref = pytest.importorskip("bossnet_reference")
    return ref, ref.load(state, arch)


@pytest.fixture(scope="module")
def spectra(arch, golden, tmp_path_factory):
    """The golden inputs: apStar paths under ../shared/data, or the synthetic BOSS files."""
    if arch == "anet3":
        paths = [DATA / s["file"] for s in golden["spectra"]]
        if not all(p.exists() for p in paths):
            pytest.skip(f"real apStar files not found under {DATA}")
        return paths
    folder = tmp_path_factory.mktemp("boss")
    for k, spec in enumerate(BOSS_SPECS):
        write_boss_spec(folder / spec[0], k)
    return [folder / spec[0] for spec in BOSS_SPECS]


def _inputs(ref, arch, path, convention):
    """(flux, err, wavelength or None) on the native pixels, as ``convention`` reads them."""
    if arch == "anet3":
        return (*ref.apstar_rows(path, convention), None)
    return ref.boss_inputs(path, convention)


def _model_input(ref, arch, path, convention):
    flux, _, wave = _inputs(ref, arch, path, convention)
    return flux if wave is None else ref.resample(flux, wave)


def _keras_network_order(values: np.ndarray) -> np.ndarray:
    """Keras (Teff K, log g, [Fe/H][, RV]) -> the network's (log g, log10 Teff, [Fe/H][, RV])."""
    out = np.asarray(values, np.float64).copy()
    out[:, 0], out[:, 1] = values[:, 1], np.log10(values[:, 0])
    return out


def _golden(golden, convention, key):
    return np.array([s[convention][key] for s in golden["spectra"]], np.float64)


def assert_parity(got, expect, spread, what, tol=TOL):
    worst = (np.abs(np.asarray(got, float) - np.asarray(expect, float)) / spread).max(axis=0)
    assert (worst < tol).all(), f"{what}: worst |diff| / spread per label {worst}"


def test_the_layout_is_the_authors(arch, reference):
    _, net = reference
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes == bossnet_shapes(arch)
    assert list(shapes) == list(bossnet_shapes(arch))


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_keras_matches_the_reference(arch, convention, keras_model, reference, spectra, golden):
    ref, net = reference
    x = np.stack([_model_input(ref, arch, p, convention) for p in spectra])
    expect = ref.plain(net, x, arch)
    got = _keras_network_order(keras_model.predict(x, verbose=0))
    spread = _golden(golden, "astra", "plain").std(axis=0)
    assert_parity(got, expect, spread, f"{arch} Keras vs reference, {convention} input")


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_both_give_the_authors_plain_values(arch, convention, keras_model, reference, spectra,
                                            golden):
    """The golden values of the authors' code, within 1e-4 of the spread and within the
    issue's bar (1 K, 0.002 dex, 0.001 dex, 0.1 km/s)."""
    ref, net = reference
    x = np.stack([_model_input(ref, arch, p, convention) for p in spectra])
    expect = _golden(golden, convention, "plain")
    spread = expect.std(axis=0)
    assert_parity(ref.plain(net, x, arch), expect, spread, f"{arch} reference vs golden")
    got = keras_model.predict(x, verbose=0)
    assert_parity(_keras_network_order(got), expect, spread, f"{arch} Keras vs golden")
    physical = expect[:, [1, 0, 2, 3][:got.shape[1]]]  # the package's order
    physical[:, 0] = 10.0 ** physical[:, 0]
    worst = np.abs(got - physical).max(axis=0)
    assert (worst <= [1.0, 0.002, 0.001, 0.1][:got.shape[1]]).all(), worst


def _reference_mc(reference, arch, convention, spectra, golden, rows):
    ref, net = reference
    draws, std, med = golden["draws"], [], []
    for k in rows:
        flux, err, wave = _inputs(ref, arch, spectra[k], convention)
        eps = fixed_draws(k, len(flux), draws["mc"], draws["seed"])
        out = ref.monte_carlo(net, flux, err, eps, arch, convention, wave)
        std.append(out["std"])
        med.append(out["median"])
    expect = _golden(golden, convention, "mc_std")[rows]
    assert np.allclose(std, expect, rtol=MC_TOL, atol=0), np.abs(np.array(std) / expect - 1).max()
    spread = _golden(golden, convention, "plain").std(axis=0)
    assert_parity(med, _golden(golden, convention, "mc_median")[rows], spread,
                  f"{arch} MC median")


#: A few stars of each set: a DR13 single-visit file, both DR17 files (NaN bad pixels); the
#: BOSS files with NaN flux and with ivar = 0 pixels.
FEW = {"anet3": [2, 24, 25], "bossnet": [1, 2]}


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_the_reference_monte_carlo_gives_the_authors_sigmas(arch, convention, reference,
                                                             spectra, golden):
    _reference_mc(reference, arch, convention, spectra, golden, FEW[arch])


@pytest.mark.slow
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_the_reference_monte_carlo_gives_the_authors_sigmas_for_every_star(
        arch, convention, reference, spectra, golden):
    _reference_mc(reference, arch, convention, spectra, golden, list(range(len(spectra))))


def _keras_mc(model, flux, err, eps, convention, ref, wave):
    noisy = flux[None, :] + err[None, :] * eps
    if wave is not None:
        noisy = ref.resample(noisy, wave)
    if convention == "astra":  # one clip level over the star's draws, then the network
        rows = scaled_network(model).predict(LogFluxClip(group=len(eps))(noisy), verbose=0)
    else:
        rows = model.predict(noisy, verbose=0)
    return _keras_network_order(rows).std(axis=0, ddof=1)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_keras_monte_carlo_gives_the_authors_sigmas(arch, convention, keras_model, reference,
                                                    spectra, golden):
    """On the golden draws, for a few stars (``FEW``)."""
    ref, _ = reference
    for k in FEW[arch]:
        flux, err, wave = _inputs(ref, arch, spectra[k], convention)
        eps = fixed_draws(k, len(flux), golden["draws"]["mc"], golden["draws"]["seed"])
        got = _keras_mc(keras_model, flux, err, eps, convention, ref, wave)
        expect = np.array(golden["spectra"][k][convention]["mc_std"])
        assert np.allclose(got, expect, rtol=MC_TOL, atol=0), (k, got / expect - 1)


# ---------------------------------------------------------------------------------------------
# The state_dict, strictly


def test_every_key_and_shape_is_checked(arch, state):
    small = dict(state)
    with pytest.raises(ApnetError, match=r"w\.pt: no key first_conv\.bn\.running_var"):
        check_bossnet_state({k: v for k, v in small.items()
                             if k != "first_conv.bn.running_var"}, arch, "w.pt")
    with pytest.raises(ApnetError, match=r"w\.pt: unexpected key metadatanet\.0\.weight"):
        check_bossnet_state({**small, "metadatanet.0.weight": np.zeros(3)}, arch, "w.pt")
    bad = {**small, "res_blocks.2.conv2.weight": np.zeros((32, 32, 29), np.float32)}
    with pytest.raises(ApnetError, match=r"res_blocks\.2\.conv2\.weight has shape \(32, 32, 29\)"):
        check_bossnet_state(bad, arch, "w.pt")
    nan = {**small, "linear_sequential.3.linear_layer.bias": np.full(1024, np.nan, np.float32)}
    with pytest.raises(ApnetError, match="linear_sequential.3.linear_layer.bias holds 1024 NaN"):
        check_bossnet_state(nan, arch, "w.pt")
    with pytest.raises(ApnetError, match="holds a list, not a state_dict"):
        check_bossnet_state([1, 2], arch, "w.pt")


def test_the_other_network_is_named():
    boss = {k: np.zeros(s, np.float32) for k, s in bossnet_shapes("bossnet", 4, 8).items()}
    with pytest.raises(ApnetError, match=r"linear_sequential\.6\.weight has shape \(4, 8\).*"
                                         r"use --arch bossnet"):
        check_bossnet_state(boss, "anet3", "m", pool_size=4, linear_dim=8)
    with pytest.raises(ApnetError, match="unexpected key conv1.weight.*use --arch anet1"):
        check_bossnet_state({"conv1.weight": np.zeros(3), "fc1.weight": np.zeros(3)}, "anet3")


def _small_state(arch="anet3", seed=5):
    return seeded_state(bossnet_shapes(arch, pool_size=8, linear_dim=16), seed)


def _chunks(folder: Path, blob: bytes, n: int) -> None:
    """The authors' chop_model layout: n - 1 chunks of len // n bytes, the rest in the last."""
    size = len(blob) // n
    for i in range(n):
        part = blob[i * size:(i + 1) * size if i < n - 1 else len(blob)]
        (folder / f"model_chunk_{i}").write_bytes(part)


def test_the_chunk_folder_and_the_single_file_load_alike(tmp_path):
    torch = pytest.importorskip("torch")
    import io

    state = _small_state()
    buffer = io.BytesIO()
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, buffer)
    (tmp_path / "model.pt").write_bytes(buffer.getvalue())
    for n in (10, 11):
        folder = tmp_path / f"chunks{n}"
        folder.mkdir()
        _chunks(folder, buffer.getvalue(), n)
        (folder / "model_args.yaml").write_text("num_targets: 3\n")
        loaded = load_bossnet_state(str(folder))
        assert set(loaded) == set(state)
        assert all(np.array_equal(loaded[k].numpy(), state[k]) for k in state)
    (tmp_path / "chunks11" / "model_chunk_4").unlink()
    with pytest.raises(ApnetError, match=r"chunks11: model_chunk_4 is missing"):
        load_bossnet_state(str(tmp_path / "chunks11"))
    (tmp_path / "chunks10" / "model_chunk_9").write_bytes(b"")
    with pytest.raises(ApnetError, match="chunks10: cannot load a PyTorch state_dict"):
        load_bossnet_state(str(tmp_path / "chunks10"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ApnetError, match="empty: no model_chunk_0"):
        load_bossnet_state(str(tmp_path / "empty"))
    single = load_bossnet_state(str(tmp_path / "model.pt"))
    assert all(np.array_equal(single[k].numpy(), state[k]) for k in state)


def test_a_keras_file_round_trip_keeps_every_layer(tmp_path):
    import keras

    state = _small_state("bossnet")
    state["pos_enc.inv_freq"] = np.array([0.5], np.float32)
    model = bossnet_from_state(state, "bossnet", pool_size=8, linear_dim=16)
    path = tmp_path / "small.keras"
    model.save(path)
    again = keras.models.load_model(path)
    x = np.abs(np.random.default_rng(1).normal(10, 3, (3, 3900))).astype(np.float32)
    x[0, :40] = np.nan
    assert np.array_equal(model.predict(x, verbose=0), again.predict(x, verbose=0))
    back = keras_to_bossnet_state(again)
    assert set(back) == set(state)
    assert all(np.array_equal(back[k], state[k]) for k in state if "num_batches" not in k)
    assert again.get_layer("labels").names == ["teff", "logg", "fe_h", "rv"]


@pytest.mark.slow
def test_a_tflite_file_takes_raw_flux():
    """The authors' preprocessing converts to TFLite built-in operators (NaN flux included)."""
    from ai_edge_litert.interpreter import Interpreter

    from apnet_tf.export.model_export import tflite_variants

    model = bossnet_from_state(_small_state(), "anet3", pool_size=8, linear_dim=16)
    interpreter = Interpreter(model_content=tflite_variants(model, ("float32",))["float32"])
    # the file holds two signatures (the Monte Carlo's "network" too): ask for the plain one
    runner = interpreter.get_signature_runner("serving_default")
    (name,) = runner.get_input_details()
    x = np.abs(np.random.default_rng(2).normal(100, 30, (2, 8575))).astype(np.float32)
    x[0, :50], x[1, 7000:] = np.nan, 0.0
    (got,) = runner(**{name: x}).values()
    assert np.allclose(got, model.predict(x, verbose=0), rtol=1e-5, atol=0)


@pytest.mark.parametrize("length,size", [(4288, 1024), (1950, 1024), (7, 3), (3, 7), (8, 4),
                                         (1, 5)])
def test_the_pooling_is_pytorchs(length, size):
    torch = pytest.importorskip("torch")
    from apnet_tf.model.bossnet import AdaptiveAveragePooling1D

    x = np.random.default_rng(length).normal(0, 3, (2, length, 5)).astype(np.float32)
    got = AdaptiveAveragePooling1D(size)(x).numpy()
    expect = torch.nn.functional.adaptive_avg_pool1d(torch.from_numpy(x).transpose(1, 2), size)
    assert np.allclose(got, expect.transpose(1, 2).numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("n,group", [(8575, 1), (3900, 1), (8575, 20), (2, 1), (1, 3)])
def test_the_clip_level_is_torch_quantile(n, group):
    """torch.quantile's value on the same numbers to its last bit (PyTorch's lerp is a fused
    multiply-add); the layer around it differs from PyTorch by the last bit of the logarithm."""
    torch = pytest.importorskip("torch")
    from apnet_tf.model.bossnet import torch_quantile

    x = np.exp(np.random.default_rng(n).normal(2, 2, (2 * group, n))).astype(np.float32)
    x[0, : n // 3] = 0.0
    logs = torch.log(torch.clamp(torch.from_numpy(x), min=1e-6)).reshape(2, -1)
    limit = torch.quantile(logs, 0.95, dim=1, keepdim=True)
    got = torch_quantile(logs.numpy(), 0.95).numpy()
    assert np.allclose(got, limit.numpy(), rtol=2.0 ** -23, atol=0), got - limit.numpy()
    expect = torch.minimum(logs, limit + 1).reshape(x.shape).numpy()
    assert np.allclose(LogFluxClip(group=group)(x).numpy(), expect, rtol=0, atol=2e-6)


def test_conventions_say_what_each_pipeline_does():
    from apnet_tf.model.bossnet_conventions import conventions

    astra = conventions("anet3")
    assert astra["convention"] == "astra" and astra["output_order"] == ["logg", "log_teff",
                                                                       "fe_h"]
    assert astra["mc"]["mc"] == 20 and astra["catalog"]["error_model"]["teff"] == [
        1.25, 10.0]
    assert "suspicious_fe_h" not in astra["catalog"]["flags"]
    boss = conventions("bossnet", "hutchresearch")
    assert boss["mean"] == [3.9, 3.8, -0.4, -7.4] and boss["std"][3] == 60.9
    assert "catalog" not in boss and boss["input"]["grid"]["n"] == 3900
    assert conventions("bossnet")["catalog"]["flags"]["suspicious_fe_h"][0] == 4
    json.dumps(astra)
    with pytest.raises(ValueError, match="convention"):
        conventions("anet3", "sdss")


@pytest.mark.parametrize("convention", ["astra", "hutchresearch"])
def test_the_monte_carlo_does_not_depend_on_its_chunk(convention):
    """APOGEE Net III's Monte Carlo goes through the network a few stars at a time
    (``BOSSNET_MC_ROWS_PER_CHUNK``, to bound memory): the same draws, and so the same numbers,
    whatever the chunk, under both conventions (astra clips a star's draws together)."""
    from apnet_tf.model.bossnet_conventions import conventions
    from apnet_tf.model.bossnet_mc import BossNetMonteCarlo

    model = bossnet_from_state(_small_state(), "anet3", pool_size=8, linear_dim=16)
    rng = np.random.default_rng(3)
    flux = np.abs(rng.normal(100, 30, (7, 8575))).astype(np.float32)
    err = np.full_like(flux, 3.0)
    bad = np.zeros(flux.shape, bool)
    bad[:, :40] = True
    conv = conventions("anet3", convention)
    whole = BossNetMonteCarlo(model, conv, 5, rows_per_chunk=1000)(flux, err, bad, seed=11)
    for rows in (6, 13):  # one star per call; two stars per call, the last call holding one
        cut = BossNetMonteCarlo(model, conv, 5, rows_per_chunk=rows)(flux, err, bad, seed=11)
        for key in whole:
            np.testing.assert_allclose(cut[key], whole[key], rtol=1e-5, atol=1e-6, err_msg=key)
