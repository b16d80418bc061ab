"""The calibration's subset (``calibration.subset``): stratified and seeded, read from as few
shards as it needs, capped whatever the size of the splits, recorded in calibration.json, and
its size option checked before any work."""

import json
import os
import shutil

import numpy as np
import pytest

from apnet_tf.calibration import subset as sub
from apnet_tf.calibration.fit import MIN_REGION_STARS, calibrate, check_per_stratum
from apnet_tf.constants import CALIBRATION_STARS_PER_STRATUM
from apnet_tf.data.manifest import MANIFEST, read_manifest, shard_paths
from apnet_tf.data.planning import plan_units
from apnet_tf.data.readers import read_record_labels, read_record_unit
from apnet_tf.errors import ApnetError
from apnet_tf.model.calibration import CALIBRATION, Calibration


def _stars(n_per_region=(12, 40, 300, 200), seed=0):
    """labels (N, 3) with n stars in each Kiel region (pms, cool_dwarf, giant, dwarf) and 5
    without a Teff label, and S/N (N,) spread over 10-300 (10 stars without S/N)."""
    rng = np.random.default_rng(seed)
    kiel = [(3500.0, 3.5), (3300.0, 4.9), (4800.0, 2.5), (5800.0, 4.3), (np.nan, 4.0)]
    labels = np.concatenate([np.tile([t, g, 0.0], (n, 1))
                             for (t, g), n in zip(kiel, list(n_per_region) + [5])])
    snr = rng.uniform(10, 300, len(labels))
    snr[rng.choice(len(labels), 10, replace=False)] = np.nan
    return labels, snr


def test_take_per_stratum_caps_each_stratum_and_keeps_every_one():
    labels, snr = _stars()
    stratum = sub.strata(labels, snr, sub.tercile_edges(snr))
    picked = sub.take_per_stratum(stratum, 30, np.random.default_rng(0))
    kinds, counts = np.unique(stratum, return_counts=True)
    got = dict(zip(*np.unique(stratum[picked], return_counts=True)))
    # every stratum with stars is there, with min(30, its stars): the rare pms stars all kept
    assert {k: min(30, c) for k, c in zip(kinds, counts)} == got
    assert len(np.unique(picked)) == len(picked)
    # seeded: the same seed the same stars, another seed others
    again = sub.take_per_stratum(stratum, 30, np.random.default_rng(0))
    other = sub.take_per_stratum(stratum, 30, np.random.default_rng(1))
    np.testing.assert_array_equal(picked, again)
    assert not np.array_equal(picked, other)
    # ALL_STARS: every star
    assert len(sub.take_per_stratum(stratum, sub.ALL_STARS, np.random.default_rng(0))) == \
        len(stratum)


def test_take_proportional_keeps_the_mix_and_every_stratum():
    labels, snr = _stars()
    stratum = sub.strata(labels, snr, sub.tercile_edges(snr))
    picked = sub.take_proportional(stratum, 100, np.random.default_rng(0))
    assert len(picked) == 100 and len(np.unique(picked)) == 100
    kinds, counts = np.unique(stratum, return_counts=True)
    got = dict(zip(*np.unique(stratum[picked], return_counts=True)))
    for k, c in zip(kinds, counts):  # each stratum: at least one star, else its share
        assert got.get(k, 0) >= 1
        assert abs(got[k] - 100 * c / len(stratum)) <= 2, k
    assert len(sub.take_proportional(stratum, None, np.random.default_rng(0))) == len(stratum)


def _repeated(records, out, times: int):
    """A record folder whose train split is ``records``' train shards ``times`` over (links to
    the same files), its dev and test those of ``records``: ``times`` x the training stars."""
    out.mkdir()
    manifest = read_manifest(str(records))
    names = manifest["shards"]["train"]
    new = [f"train-{i:05d}-of-{times * len(names):05d}.tfrecord"
           for i in range(times * len(names))]
    for name, src in zip(new, names * times):
        os.symlink(records / src, out / name)
        for key in ("shard_bytes", "shard_sha256"):
            manifest[key][name] = manifest[key][src]
    for split in ("dev", "test"):
        for name in manifest["shards"].get(split, []):
            os.symlink(records / name, out / name)
    manifest["shards"]["train"] = new
    manifest["counts"]["train"] = {k: v * times for k, v in manifest["counts"]["train"].items()}
    (out / MANIFEST).write_text(json.dumps(manifest))
    return out


def test_subset_reads_few_shards_and_its_size_does_not_grow_with_the_split(records, tmp_path):
    # 5 per stratum (calibrate takes at least 30): on this 150-star survey a stratum holds a
    # few stars, so 5 shows what 100 does on a survey of thousands
    small = sub.choose_subset(str(records), seed=0, per_stratum=5)
    big_dir = _repeated(records, tmp_path / "x20", 20)
    big = sub.choose_subset(str(big_dir), seed=0, per_stratum=5)
    n_train = sum(read_manifest(str(big_dir))["counts"]["train"].values())
    assert n_train == 20 * small.record["train_stars_read"]
    # the large split: only the shards the strata need are read, and the stars drawn are
    # capped (at most 5 per stratum of 20), however many the split holds
    assert big.record["train_stars_read"] < n_train / 2
    assert small.record["train_stars"] <= big.record["train_stars"] <= 20 * 5
    train_shards = sorted(p for p in big.rows if os.path.basename(p).startswith("train"))
    assert len(train_shards) < len(read_manifest(str(big_dir))["shards"]["train"]) / 2
    # every stratum with a region and an S/N is drawn, each with 5 stars
    got = [read_record_labels(p) for p in train_shards]
    labels = np.concatenate([g["labels"][big.rows[p]] for g, p in zip(got, train_shards)])
    snr = np.concatenate([g["snr"][big.rows[p]] for g, p in zip(got, train_shards)])
    kinds, per = np.unique(sub.strata(labels, snr, big.snr_edges), return_counts=True)
    assert per.max() <= 5 and len(kinds) >= 8
    assert (per[(kinds >= 4) & (kinds % 4 != 0)] == 5).all()
    # dev: at most DEV_STRATA strata's worth (5 x 5 = 25 stars); this survey's dev split holds
    # fewer, so every dev star is drawn
    n_dev = sum(read_manifest(str(big_dir))["counts"]["dev"].values())
    assert sub.DEV_STRATA * 5 == 25 and n_dev < 25
    assert big.record["dev_stars"] == big.record["dev_stars_read"] == n_dev
    # at 2 per stratum the cap (5 x 2 = 10) binds: 10 dev stars of the n_dev read
    capped = sub.choose_subset(str(big_dir), seed=0, per_stratum=2).record
    assert capped["dev_stars"] == sub.DEV_STRATA * 2 == 10 and capped["dev_stars_read"] == n_dev
    # seeded: the same subset again, another with another seed
    assert sub.choose_subset(str(big_dir), seed=0, per_stratum=5).rows == big.rows
    assert sub.choose_subset(str(big_dir), seed=1, per_stratum=5).rows != big.rows


def test_a_unit_with_rows_reads_only_those_records(records):
    shard = shard_paths(str(records), ["train"])[0]
    labels = read_record_labels(shard)["labels"]
    rows = [1, 4, len(labels) - 1]
    (unit,) = plan_units([str(records)], split_filter=("train",), rows={shard: rows}).units
    batch, _ = read_record_unit(unit)
    assert len(batch.snr) == 3 and batch.flux.shape == (3, 8575)
    np.testing.assert_array_equal(batch.labels, labels[rows])


def test_calibrate_caps_the_monte_carlo_and_records_its_subset(trained_run, records, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    big_dir = _repeated(records, tmp_path / "x20", 20)
    progress = []
    cal = calibrate(str(run), str(big_dir), mc=2, seed=3,
                    on_progress=lambda done, total: progress.append(total))
    n_train = sum(read_manifest(str(big_dir))["counts"]["train"].values())
    # the Monte Carlo ran over the subset only (the default: at most 150 per stratum)
    assert progress[-1] == cal.subset["train_stars"] + cal.subset["dev_stars"]
    assert cal.subset["train_stars"] < n_train
    assert cal.stars["all"] <= cal.subset["train_stars"] and cal.shape_split == "train"
    saved = json.loads((run / CALIBRATION).read_text())["subset"]
    assert saved["seed"] == 3 and saved["stars_per_stratum"] == CALIBRATION_STARS_PER_STRATUM
    # the same seed: the same calibration
    first = (run / CALIBRATION).read_text()
    calibrate(str(run), str(big_dir), mc=2, seed=3)
    assert (run / CALIBRATION).read_text() == first


@pytest.mark.parametrize("value", [1, MIN_REGION_STARS - 1, -1, 2.5, "many"])
def test_stars_per_stratum_is_checked_before_any_work(value, tmp_path):
    with pytest.raises(ApnetError, match=r"^--stars-per-stratum: must be 0 \(every star\) or "
                                         f"at least {MIN_REGION_STARS}"):
        check_per_stratum(value)
    # calibrate checks it before it looks at the run or the records
    with pytest.raises(ApnetError, match="--stars-per-stratum"):
        calibrate(str(tmp_path / "no-run"), str(tmp_path / "no-records"), per_stratum=value)
    assert check_per_stratum(0) == 0 and check_per_stratum(MIN_REGION_STARS) == MIN_REGION_STARS


def test_calibrate_command_checks_stars_per_stratum_first(untrained_run, small_records,
                                                         tmp_path):
    from cli_helpers import assert_one_line_error, cli, snapshot

    run = tmp_path / "run"
    shutil.copytree(untrained_run, run)
    before = snapshot(run)
    res = cli("calibrate", "--model", run, "--records", small_records,
              "--stars-per-stratum", "5")
    assert_one_line_error(res, "--stars-per-stratum", "at least 30")
    assert snapshot(run) == before


def test_a_calibration_json_without_subset_still_loads(tmp_path):
    from test_calibration import _dev_set

    from apnet_tf.calibration.fit import fit_calibration

    pred, sigma, labels, snr = _dev_set(n=50)
    d = fit_calibration(pred, sigma, labels, mc=100, seed=0, snr=snr).to_dict()
    del d["subset"]  # a file written before the subset
    assert Calibration.from_dict(d).subset is None
    with pytest.raises(ValueError, match="subset.seed must be a whole number"):
        Calibration.from_dict(dict(d, subset={"seed": -1}))
