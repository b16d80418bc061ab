"""The notebook API with BOSS Net: ``predict_files(table=..., root=...)`` reads an spAll-like
table as ``apnet-tf infer --table --root`` does (``inference.job.table_listing``), with the same
rows, numbers and note on the rows whose file is missing. A small network of the authors'
layout (``test_bossnet_export.small_run``) on the synthetic BOSS spec files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from bossnet_fixtures import BOSS_SPECS, write_boss_spec
from cli_helpers import cli
from test_bossnet_export import small_run

import apnet_tf

MC, SEED = 3, 5
#: A row of the table whose spec file is not under the root.
ABSENT = "spec-3586-55181-0999.fits"


@pytest.fixture(scope="module")
def boss_job(tmp_path_factory) -> dict:
    """A small BOSS Net run, the four synthetic spec files and an spAll-like CSV naming them
    (the first by its SDSS-V identifiers) and one file that is not there."""
    base = tmp_path_factory.mktemp("api_boss")
    root = base / "spectra"
    root.mkdir()
    for k, spec in enumerate(BOSS_SPECS):
        write_boss_spec(root / spec[0], k)
    rows = ["FILE,FIELD,MJD,CATALOGID"] + [f"{name},,," for name, *_ in BOSS_SPECS]
    rows[1] = ",015000,59300,4510000001"
    rows.append(f"{ABSENT},,,")
    (base / "spall.csv").write_text("\n".join(rows) + "\n")
    return {"run": small_run("bossnet", "hutchresearch", base / "run"),
            "table": str(base / "spall.csv"), "root": str(root)}


def _values(col) -> np.ndarray:
    values = getattr(col, "value", col)
    if hasattr(values, "filled"):
        values = values.filled("" if values.dtype.kind in "OUS" else np.nan)
    return np.asarray(values)


def test_predict_files_reads_an_spall_table_as_infer(boss_job, tmp_path):
    """Fails on the old code: predict_files read every table as an allStar listing, so an
    spAll table was refused for want of APOGEE_ID/TELESCOPE/FIELD columns."""
    out = tmp_path / "cat.ecsv"
    res = cli("infer", "--model", boss_job["run"], "--table", boss_job["table"], "--root",
              boss_job["root"], "--out", out, "--mc", MC, "--seed", SEED, "--workers", 0)
    assert res.exit_code == 0, res.output
    written = Table.read(out, format="ascii.ecsv")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cat = apnet_tf.load(boss_job["run"]).predict_files(
            table=boss_job["table"], root=boss_job["root"], mc=MC, seed=SEED)
    assert len(cat) == 4 and cat.colnames == written.colnames
    assert list(cat["OBJECT_ID"]) == ["4510000001", "1", "4510000002", "596"]
    for name in cat.colnames:
        a, b = _values(cat[name]), _values(written[name])
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(a, b.astype(a.dtype), err_msg=name)
        else:
            assert a.astype(str).tolist() == b.astype(str).tolist(), name
    # the rows without a file: the same line as infer's, less the list beside the catalog
    missing = [str(w.message) for w in caught if ABSENT in str(w.message)]
    shown = [ln[len("note: "):] for ln in res.stderr.splitlines()
             if ln.startswith("note: ") and ABSENT in ln]
    assert len(missing) == 1 and len(shown) == 1, (missing, res.stderr)
    assert missing[0].startswith(f"{boss_job['table']}: 1 of 5 rows name no file under "
                                 f"{boss_job['root']} ({ABSENT})")
    assert shown[0] == f"{missing[0]}; all listed in {out}.missing.txt"


def test_boss_net_says_once_why_novelty_is_empty(boss_job, tmp_path):
    """BOSS spectra get no NOVELTY (it is measured on APOGEE spectra): one note on infer's
    stderr and one warning in a notebook say so, rather than nothing, or a calibration that
    would not fill the column."""
    files = [str(p) for p in sorted(Path(boss_job["root"]).glob("spec-*.fits"))]
    res = cli("infer", "--model", boss_job["run"], "--spectra", *files, "--out",
              tmp_path / "cat.csv", "--mc", 0)
    assert res.exit_code == 0, res.output
    line = f"{boss_job['run']}: NOVELTY is empty (NaN): it is measured on APOGEE spectra only"
    assert [ln for ln in res.stderr.splitlines() if "NOVELTY" in ln] == \
        [f"note: {line}, and BOSS Net reads BOSS spectra"], res.stderr
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cat = apnet_tf.load(boss_job["run"]).predict_files(files, mc=0)
    assert [str(w.message) for w in caught if "NOVELTY" in str(w.message)] == \
        [f"{line}, and BOSS Net reads BOSS spectra"]
    assert np.isnan(cat["NOVELTY"]).all() and "calibrate" not in res.stderr
