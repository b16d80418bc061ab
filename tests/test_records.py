import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from apnet_tf.constants import N_PIXELS
from apnet_tf.data.dataset import make_dataset
from apnet_tf.data.manifest import read_manifest
from apnet_tf.data.records import make_records


def _collect(ds):
    out = {}
    for ex, y in ds:
        for k, v in ex.items():
            out.setdefault(k, []).append(v.numpy())
        out.setdefault("targets", []).append(y.numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def test_real_flux_and_error_decode_bit_for_bit(apstar_files, tmp_path):
    res = make_records([str(apstar_files[0].parent)], str(tmp_path), shards=3)
    assert res.failures == [] and len(res.written_shards) == 3
    got = _collect(make_dataset(str(tmp_path), features=None, batch_size=7))
    assert len(got["apogee_id"]) == 24
    for i, raw_id in enumerate(got["apogee_id"]):
        apogee_id = raw_id.decode()
        with fits.open(apstar_files[0].parent / f"apStar-r6-{apogee_id}.fits") as hdul:
            flux, err = (hdul[k].data if hdul[k].data.ndim == 1 else hdul[k].data[0]
                         for k in (1, 2))
            np.testing.assert_array_equal(got["flux"][i].view(np.uint32),
                                          flux.astype(np.float32).view(np.uint32))
            np.testing.assert_array_equal(got["err"][i].view(np.uint32),
                                          err.astype(np.float32).view(np.uint32))
            assert got["snr"][i] == pytest.approx(hdul[0].header["SNR"], rel=1e-6)
        assert got["bad"][i].sum() > 700
    # no label table: every record is unlabelled, and its targets are all NaN
    assert set(got["split"]) == {b"unlabeled"} and np.isnan(got["targets"]).all()


def test_manifest_counts_and_train_only_stats(records, survey):
    manifest = read_manifest(str(records))
    labels = pd.read_csv(survey / "labels.csv").replace(-9999.0, np.nan)
    from apnet_tf.data.labels import assign_split
    labels["SPLIT"] = [assign_split(i, c) for i, c in zip(labels.APOGEE_ID, labels.CATEGORY)]
    for split in ("train", "dev", "test"):
        for cat in ("payne", "mstar", "yso"):
            n = int(((labels.SPLIT == split) & (labels.CATEGORY == cat)).sum())
            assert manifest["counts"].get(split, {}).get(cat, 0) == n
    train = labels[labels.SPLIT == "train"]
    for k, col in enumerate(("TEFF", "LOGG", "FE_H")):
        assert manifest["target_stats"]["mean"][k] == pytest.approx(train[col].mean(), rel=1e-5)
        assert manifest["target_stats"]["std"][k] == pytest.approx(train[col].std(ddof=0),
                                                                   rel=1e-4)
    assert manifest["grid"] == {"crval1": 4.179, "cdelt1": 6e-06, "n_pixels": N_PIXELS,
                                "scale": "log10(lambda/Angstrom)"}
    assert manifest["targets"] == ["teff", "logg", "fe_h"]
    assert len(manifest["source_files"]) == 150 and manifest["schema_version"] == 1


def test_labels_and_masks_round_trip(records, survey):
    labels = pd.read_csv(survey / "labels.csv").set_index("APOGEE_ID")
    got = _collect(make_dataset(str(records), splits=["train", "dev", "test"], features=None))
    assert len(got["apogee_id"]) == 150
    for i, raw in enumerate(got["apogee_id"]):
        row = labels.loc[raw.decode()]
        expect = np.array([row.TEFF, row.LOGG, row.FE_H], dtype=np.float32)
        present = expect != -9999.0
        np.testing.assert_array_equal(got["label_mask"][i], present)
        np.testing.assert_array_equal(got["targets"][i][present], expect[present])
        assert np.isnan(got["targets"][i][~present]).all()
        assert got["category"][i].decode() == row.CATEGORY
    assert (~got["label_mask"]).any()  # the survey has a few -9999 labels


def test_filters_and_seeded_sample(records):
    payne = _collect(make_dataset(str(records), splits=["train"], categories=["payne"],
                                  features=["apogee_id", "category", "split"]))
    assert set(payne["category"]) == {b"payne"} and set(payne["split"]) == {b"train"}

    def draw(seed):
        got = _collect(make_dataset(str(records), splits=["train"], sample={"payne": 0.3},
                                    seed=seed, features=["apogee_id", "category"]))
        return {i for i, c in zip(got["apogee_id"], got["category"]) if c == b"payne"}, \
            {i for i, c in zip(got["apogee_id"], got["category"]) if c != b"payne"}

    a, others_a = draw(1)
    assert draw(1)[0] == a  # same seed, same stars
    b, others_b = draw(2)
    assert a != b  # a new seed draws new stars
    assert 0.1 < len(a) / len(payne["apogee_id"]) < 0.5
    n_other = sum(1 for s in _collect(make_dataset(
        str(records), splits=["train"], features=["category", "split"]))["category"]
        if s != b"payne")
    assert len(others_a) == len(others_b) == n_other  # other categories are kept whole


def test_resumable_and_atomic(survey, tmp_path):
    out = tmp_path / "rec"
    first = make_records([str(survey)], str(out), labels=str(survey / "labels.csv"), shards=2)
    assert len(first.written_shards) == 6
    before = {p: (out / p).read_bytes() for p in first.written_shards}
    # kill a run in the middle: the shard being written stays a .tmp and never looks whole
    os.remove(out / "dev-00001-of-00002.tfrecord")

    class Killed(Exception):
        pass

    def kill_after(done, total):
        if done >= 3:
            raise Killed

    with pytest.raises(Killed):
        make_records([str(survey)], str(out), labels=str(survey / "labels.csv"), shards=2,
                     on_progress=kill_after)
    assert not (out / "dev-00001-of-00002.tfrecord").exists()
    second = make_records([str(survey)], str(out), labels=str(survey / "labels.csv"), shards=2)
    assert second.written_shards == ["dev-00001-of-00002.tfrecord"]
    assert len(second.skipped_shards) == 5
    for p, data in before.items():
        assert (out / p).read_bytes() == data


def test_unreadable_file_is_skipped_and_reported(survey, tmp_path):
    src = tmp_path / "mixed"
    src.mkdir()
    files = sorted(survey.glob("*.fits"))[:5]
    for f in files:
        shutil.copy(f, src)
    (src / "apStar-broken.fits").write_bytes(files[0].read_bytes()[:5000])
    res = make_records([str(src)], str(tmp_path / "rec"), compress=True)
    assert len(res.failures) == 1 and "apStar-broken.fits" in res.failures[0]
    manifest = json.loads((tmp_path / "rec" / "manifest.json").read_text())
    assert manifest["counts"]["unlabeled"]["unlabeled"] == 5
    assert manifest["compression"] == "GZIP"
    got = _collect(make_dataset(str(tmp_path / "rec"), features=["flux", "err"]))
    assert got["targets"].shape == (5, 3) and got["flux"].shape == (5, N_PIXELS)
