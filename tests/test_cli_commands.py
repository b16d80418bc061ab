"""One test per command the other CLI tests leave out, run in-process (typer's CliRunner) on the
session's synthetic survey, records and trained run."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from cli_helpers import assert_one_line_error, cli

from apnet_tf.model.calibration import KEYS


def _ok(res):
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"{type(res.exception).__name__}: {res.exception}\n{res.output}")
    assert res.exit_code == 0, res.output
    return res.stdout


def test_infer_on_records_and_on_fits(trained_run, records, apstar_files, tmp_path):
    from apnet_tf.data.manifest import count_records

    out = _ok(cli("infer", "--model", trained_run, "--spectra", records, "--out",
                  tmp_path / "cat.csv", "--mc", 2, "--seed", 0))
    n = count_records(str(records))
    assert f"wrote {n} stars to" in out
    assert not (tmp_path / "cat.csv.parts").exists()
    files = apstar_files[:3]
    _ok(cli("infer", "--model", trained_run, "--spectra", *files, "--out", tmp_path / "real.csv",
            "--mc", 0))
    cat = pd.read_csv(tmp_path / "real.csv", comment="#")
    assert len(cat) == 3 and np.isfinite(cat[["TEFF", "LOGG", "FE_H"]].to_numpy()).all()


def test_calibrate_writes_the_runs_calibration(trained_run, records, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    out = _ok(cli("calibrate", "--model", run, "--records", records, "--mc", 4))
    cal = json.loads((run / "calibration.json").read_text())
    for key in KEYS:  # a noise factor and a floor per Kiel region (and "all"), per parameter
        assert len(cal["noise"][key]) == 3 and all(s > 0 for s in cal["noise"][key])
        assert len(cal["floor"][key]) == 3 and all(f >= 0 for f in cal["floor"][key])
    assert cal["mc"] == 4
    # what it prints is the coverage of stars the calibration was not fitted on
    lines = out.splitlines()
    assert lines[-4] == ("dev 1-sigma coverage, raw -> calibrated (each half of dev calibrated "
                         "on the other):")
    for line, name, raw, held_out in zip(lines[-3:], ("teff", "logg", "fe_h"),
                                         cal["coverage_dev_raw"], cal["coverage_dev_held_out"]):
        assert line == f"  {name:5s} {raw:.3f} -> " + (
            "n/a" if held_out is None else f"{held_out:.3f}")


def test_evaluate_and_export_and_evaluate_refuses_an_export(trained_run, records, tmp_path):
    out = _ok(cli("evaluate", "--model", trained_run, "--records", records, "--out",
                  tmp_path / "ev", "--mc", 2, "--splits", "dev"))
    assert "Table 2" in out and "Table 3" in out
    t2 = pd.read_csv(tmp_path / "ev" / "table2.csv", index_col=0)
    assert np.isfinite(t2.loc["all", "dev"])
    out = _ok(cli("export", "--model", trained_run, "--out", tmp_path / "exp", "--tflite", "",
                  "--mc", 2))
    assert (tmp_path / "exp" / "1" / "saved_model.pb").exists() and "SavedModel" in out
    # an export carries no normalization.json: Table 2 would not be the run's
    assert_one_line_error(cli("evaluate", "--model", tmp_path / "exp", "--records", records,
                              "--out", tmp_path / "ev2", "--mc", 2), "normalization.json")


def test_import_torch_writes_a_run_that_predicts_like_the_torch_network(tmp_path):
    torch = pytest.importorskip("torch")
    from apnet_tf.model.loading import load_model
    from apnet_tf.model.torch_reference import apnet_network

    torch.manual_seed(0)
    net = apnet_network().eval()
    torch.save(net.state_dict(), tmp_path / "net.pt")
    # the paper's own network has Net I's keys: reading it as apnet is asked for explicitly
    out = _ok(cli("import-torch", tmp_path / "net.pt", "--out", tmp_path / "run",
                  "--arch", "apnet", "--force-arch", "--mean", "4500,2.5,-0.1",
                  "--std", "800,1.2,0.3"))
    assert "wrote" in out
    flux = np.random.default_rng(0).uniform(0.5, 1.5, (2, 8575)).astype("float32")
    loaded = load_model(str(tmp_path / "run"))
    scaled = loaded.model.get_layer("flux_scaling")(flux).numpy()
    with torch.no_grad():
        z = net(torch.from_numpy(scaled[:, None, :])).numpy()
    expect = z * np.array([800, 1.2, 0.3]) + np.array([4500, 2.5, -0.1])
    np.testing.assert_allclose(loaded.predict(flux), expect, rtol=1e-3, atol=1e-3)
    assert_one_line_error(cli("import-torch", tmp_path / "net.pt", "--out", tmp_path / "r2",
                              "--arch", "apnet", "--std", "1,2"), "--std")


def test_make_labels_writes_the_payne_labels(tmp_path):
    payne = tmp_path / "payne.csv"
    payne.write_text("APOGEE_ID,TEFF,LOGG,FE_H\n2M1,4800,2.5,-0.2\n2M2,5200,3.1,0.1\n")
    out = _ok(cli("make-labels", "--payne", payne, "--out", tmp_path / "labels.csv"))
    assert "wrote the labels of 2 stars to" in out
    labels = pd.read_csv(tmp_path / "labels.csv")
    assert sorted(labels.APOGEE_ID) == ["2M1", "2M2"] and set(labels.CATEGORY) == {"payne"}


def test_infer_mask_bits_reach_the_reader(trained_run, apstar_files, tmp_path):
    from apnet_tf.data.planning import plan_units
    from apnet_tf.data.pool import iter_units

    files = [str(f) for f in apstar_files[:3]]  # real DR13 files: their PIXMASK uses many bits
    units = plan_units(files, 8, None, None).units
    bad = {bits: sum(int(b.bad.sum()) for _, b, _ in iter_units(units, 0, bits))
           for bits in ((1,), (0, 1, 2, 3, 4, 5, 6))}
    assert bad[(1,)] < bad[(0, 1, 2, 3, 4, 5, 6)]
    cats = {}
    for bits in ("1", None):
        extra = ["--mask-bits", bits] if bits else []
        # the raw Monte Carlo sigma: a calibration's floor can hide its difference (424 K
        # against 0.002 K for this briefly trained model)
        _ok(cli("infer", "--model", trained_run, "--spectra", *files, "--out",
                tmp_path / f"{bits}.csv", "--mc", 8, "--seed", 0, "--workers", 0, "--raw-sigma",
                *extra))
        cats[bits] = pd.read_csv(tmp_path / f"{bits}.csv", comment="#")
    # the Monte Carlo spares bad pixels: other bits, other sigmas
    assert not np.allclose(cats["1"].TEFF_ERR, cats[None].TEFF_ERR)
    assert_one_line_error(cli("infer", "--model", trained_run, "--spectra", *files, "--out",
                              tmp_path / "x.csv", "--mask-bits", "zero"), "--mask-bits")


def test_old_spellings_are_read_for_one_release_with_a_note(tmp_path):
    """One name per idea: ``--arch appendix-b`` is now ``apnet``, and a calibration.json or a
    weight sidecar written under the old names still loads."""
    torch = pytest.importorskip("torch")
    from apnet_tf.model.torch_reference import apnet_network

    torch.manual_seed(0)
    torch.save(apnet_network().eval().state_dict(), tmp_path / "net.pt")
    res = cli("import-torch", tmp_path / "net.pt", "--out", tmp_path / "run", "--arch",
              "appendix-b", "--force-arch")
    assert res.exit_code == 0, res.output
    assert "--arch appendix-b is now --arch apnet" in res.stderr
    assert "(--arch apnet)" in res.stdout
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["arch"] == "apnet"
    # an older sidecar names the layout appendix-b
    (tmp_path / "net.pt.json").write_text(json.dumps(
        {"format": 1, "arch": "appendix-b", "input_scaling": "none", "mean": [4500, 2.5, -0.1],
         "std": [800, 1.2, 0.3]}))
    res = cli("import-torch", tmp_path / "net.pt", "--out", tmp_path / "run2")
    assert res.exit_code == 0, res.output
    assert "(--arch apnet, input scaling none" in res.stdout


def test_a_calibration_written_with_the_old_key_loads(tmp_path):
    from apnet_tf.model.calibration import Calibration

    keys = KEYS
    d = {"noise": {k: [1.0, 1.0, 1.0] for k in keys}, "floor": {k: [0.0, 0.0, 0.0] for k in keys},
         "snr_factor": {k: [[1.0] * 3] * 3 for k in keys}, "snr_edges": [50.0, 100.0],
         "stars": {k: 10 for k in keys}, "shape_split": "train", "realizations": 20, "seed": 0,
         "dev_stars": 10, "coverage_dev_raw": [0.5] * 3, "coverage_dev_calibrated": [0.68] * 3,
         "targets": ["teff", "logg", "fe_h"], "format": "apnet-tf calibration 3"}
    assert Calibration.from_dict(d).mc == 20
