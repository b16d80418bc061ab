"""--engine ray on a local Ray instance: the same catalog as the local engine, and a killed actor
retried with no row lost or duplicated."""

import os

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from apnet_tf.inference.predict import predict_catalog  # noqa: E402
from apnet_tf.inference.ray_engine import Predictor, predict_catalog_ray  # noqa: E402
from apnet_tf.inference.settings import InferenceSettings  # noqa: E402
from apnet_tf.model.loading import load_model  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2",
                                       "PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """18 synthetic FITS files and a record folder of 12 of them."""
    import keras

    from apnet_tf.data.records import make_records
    from apnet_tf.data.synth import make_survey
    from apnet_tf.model.network import build_model

    root = tmp_path_factory.mktemp("ray")
    make_survey(str(root / "fits"), 18, seed=21)
    make_records([str(root / "fits" / "*-2M0*.fits")], str(root / "rec"), shards=2)
    keras.utils.set_random_seed(3)
    (root / "run").mkdir()
    build_model([4500.0, 3.0, -0.3], [800.0, 1.0, 0.4]).save(root / "run" / "best.keras")
    return root


def test_ray_gives_the_local_catalog(local_ray, inputs):
    # FITS files and a record folder, Monte Carlo with a fixed seed: the draws of a batch come
    # from (seed, batch), wherever it runs, so even the sigmas match
    spectra = [str(inputs / "fits"), str(inputs / "rec")]
    kw = dict(mc=3, batch_size=5, seed=8)
    local = predict_catalog(load_model(str(inputs / "run")), spectra, **kw)
    far = predict_catalog_ray(str(inputs / "run"), spectra, InferenceSettings(**kw), actors=1)
    assert len(far.catalog) == len(local.catalog) > 18
    assert list(far.catalog["APOGEE_ID"]) == list(local.catalog["APOGEE_ID"])
    assert list(far.catalog["FILE"]) == list(local.catalog["FILE"])
    for col in ("TEFF", "TEFF_ERR", "LOGG_ERR", "FE_H_ERR"):
        np.testing.assert_allclose(far.catalog[col], local.catalog[col], rtol=1e-4)


def test_mask_bits_are_refused_as_the_ray_readers_would_not_use_them(inputs):
    from apnet_tf.errors import ApnetError

    with pytest.raises(ApnetError, match="--mask-bits works with --engine local only"):
        predict_catalog_ray(str(inputs / "run"), [str(inputs / "fits")],
                            InferenceSettings(mc=0, mask_bits=(0, 1)), actors=1)


def test_a_killed_actor_is_retried_without_losing_or_repeating_rows(local_ray, inputs, tmp_path):
    marker = str(tmp_path / "died")

    class DiesOnce(Predictor):
        def __call__(self, rows):
            if not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)  # the actor process dies in the middle of a batch
            return super().__call__(rows)

    res = predict_catalog_ray(str(inputs / "run"), [str(inputs / "fits")],
                              InferenceSettings(mc=0, batch_size=4), actors=1,
                              predictor=DiesOnce)
    assert os.path.exists(marker)
    files = sorted(str(p) for p in (inputs / "fits").glob("*.fits"))
    assert list(res.catalog["FILE"]) == files  # each file once, in order
    # and the plain predictions are the local engine's
    local = predict_catalog(load_model(str(inputs / "run")), [str(inputs / "fits")], mc=0)
    np.testing.assert_allclose(res.catalog["TEFF"], local.catalog["TEFF"], rtol=1e-5)


def test_read_tasks_start_without_importing_tensorflow(local_ray, inputs, monkeypatch):
    # A read task runs in a Ray worker process, which imports the module of the function it
    # unpickles; TensorFlow there cost each reader seconds of the CPUs the model needs.
    import subprocess
    import sys

    import cloudpickle

    shipped = []

    def capture(self, fn, *args, **kwargs):
        shipped.append(fn)
        raise KeyboardInterrupt  # stop before any work: only the function is wanted

    monkeypatch.setattr(ray.data.Dataset, "map", capture)
    with pytest.raises(KeyboardInterrupt):
        predict_catalog_ray(str(inputs / "run"), [str(inputs / "fits")], InferenceSettings(mc=0),
                            actors=1)
    code = ("import pickle, sys; pickle.loads(sys.stdin.buffer.read()); "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], input=cloudpickle.dumps(shipped[0]),
                         capture_output=True, check=True, env=os.environ).stdout
    assert out.strip() == b"False"


def test_an_actor_predicts_two_batches_at_once(local_ray, inputs, tmp_path):
    # while one batch is in the model, the next is unpickled, flagged and pickled: the calls
    # of one actor overlap, so its cores do not wait on Python between batches
    import time

    log = tmp_path / "calls"

    class Slow(Predictor):
        def __call__(self, rows):
            start = time.time()
            time.sleep(1.0)
            out = super().__call__(rows)
            with open(log, "a") as f:
                f.write(f"{start} {time.time()}\n")
            return out

    res = predict_catalog_ray(str(inputs / "run"), [str(inputs / "fits")],
                              InferenceSettings(mc=0, batch_size=6), actors=1, predictor=Slow)
    assert len(res.catalog) == 18
    spans = sorted(tuple(map(float, line.split())) for line in log.read_text().splitlines())
    assert len(spans) == 3
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))
