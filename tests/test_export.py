"""Exported models must run without this package: SavedModel (TF Serving), TFLite (LiteRT), and
weights that move between PyTorch and Keras."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from apnet_tf.data.manifest import read_manifest
from apnet_tf.export.model_export import export_model
from apnet_tf.inference.predict import predict_catalog
from apnet_tf.io.spectra import read_apstar
from apnet_tf.model.loading import load_model
from apnet_tf.model.runtime import Runtime


@pytest.fixture(scope="module")
def real_flux(apstar_files):
    specs = [read_apstar(p) for p in apstar_files]
    return np.stack([s.flux for s in specs]), np.stack([s.err for s in specs])


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("saved_models") / "apogee_net"
    meta = export_model(str(trained_run), str(out),
                        tflite=["float32", "float16", "int8", "int8-weights"], mc=32)
    return out, meta


def test_layout_and_saved_model_cli(exported):
    out, meta = exported
    assert meta["version"] == 1 and (out / "1" / "saved_model.pb").exists()
    assert (out / "export_metadata.json").exists()
    assert json.loads((out / "1" / "assets.extra" / "export_metadata.json").read_text())[
        "mc"] == 32
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    show = subprocess.run([cli, "show", "--dir", str(out / "1"), "--all"], capture_output=True,
                          text=True, timeout=300)
    assert show.returncode == 0, show.stderr[-2000:]
    assert "signature_def['serving_default']" in show.stdout
    assert "signature_def['predict_with_uncertainty']" in show.stdout
    assert "signature_def['monte_carlo']" in show.stdout
    for name in ("teff", "logg", "fe_h", "teff_mean", "fe_h_std", "logg_p84"):
        assert f"outputs['{name}']" in show.stdout
    for name in ("flux", "err", "seed", "mc"):
        assert f"inputs['{name}']" in show.stdout


def test_saved_model_runs_without_apnet_tf(exported, trained_run, real_flux, tmp_path):
    out, _ = exported
    flux, err = real_flux
    keras_pred = load_model(str(trained_run)).predict(flux)
    body = {"signature_name": "serving_default",
            "instances": [{"flux": row.tolist()} for row in flux[:4]]}
    mc_body = {"signature_name": "predict_with_uncertainty",
               "instances": [{"flux": f.tolist(), "err": e.tolist()}
                             for f, e in zip(flux[:3], err[:3])]}
    np.save(tmp_path / "flux.npy", flux)
    (tmp_path / "body.json").write_text(json.dumps(body))
    (tmp_path / "mc_body.json").write_text(json.dumps(mc_body))
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import tensorflow as tf
        model = tf.saved_model.load({str(out / "1")!r})

        def rest(path):
            # what TF Serving's REST API does with a row-format request body
            req = json.load(open(path))
            sig = model.signatures[req["signature_name"]]
            names = req["instances"][0].keys()
            inputs = {{n: tf.constant([inst[n] for inst in req["instances"]], tf.float32)
                      for n in names}}
            return {{k: v.numpy().tolist() for k, v in sig(**inputs).items()}}

        flux = np.load({str(tmp_path / "flux.npy")!r})
        direct = model.signatures["serving_default"](flux=tf.constant(flux))
        json.dump({{"direct": {{k: v.numpy().tolist() for k, v in direct.items()}},
                   "rest": rest({str(tmp_path / "body.json")!r}),
                   "mc": rest({str(tmp_path / "mc_body.json")!r}),
                   "apnet_imported": "apnet_tf" in sys.modules}},
                  open({str(tmp_path / "result.json")!r}, "w"))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["apnet_imported"] is False
    for k, name in enumerate(("teff", "logg", "fe_h")):
        np.testing.assert_allclose(res["direct"][name], keras_pred[:, k], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(res["rest"][name], keras_pred[:4, k], rtol=1e-4, atol=1e-3)
        mean, std = np.array(res["mc"][f"{name}_mean"]), np.array(res["mc"][f"{name}_std"])
        assert np.isfinite(mean).all() and (std > 0).all() and np.isfinite(std).all()
        assert (np.abs(mean - keras_pred[:3, k]) < 10 * std + 1e-3).all()


def test_tflite_parity_on_real_flux(exported, trained_run, real_flux, records):
    out, meta = exported
    flux, _ = real_flux
    keras_pred = load_model(str(trained_run)).predict(flux)
    std = np.array(read_manifest(str(records))["target_stats"]["std"])
    sizes = {v: info["bytes"] for v, info in meta["tflite"].items()}
    assert sizes["float32"] > 4_655_275 * 4 * 0.95  # the weights are in the file
    assert sizes["float16"] < 0.6 * sizes["float32"] and sizes["int8"] < 0.35 * sizes["float32"]
    f32 = load_model(str(out / "apogee_net_float32.tflite")).predict(flux)
    np.testing.assert_allclose(f32[:, 0], keras_pred[:, 0], atol=0.5)
    np.testing.assert_allclose(f32[:, 1:], keras_pred[:, 1:], atol=1e-3)
    f16 = load_model(str(out / "apogee_net_float16.tflite")).predict(flux)
    assert (np.abs(f16 - keras_pred) <= 0.01 * std).all()


@pytest.mark.xfail(strict=True, reason="dynamic-range int8 misses the 1%-of-std parity on this "
                   "network (BENCHMARKS.md, 'Export'); kept as the open acceptance check")
def test_tflite_int8_parity_on_real_flux(exported, trained_run, real_flux, records):
    out, _ = exported
    flux, _ = real_flux
    keras_pred = load_model(str(trained_run)).predict(flux)
    std = np.array(read_manifest(str(records))["target_stats"]["std"])
    pred = load_model(str(out / "apogee_net_int8.tflite")).predict(flux)
    assert (np.abs(pred - keras_pred) <= 0.01 * std).all()


def test_tflite_int8_weights_on_real_flux(exported, trained_run, real_flux, records):
    out, meta = exported
    flux, _ = real_flux
    keras_pred = load_model(str(trained_run)).predict(flux)
    std = np.array(read_manifest(str(records))["target_stats"]["std"])
    path = out / "apogee_net_int8-weights.tflite"
    assert meta["tflite"]["int8-weights"]["bytes"] < 0.35 * meta["tflite"]["float32"]["bytes"]
    # only fc1's weights are int8: 4.36 M of the 4.66 M parameters, one byte each
    from ai_edge_litert.interpreter import Interpreter

    tensors = Interpreter(model_path=str(path)).get_tensor_details()
    assert [tuple(t["shape"]) for t in tensors if t["dtype"] == np.int8] == [(512, 133 * 64)]
    pred = load_model(str(path)).predict(flux)
    dynamic = load_model(str(out / "apogee_net_int8.tflite")).predict(flux)
    # int8 weights miss the 1% target too (the largest deviation was 0.8-2.3% of std on five
    # models, BENCHMARKS.md), but sit far closer than the converter's dynamic-range int8 (24-45%),
    # and a typical star moves by well under 1%
    deviation = np.abs(pred - keras_pred) / std
    assert deviation.max() * 5 < (np.abs(dynamic - keras_pred) / std).max()
    assert (np.median(deviation, axis=0) < 0.005).all()


def test_infer_accepts_saved_model_and_tflite(exported, apstar_files):
    out, _ = exported
    folder = str(apstar_files[0].parent)
    plain = predict_catalog(load_model(str(out / "apogee_net_float32.tflite")), [folder], mc=0)
    assert len(plain.catalog) == 24 and np.isnan(np.asarray(plain.catalog["TEFF_ERR"])).all()
    mc = predict_catalog(load_model(str(out / "apogee_net_float32.tflite")), [folder], mc=8)
    assert np.isfinite(np.asarray(mc.catalog["TEFF_ERR"])).all()
    sm = predict_catalog(load_model(str(out)), [folder], mc=32)
    assert np.isfinite(np.asarray(sm.catalog["LOGG_ERR"])).all()
    # two Monte Carlo means (R = 32 and R = 8) agree within their own sigmas
    a, b = (np.asarray(c.catalog["TEFF"]) for c in (sm, mc))
    sa, sb = (np.asarray(c.catalog["TEFF_ERR"]) for c in (sm, mc))
    assert (np.abs(a - b) <= 5 * (sa + sb) + 1.0).all()


def test_one_monte_carlo_for_keras_saved_model_and_tflite(exported, trained_run, real_flux,
                                                          apstar_files):
    """Review items 1 and 2: every path takes the pixel mask, and the same seed gives the same
    summaries from the run folder, its SavedModel and its TFLite file."""
    out, _ = exported
    flux, err = (a[:3] for a in real_flux)
    bad = np.zeros(flux.shape, bool)
    bad[0] = True  # every pixel of star 0 masked: no noise at all, whatever its errors say
    bad[1, 1000:4000] = True  # PIXMASK-like flags on pixels whose errors are finite
    paths = {"keras": trained_run, "saved_model": out,
             "tflite": out / "apogee_net_float32.tflite"}
    models = {k: load_model(str(p)) for k, p in paths.items()}
    # one runtime class per kind, all behind the one protocol
    assert {k: type(m).__name__ for k, m in models.items()} == {
        "keras": "KerasRuntime", "saved_model": "SavedModelRuntime", "tflite": "TFLiteRuntime"}
    assert all(isinstance(m, Runtime) and m.kind == k for k, m in models.items())
    res = {k: m.monte_carlo(flux, err, bad, 16) for k, m in models.items()}
    for kind, r in res.items():
        # no noise: what is left is float rounding between rows of one batch
        assert (r["std"][0] < 1e-3 * r["std"][1:].min(axis=0)).all(), kind
        assert (r["std"][1:] > 0).all(), kind
    atol = np.array([0.5, 1e-3, 1e-3])  # K, dex, dex: the TFLite parity bounds above
    for kind in ("saved_model", "tflite"):
        for key in ("mean", "p16", "p50", "p84"):
            diff = np.abs(res[kind][key] - res["keras"][key])
            assert (diff <= atol).all(), (kind, key, diff.max(axis=0))
        # (star 0's spread is float rounding only, checked above)
        np.testing.assert_allclose(res[kind]["std"][1:], res["keras"]["std"][1:], rtol=0.01,
                                   err_msg=f"{kind} std")
    # and a whole catalog, from the files' own masks, with the same seed
    folder = str(apstar_files[0].parent)
    cats = {k: predict_catalog(m, [folder], mc=8, batch_size=16, seed=3).catalog
            for k, m in models.items()}
    for kind in ("saved_model", "tflite"):
        for col in ("TEFF_ERR", "LOGG_ERR", "FE_H_ERR"):
            np.testing.assert_allclose(np.asarray(cats[kind][col]),
                                       np.asarray(cats["keras"][col]), rtol=0.01, atol=1e-6,
                                       err_msg=f"{kind} {col}")


def test_pytorch_weights_round_trip(real_flux, tmp_path):
    torch = pytest.importorskip("torch")
    import keras

    from apnet_tf.model.torch_reference import apnet_network
    from apnet_tf.model.torch_weights import import_torch, keras_to_torch_state_dict

    torch.manual_seed(0)
    net = apnet_network().eval()
    torch.save(net.state_dict(), tmp_path / "net.pt")
    path = import_torch(str(tmp_path / "net.pt"), str(tmp_path / "run"))
    model = keras.models.load_model(path)
    flux, _ = real_flux
    with torch.no_grad():
        expect = net(torch.from_numpy(flux[:, None, :])).numpy()
    z = keras.Model(model.input, model.get_layer("fc3").output).predict(flux, verbose=0)
    np.testing.assert_allclose(z, expect, atol=1e-4)
    # and back: Keras weights under Appendix B keys load into the PyTorch code
    state = {k: torch.from_numpy(v) for k, v in keras_to_torch_state_dict(model).items()}
    back = apnet_network().eval()
    back.load_state_dict(state)
    with torch.no_grad():
        np.testing.assert_allclose(back(torch.from_numpy(flux[:, None, :])).numpy(), expect,
                                   atol=1e-5)
