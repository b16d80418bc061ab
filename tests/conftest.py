"""Shared fixtures: the real APOGEE files (skipped when absent) and a small synthetic survey;
how pytest-xdist spreads the suite over worker processes (pyproject's addopts)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Real DR13 files; tests reach them through this relative path and skip when it is missing.
DATA = REPO.parent / "shared" / "data"
APSTAR_DIR = DATA / "apogee_dr13" / "apStar"
ASPCAP_LABELS = DATA / "apogee_dr13" / "aspcap_labels.csv"
#: What one pytest-xdist worker may come to hold: its modules' networks and TFLite conversions
#: (APOGEE Net III's full size among them) on top of TensorFlow and Ray.
WORKER_MEMORY = 10 * 2**30


#: The test files that build APOGEE Net III's and BOSS Net's full-size networks (72.6 M
#: parameters; exports, TFLite conversions, fit --arch anet3): one worker runs them all, one after
#: the other, so that two of them never hold their networks at once.
FULL_SIZE_FILES = ("test_bossnet.py", "test_bossnet_export.py", "test_bossnet_infer.py",
                   "test_fit_anet3.py")


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hooks: no error where it is absent
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` (pyproject's addopts) with ``FULL_SIZE_FILES`` as one work unit."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FullSizeTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return "full-size networks" if Path(path).name in FULL_SIZE_FILES else path

    return FullSizeTogether(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (pyproject's addopts): one worker per core, but no more than the machine's
    memory holds at ``WORKER_MEMORY`` each, and at least one; PYTEST_XDIST_AUTO_NUM_WORKERS, as
    pytest-xdist documents it, decides where it is set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count() or 1)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): cores decide
        return cores
    return max(1, min(cores, memory // WORKER_MEMORY))


@pytest.fixture(scope="session")
def apstar_files() -> list[Path]:
    files = sorted(APSTAR_DIR.glob("apStar-*.fits"))
    if not files:
        pytest.skip(f"real apStar files not found in {APSTAR_DIR}")
    return files


@pytest.fixture(scope="session")
def random_batches():
    """``make(n=64, seed=0)``: a tf.data.Dataset of random (flux (B, 8575), labels (B, 3)) batches
    of 16, labels in teff, logg, fe_h order inside the training ranges; for callback tests."""
    import numpy as np
    import tensorflow as tf

    def make(n: int = 64, seed: int = 0):
        rng = np.random.default_rng(seed)
        x = rng.uniform(50, 150, (n, 8575)).astype("float32")
        y = np.stack([rng.uniform(3000, 6000, n), rng.uniform(0, 5, n),
                      rng.uniform(-1, 0.3, n)], axis=1).astype("float32")
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)

    return make


def _survey(factory, name: str, n: int, seed: int) -> Path:
    from apnet_tf.data.synth import make_survey

    out = factory.mktemp(name)
    make_survey(str(out), n, seed=seed)
    return out


def _records(survey: Path, factory, name: str, shards: int) -> Path:
    from apnet_tf.data.records import make_records

    out = factory.mktemp(name)
    make_records([str(survey)], str(out), labels=str(survey / "labels.csv"), shards=shards)
    return out


@pytest.fixture(scope="session")
def survey(tmp_path_factory) -> Path:
    """A 150-star synthetic survey (FITS files + labels.csv), made once per session."""
    return _survey(tmp_path_factory, "survey", 150, 7)


@pytest.fixture(scope="session")
def records(survey, tmp_path_factory) -> Path:
    """Records of the synthetic survey, 2 shards per split."""
    return _records(survey, tmp_path_factory, "records", 2)


@pytest.fixture(scope="session")
def trained_run(records, tmp_path_factory) -> Path:
    """A run folder trained for a few epochs on the synthetic records (pretrain only)."""
    from apnet_tf.training.recipes import get_recipe
    from apnet_tf.workflows import fit

    run = tmp_path_factory.mktemp("run")
    fit(str(records), str(run), stage="pretrain", recipe=get_recipe("default", epochs=12))
    return run


@pytest.fixture(scope="session")
def small_survey(tmp_path_factory) -> Path:
    """A 16-star synthetic survey (12 train, 2 dev, 2 test) for the bad-input tests."""
    return _survey(tmp_path_factory, "small_survey", 16, 3)


@pytest.fixture(scope="session")
def small_records(small_survey, tmp_path_factory) -> Path:
    """Records of ``small_survey``, one shard per split."""
    return _records(small_survey, tmp_path_factory, "small_records", 1)


@pytest.fixture(scope="session")
def untrained_run(tmp_path_factory) -> Path:
    """A run folder with an untrained Appendix B model: for tests of loading, not of numbers."""
    import json

    from apnet_tf.model.network import build_model, save_model_atomic

    run = tmp_path_factory.mktemp("untrained_run")
    mean, std = [4700.0, 2.9, -0.2], [730.0, 1.2, 0.3]
    save_model_atomic(build_model(mean, std), str(run / "best.keras"))
    (run / "normalization.json").write_text(json.dumps(
        {"targets": ["teff", "logg", "fe_h"], "mean": mean, "std": std}))
    return run


@pytest.fixture(autouse=True, scope="module")
def _release_memory_after_each_module():
    """After a module, its models (APOGEE Net III's are 277 MiB each, their TFLite conversions
    several GB) are dropped and the freed memory handed back to the system, so the suite's peak
    is its largest module's, not the sum of them all; and a Ray runtime that the package
    started for a module's `--engine ray` job is shut down, so the next module that starts its
    own (tests/test_ray_engine.py, with its own settings) does not find one running."""
    yield
    import ctypes
    import gc
    import sys

    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
