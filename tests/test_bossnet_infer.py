"""APOGEE Net III and BOSS Net from their authors' weight folder to a catalog, against golden
outputs of the authors' own code (tests/golden/*_golden.json, bench/golden_bossnet.py).

The seeded stand-in weights of the goldens (``bossnet_fixtures``) are saved the way the authors
ship theirs, a folder of ten ``model_chunk_*`` byte chunks; ``apnet-tf import-torch FOLDER --arch
anet3|bossnet`` makes the run folder and ``apnet-tf infer`` the catalog, on every real apStar file
in ../shared/data (24 DR13, 2 DR17) and on the synthetic BOSS spec files of the goldens. Plain
values within 1 K, 0.002 dex, 0.001 dex, 0.1 km/s (and 1e-4 of each label's spread); the Monte
Carlo, fed the goldens' draws (the package's stateless generator, with each star's row of the
golden set: ``bossnet_mc.star_seed`` is pointed at it), within ``MC_TOL`` of the authors' sigmas.

The exports (SavedModel, TFLite float32 and float16) of the full networks are slow; the export
paths themselves run fast on a small network (``test_bossnet_export.py``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from bossnet_fixtures import (
    BOSS_SPECS,
    apply_recipe,
    seeded_state,
    state_fingerprint,
    write_boss_spec,
)
from cli_helpers import cli
from conftest import DATA

torch = pytest.importorskip("torch")

GOLDEN = Path(__file__).parent / "golden"
BAR = (1.0, 0.002, 0.001, 0.1)  # K, dex, dex, km/s: the bar for plain values
SPREAD_TOL = 1e-4
MC_TOL = 1e-3  # relative (the issue asks 1%; they agree to 1e-5)
#: The stars of the Monte Carlo through infer: a DR13 single-visit file and both DR17 files
#: (NaN bad pixels); every BOSS file (NaN flux, ivar 0, negative ivar).
FEW = {"anet3": [2, 24, 25], "bossnet": [0, 1, 2, 3]}
COLUMNS = ("TEFF", "LOGG", "FE_H", "RV")


def _golden(arch: str) -> dict:
    return json.loads((GOLDEN / f"{arch}_golden.json").read_text())


def write_chunks(arch: str, folder: Path) -> Path:
    """The goldens' stand-in weights in their authors' layout: one torch.save file cut into
    ``model_chunk_0 .. model_chunk_9`` (bossnet/chop_model.py's rule)."""
    from apnet_tf.model.bossnet_weights import bossnet_shapes

    recipe = _golden(arch)["weights"]
    state = apply_recipe(seeded_state(bossnet_shapes(arch), recipe["seed"]), recipe)
    assert state_fingerprint(state) == recipe["fingerprint"]
    buffer = io.BytesIO()
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, buffer)
    blob, n = buffer.getvalue(), 10
    folder.mkdir(parents=True)
    size = len(blob) // n
    for i in range(n):
        (folder / f"model_chunk_{i}").write_bytes(blob[i * size:(i + 1) * size if i < n - 1
                                                        else len(blob)])
    (folder / "model_args.yaml").write_text(f"num_targets: {3 if arch == 'anet3' else 4}\n")
    return folder


def ok(res) -> str:
    assert res.exit_code == 0, res.output
    return res.stdout


@pytest.fixture(scope="module")
def anet3_files() -> list[Path]:
    paths = [DATA / s["file"] for s in _golden("anet3")["spectra"]]
    if not all(p.exists() for p in paths):
        pytest.skip(f"real apStar files not found under {DATA}")
    return paths


@pytest.fixture(scope="module")
def boss_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("boss_spec")
    for k, spec in enumerate(BOSS_SPECS):
        write_boss_spec(folder / spec[0], k)
    return folder


@pytest.fixture(scope="module")
def anet3_run(tmp_path_factory) -> Path:
    """import-torch of the chunk folder, astra's conventions (the default)."""
    base = tmp_path_factory.mktemp("anet3")
    chunks = write_chunks("anet3", base / "model_apogee")
    out = ok(cli("import-torch", chunks, "--arch", "anet3", "--out", base / "run"))
    assert out == f"wrote {base / 'run' / 'best.keras'} (--arch anet3, astra conventions)\n"
    return base / "run"


@pytest.fixture(scope="module")
def bossnet_run(tmp_path_factory) -> Path:
    """import-torch of the chunk folder, the authors' repository's conventions; --arch left
    out: the folder's four outputs say BOSS Net."""
    base = tmp_path_factory.mktemp("bossnet")
    chunks = write_chunks("bossnet", base / "model_boss")
    out = ok(cli("import-torch", chunks, "--convention", "hutchresearch", "--out",
                 base / "run"))
    assert out == (f"wrote {base / 'run' / 'best.keras'} (--arch bossnet, hutchresearch "
                   "conventions)\n")
    return base / "run"


def test_the_run_records_the_conventions(anet3_run, bossnet_run):
    from apnet_tf.model.bossnet_conventions import conventions, training_range

    for run, arch, conv in ((anet3_run, "anet3", "astra"),
                            (bossnet_run, "bossnet", "hutchresearch")):
        record = json.loads((run / "run.json").read_text())
        assert record["arch"] == arch and record["conventions"] == conventions(arch, conv)
        assert record["source"].endswith("model_apogee" if arch == "anet3" else "model_boss")
        norm = json.loads((run / "normalization.json").read_text())
        assert (norm["min"], norm["max"]) == tuple(map(list, training_range(arch)))
    low, high = training_range("bossnet")  # 10**(3.8 + 0.1 x PNMIN) K .. 10**5 K
    assert low[0] == pytest.approx(1470.65, abs=0.01) and high[0] == pytest.approx(1e5, rel=1e-9)


def _catalog(path: Path) -> Table:
    return Table.read(path, format="ascii.ecsv")


def _expect(golden: dict, rows, convention: str, key: str) -> np.ndarray:
    """Golden (rows, P) in the package's order and units (Teff K from log10 Teff)."""
    net = np.array([golden["spectra"][k][convention][key] for k in rows], float)
    out = net[:, [1, 0, 2, 3][:net.shape[1]]]
    out[:, 0] = 10.0 ** out[:, 0]
    return out


def _rows(cat: Table, golden: dict) -> list[int]:
    """The golden row of each catalog row, by file name."""
    names = [Path(s["file"]).name for s in golden["spectra"]]
    return [names.index(Path(str(f)).name) for f in cat["FILE"]]


def assert_plain(cat: Table, golden: dict, convention: str) -> None:
    rows = _rows(cat, golden)
    expect = _expect(golden, rows, convention, "plain")
    got = np.stack([cat[c] for c in COLUMNS[:expect.shape[1]]], axis=1)
    spread = _expect(golden, range(len(golden["spectra"])), convention, "plain").std(axis=0)
    worst = np.abs(got - expect).max(axis=0)
    assert (worst <= BAR[:len(worst)]).all(), worst
    assert (worst / spread < SPREAD_TOL).all(), worst / spread


def test_infer_gives_the_authors_values_on_every_real_apstar_file(anet3_run, anet3_files,
                                                                  tmp_path):
    """--mc 0 on the 24 DR13 files (one of them single-visit) and the 2 DR17 files (NaN
    pixels), astra's conventions; its plain values are the repository's too."""
    out = tmp_path / "anet3.csv"
    folders = sorted({p.parent for p in anet3_files})
    ok(cli("infer", "--model", anet3_run, *[a for f in folders for a in ("--spectra", f)],
           "--out", out, "--mc", "0"))
    cat, golden = _catalog(out), _golden("anet3")
    assert len(cat) == 26 and sorted(_rows(cat, golden)) == list(range(26))
    assert_plain(cat, golden, "astra")
    assert_plain(cat, golden, "hutchresearch")
    assert (cat.meta["NETWORK"], cat.meta["CONVENTN"], cat.meta["MCVALUE"]) == (
        "anet3", "astra", "single pass")
    assert "RV" not in cat.colnames and "OBJECT_ID" not in cat.colnames


def test_infer_reads_an_spall_table_of_boss_files(bossnet_run, boss_folder, tmp_path):
    """--table: a CSV in spAll's spelling (FILE, and SDSS-V FIELD, MJD, CATALOGID); the
    catalog's id is OBJECT_ID (the CATALOGID), with SPEC_ID and RV."""
    table = tmp_path / "spall.csv"
    rows = ["FILE,FIELD,MJD,CATALOGID"] + [f"{name},,," for name, *_ in BOSS_SPECS]
    rows[1] = ",015000,59300,4510000001"  # the first by its SDSS-V identifiers
    table.write_text("\n".join(rows) + "\n")
    out = tmp_path / "boss.csv"
    ok(cli("infer", "--model", bossnet_run, "--table", table, "--root", boss_folder, "--out",
           out, "--mc", "0"))
    cat, golden = _catalog(out), _golden("bossnet")
    assert _rows(cat, golden) == [0, 1, 2, 3]  # the table's order
    assert_plain(cat, golden, "hutchresearch")
    assert list(cat["OBJECT_ID"]) == ["4510000001", "1", "4510000002", "596"]
    assert list(cat["SPEC_ID"]) == [name[5:-5] for name, *_ in BOSS_SPECS]
    assert cat.colnames[:3] == ["OBJECT_ID", "SPEC_ID", "RA"] and "APOGEE_ID" not in cat.colnames
    assert cat["RV"].unit == "km/s" and cat.meta["TARGETS"] == "teff,logg,fe_h,rv"


def _golden_draws(monkeypatch, rows) -> None:
    """Star i of a Monte Carlo call draws the goldens' normals of golden row ``rows[i]``: the
    package's generator under the goldens' seed, at that row (``fixed_draws``)."""
    import tensorflow as tf

    from apnet_tf.model import bossnet_mc, uncertainty

    key = tf.constant(uncertainty.stateless_seed(2028), tf.int64)
    table = tf.constant(rows, tf.int64)
    monkeypatch.setattr(bossnet_mc, "star_seed", lambda seed, index: uncertainty.star_seed(
        key, tf.gather(table, index)))


def _links(paths, folder: Path) -> Path:
    folder.mkdir()
    for p in paths:
        (folder / Path(p).name).symlink_to(p)
    return folder


@pytest.mark.parametrize("arch", ["anet3", "bossnet"])
def test_infer_mc_20_gives_the_authors_sigmas(arch, request, monkeypatch, tmp_path):
    """The catalog's sigmas, on the goldens' draws: APOGEE Net III under astra's conventions
    (its error model: 1.25 x the raw sigma + 10 K ..., as astra's catalog), BOSS Net under the
    repository's (the raw std, Teff's in K); P50 is the lower median of the draws."""
    golden = _golden(arch)
    if arch == "anet3":
        run, conv = request.getfixturevalue("anet3_run"), "astra"
        files = [request.getfixturevalue("anet3_files")[k] for k in FEW[arch]]
    else:
        run, conv = request.getfixturevalue("bossnet_run"), "hutchresearch"
        files = sorted(request.getfixturevalue("boss_folder").glob("spec-*.fits"))
    folder = _links(files, tmp_path / "in")
    rows = [[Path(s["file"]).name for s in golden["spectra"]].index(f.name)
            for f in sorted(folder.iterdir())]
    _golden_draws(monkeypatch, rows)
    out = tmp_path / "mc.csv"
    ok(cli("infer", "--model", run, "--spectra", folder, "--out", out, "--mc", "20"))
    cat = _catalog(out)
    assert _rows(cat, golden) == rows
    plain = _expect(golden, rows, conv, "plain")
    got = np.stack([cat[f"{c}_ERR"] for c in COLUMNS[:plain.shape[1]]], axis=1)
    if conv == "astra":
        expect = np.array([[golden["spectra"][k]["astra"]["catalog"][f"e_{c}"]
                            for c in ("teff", "logg", "fe_h")] for k in rows])
        assert cat.meta["SIGMA"] == "astra error model"
    else:
        expect = _expect(golden, rows, conv, "mc_std")
        expect[:, 0] = np.log(10.0) * plain[:, 0] * np.array(
            [golden["spectra"][k][conv]["mc_std"][1] for k in rows])
        assert cat.meta["SIGMA"] == "raw MC"
    np.testing.assert_allclose(got, expect, rtol=MC_TOL, atol=0)
    assert_plain(cat, golden, conv)  # the value is the un-noised pass
    median = np.stack([cat[f"{c}_P50"] for c in COLUMNS[:plain.shape[1]]], axis=1)
    spread = _expect(golden, range(len(golden["spectra"])), conv, "plain").std(axis=0)
    worst = np.abs(median - _expect(golden, rows, conv, "mc_median")).max(axis=0) / spread
    assert (worst < SPREAD_TOL).all(), worst
    assert (cat.meta["MC"], cat.meta["MCVALUE"], cat.meta["MCBADPIX"]) == (
        20, "single pass", "noise")


def test_astra_flags_and_error_model_reach_the_catalog(anet3_run, anet3_files, tmp_path):
    """astra's result flags as APNET_FLAG bits 12-14 (BAD where astra's flag_bad is), on the
    goldens' own flags (one DR13 star has flag_unreliable_fe_h)."""
    from apnet_tf.io.catalog_flags import flag_value

    out = tmp_path / "flags.csv"
    ok(cli("infer", "--model", anet3_run, "--spectra", anet3_files[0].parent, "--out", out,
           "--mc", "0"))
    cat, golden = _catalog(out), _golden("anet3")
    astra = flag_value("ASTRA_UNRELIABLE_TEFF", "ASTRA_UNRELIABLE_LOGG", "ASTRA_UNRELIABLE_FE_H")
    for row, k in zip(cat, _rows(cat, golden)):
        theirs = golden["spectra"][k]["astra"]["catalog"]["result_flags"]
        ours = [int(row["APNET_FLAG"]) >> b & 1 for b in (12, 13, 14)]
        assert ours == [theirs >> b & 1 for b in (1, 2, 3)], (row["FILE"], theirs)
        assert not (int(row["APNET_FLAG"]) & astra) or row["BAD"]
