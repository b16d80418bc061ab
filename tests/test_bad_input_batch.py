"""Issue 21, item 3: a batch survives any single file. Whatever goes wrong with one file is a
reported, skipped file (exit 2) and the others go through; damaged resume parts are recomputed."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from cli_helpers import cli


def _good_files(small_survey, folder, n=4):
    folder.mkdir()
    files = sorted(small_survey.glob("apStar-*.fits"))[:n]
    for f in files:
        shutil.copy(f, folder)
    return files


def _bintable_apstar(src, dst):
    with fits.open(src) as hdul:
        hdus = [h.copy() for h in hdul]
    hdus[1] = fits.BinTableHDU.from_columns([fits.Column("FLUX", "E", array=np.ones(5))])
    fits.HDUList(hdus).writeto(dst)


def _empty_flux_apstar(src, dst):
    with fits.open(src) as hdul:
        hdus = [h.copy() for h in hdul]
    hdus[1] = fits.ImageHDU(np.zeros((0, 8575), ">f4"), header=hdus[1].header)
    fits.HDUList(hdus).writeto(dst)


def _scaled_apstar(src, dst):
    with fits.open(src) as hdul:
        hdus = [h.copy() for h in hdul]
    flux = np.asarray(hdus[1].data, float)
    hdus[1] = fits.ImageHDU(flux, header=hdus[1].header)
    hdus[1].scale("int16", bscale=float(flux.max()) / 30000, bzero=0.0)
    fits.HDUList(hdus).writeto(dst)


@pytest.mark.parametrize("maker,words", [(_bintable_apstar, ["apStar-odd.fits"]),
                                         (_empty_flux_apstar, ["apStar-odd.fits", "no data"])])
def test_infer_skips_one_odd_file_and_keeps_the_batch(small_survey, untrained_run, tmp_path,
                                                      maker, words):
    src = tmp_path / "in"
    files = _good_files(small_survey, src)
    maker(files[0], src / "apStar-odd.fits")
    out = tmp_path / "cat.csv"
    res = cli("infer", "--model", untrained_run, "--spectra", src, "--out", out, "--mc", "0")
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    skipped = [line for line in res.stderr.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 1 and all(w in skipped[0] for w in words), res.stderr
    assert len(Table.read(out, format="ascii.ecsv")) == len(files)


def test_make_records_skips_a_bintable_apstar(small_survey, tmp_path):
    src = tmp_path / "in"
    files = _good_files(small_survey, src)
    _bintable_apstar(files[0], src / "apStar-odd.fits")
    res = cli("make-records", "--spectra", src, "--out", tmp_path / "rec")
    assert res.exit_code == 2, res.output
    assert "apStar-odd.fits" in res.stderr and "Traceback" not in res.output


def test_a_scaled_apstar_is_read(small_survey, tmp_path):
    from apnet_tf.io.spectra import read_apstar

    src = sorted(small_survey.glob("apStar-*.fits"))[0]
    _scaled_apstar(src, tmp_path / "apStar-scaled.fits")
    got, want = read_apstar(tmp_path / "apStar-scaled.fits"), read_apstar(src)
    np.testing.assert_allclose(got.flux, want.flux, rtol=1e-3, atol=float(want.flux.max()) / 1e4)


def test_any_exception_of_one_file_is_a_skipped_file(small_survey, tmp_path, monkeypatch):
    from apnet_tf.data.planning import plan_units
    from apnet_tf.data.readers import read_fits_unit
    from apnet_tf.io import spectra

    src = tmp_path / "in"
    files = _good_files(small_survey, src)
    real = spectra._read_rows

    def flaky(path):
        if path.endswith(files[1].name):
            raise RuntimeError("something nobody expected")
        return real(path)

    monkeypatch.setattr(spectra, "_read_rows", flaky)
    unit = plan_units([str(src)]).units[0]
    batch, failures = read_fits_unit(unit)
    assert len(batch.flux) == len(files) - 1
    assert len(failures) == 1 and files[1].name in failures[0]
    assert "something nobody expected" in failures[0]


def test_a_dangling_link_is_a_skipped_file(small_survey, untrained_run, tmp_path):
    src = tmp_path / "in"
    files = _good_files(small_survey, src)
    os.symlink(tmp_path / "gone.fits", src / "apStar-link.fits")
    out = tmp_path / "cat.csv"
    res = cli("infer", "--model", untrained_run, "--spectra", src, "--out", out, "--mc", "0")
    assert res.exit_code == 2, res.output
    assert "apStar-link.fits" in res.stderr and "Traceback" not in res.output
    assert len(Table.read(out, format="ascii.ecsv")) == len(files)


def _killed_job(small_survey, untrained_run, tmp_path, mc: str):
    """An infer job on 4 files in batches of 2, run whole, then run again as a killed job would
    have left it: its parts in OUT.parts/. Returns (its CLI arguments, the catalog's TEFF, the
    parts folder)."""
    from apnet_tf.inference.predict import predict_catalog
    from apnet_tf.model.loading import load_model

    src = tmp_path / "in"
    _good_files(small_survey, src)
    out = tmp_path / "cat.csv"
    args = ["infer", "--model", untrained_run, "--spectra", src, "--out", out, "--mc", mc,
            "--seed", "3", "--batch-size", "2"]
    assert cli(*args).exit_code == 0
    first = np.asarray(Table.read(out, format="ascii.ecsv")["TEFF"])
    work = str(out) + ".parts"
    predict_catalog(load_model(str(untrained_run), calibration=False), [str(src)], mc=int(mc),
                    batch_size=2, seed=3, calibrated=False, work_dir=work)
    return args, first, work


def test_a_damaged_resume_part_is_recomputed(small_survey, untrained_run, tmp_path):
    from apnet_tf.data.planning import plan_units

    args, first, work = _killed_job(small_survey, untrained_run, tmp_path, "2")
    parts = sorted(p for p in os.listdir(work) if p.startswith("part-"))
    assert len(parts) == 2 and len(plan_units([str(tmp_path / "in")], 2).units) == 2
    with open(os.path.join(work, parts[0]), "r+b") as f:  # one of them is damaged
        f.seek(40)
        f.write(b"\x00" * 64)
    res = cli(*args)
    assert res.exit_code == 0, res.output
    again = np.asarray(Table.read(tmp_path / "cat.csv", format="ascii.ecsv")["TEFF"])
    np.testing.assert_allclose(again, first, rtol=1e-6)
    assert not os.path.exists(work)  # the catalog is written: its parts are gone


def _shift_parts(work: str, by: float) -> None:
    """Add ``by`` to every float array of every saved part: parts that, if reused, show it."""
    for name in sorted(os.listdir(work)):
        if name.startswith("part-"):
            path = os.path.join(work, name)
            with np.load(path, allow_pickle=True) as saved:
                part = {k: saved[k] + by if saved[k].dtype.kind == "f" else saved[k]
                        for k in saved.files}
            np.savez(path, **part)


@pytest.mark.parametrize("older", [False, True])
def test_parts_of_another_format_version_are_recomputed(small_survey, untrained_run, tmp_path,
                                                        older):
    """A part is reused only under the format version it was saved with: parts whose numbers
    were all moved by 1 come back in the catalog when their settings say the current
    version (the resume works), and are made again when they say an older one."""
    import json

    from apnet_tf.inference import workdir as wd

    args, first, work = _killed_job(small_survey, untrained_run, tmp_path, "0")
    _shift_parts(work, 1.0)
    settings = os.path.join(work, wd.SETTINGS)
    with open(settings) as f:
        saved = json.load(f)
    assert saved["format"] == wd.FORMAT_VERSION
    if older:
        with open(settings, "w") as f:
            json.dump(dict(saved, format=wd.FORMAT_VERSION - 1), f)
    res = cli(*args)
    assert res.exit_code == 0, res.output
    again = np.asarray(Table.read(tmp_path / "cat.csv", format="ascii.ecsv")["TEFF"])
    np.testing.assert_allclose(again, first if older else first + 1.0, rtol=1e-7)


def test_make_records_keys_shards_on_the_mask_bits(small_survey, tmp_path):
    out = tmp_path / "rec"
    assert cli("make-records", "--spectra", small_survey, "--out", out).exit_code == 0
    res = cli("make-records", "--spectra", small_survey, "--out", out, "--mask-bits", "0")
    assert res.exit_code == 0, res.output
    assert "0 already complete" in res.output, res.output


@pytest.mark.parametrize("command", ["infer", "evaluate"])
def test_a_shard_with_flipped_bytes_is_one_line_naming_it(small_survey, untrained_run, tmp_path,
                                                         command):
    from cli_helpers import assert_one_line_error

    records = tmp_path / "records"
    assert cli("make-records", "--spectra", small_survey, "--labels",
               small_survey / "labels.csv", "--out", records, "--shards", "1").exit_code == 0
    shard = next(records.glob("test-*.tfrecord"))
    data = bytearray(shard.read_bytes())
    for i in range(200, 264):
        data[i] ^= 0xFF
    shard.write_bytes(bytes(data))  # the same size: only a checksum sees it
    if command == "infer":
        res = cli("infer", "--model", untrained_run, "--spectra", records, "--out",
                  tmp_path / "cat.csv", "--mc", "0")
    else:
        res = cli("evaluate", "--model", untrained_run, "--records", records, "--out",
                  tmp_path / "eval", "--mc", "2")
    assert_one_line_error(res, shard.name, "checksum")


def _children(pid):
    out = []
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                with open(f"/proc/{stat}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(stat))
    return out


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")
def test_reader_processes_die_with_a_killed_parent(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "job.py"
    script.write_text(
        "import time\nfrom apnet_tf.data.pool import ordered_map\n"
        "if __name__ == '__main__':\n"
        "    it = ordered_map(time.sleep, [0.0, 120, 120, 120], 2)\n"
        "    next(it)\n    print('ready', flush=True)\n    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            cwd=str(tmp_path), env={**os.environ})
    assert proc.stdout.readline().strip() == "ready"
    children = _children(proc.pid)
    assert children
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(c) for c in children):
        time.sleep(0.2)
    left = [c for c in children if _alive(c)]
    for c in left:  # clean up what the test started
        os.kill(c, signal.SIGKILL)
    assert not left
