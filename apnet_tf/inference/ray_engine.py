"""Ray Data as the engine of ``infer --engine ray``: the same catalog as the local engine,
spread over a Ray cluster.

The plan is the local one (``planning.plan_units``): each unit (up to ``batch_size`` FITS files,
or one record shard) is one row of a Ray dataset. Read tasks turn a unit into its batch (their
function, ``readers.read_pickled_unit``, imports no TensorFlow, so a reader process starts at
once); actors that load the model once predict it, two batches at a time (Monte Carlo inside the
actor, seeded by (seed, unit), so the sigmas equal the local engine's for the same seed), and
return its catalog part. The spectra go from readers to actors through the object store; the
driver receives only catalog parts. An actor
that dies is restarted and its unit retried; parts are keyed by unit, so no row is lost or
written twice. The driver gathers the parts in unit order and, with a work folder, keeps each
finished part, so a killed job resumes as the local one does.

Needs ``pip install 'apnet-tf[ray]'``; the model and the inputs must be readable at the same
paths on every node (a shared file system).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
from collections.abc import Callable, Sequence

from apnet_tf.data.planning import Unit, plan_units
from apnet_tf.data.readers import read_pickled_unit
from apnet_tf.errors import ApnetError
from apnet_tf.inference import workdir as wd
from apnet_tf.inference.parts import catalog_from_parts, unit_part
from apnet_tf.inference.photometry_join import check_plan
from apnet_tf.inference.predict import InferenceResult, job_precision
from apnet_tf.inference.settings import InferenceSettings
from apnet_tf.io.survey_table import Listing
from apnet_tf.model.loading import load_model
from apnet_tf.model.runtime import Runtime

__all__ = ["Predictor", "predict_catalog_ray"]


def _ray():
    try:
        import ray
    except ImportError:
        raise ApnetError("--engine ray needs Ray Data: pip install 'apnet-tf[ray]'") from None
    return ray


class Predictor:
    """A Ray actor: loads the model once, then turns batches into catalog parts under the
    job's settings (their seed the one the job draws with, their precision the one it runs)."""

    def __init__(self, model: str, settings: InferenceSettings):
        self.model = load_model(model, calibration=settings.calibrated is not False
                                ).in_precision(settings.precision)
        self.settings = settings

    def __call__(self, rows: dict) -> dict:
        parts = []
        for key, payload in zip(rows["key"], rows["batch"]):
            batch, failures = pickle.loads(payload)
            part = unit_part(self.model, batch, failures, self.settings, int(key))
            parts.append(pickle.dumps(part, protocol=5))
        return {"key": rows["key"], "part": parts}


def predict_catalog_ray(model: str, inputs: Sequence[str], settings: InferenceSettings, *,
                        listing: Listing | None = None, address: str | None = None,
                        actors: int | None = None, work_dir: str | None = None,
                        on_progress: Callable[[int, int], None] | None = None,
                        predictor: type = Predictor,
                        loaded: Runtime | None = None) -> InferenceResult:
    """``inference.predict.predict_settings`` on Ray Data: same settings, same catalog.

    Args:
        model: the model's path (every node loads it from there).
        settings: as the local engine's, but for ``mask_bits`` (FITS inputs are read with the
            default bits); precision "auto" is decided once, here, on the job's first spectra
            (``predict.job_precision``), and every actor computes in what it chose.
        address: the Ray cluster ("auto", "ray://host:10001", ...); None joins the cluster this
            process already belongs to, or starts a local Ray instance.
        actors: model actors; default one per GPU of the cluster, else one per 4 CPUs.
        predictor: the actor class (tests pass one that dies once).
        loaded: ``model`` as the caller loaded it (``run_infer`` has), so that this process
            does not load it a second time; None loads it.
    """
    ray = _ray()
    if settings.mask_bits is not None:  # the read tasks read with the default bits
        raise ApnetError("--mask-bits works with --engine local only")
    if loaded is None:
        loaded = load_model(model, calibration=settings.calibrated is not False)
    settings = settings.for_model(loaded)
    plan = plan_units(inputs, settings.batch_size, settings.split_filter, listing,
                      instrument=loaded.instrument)
    check_plan(plan, settings.photometry if loaded.takes_photometry else None)
    loaded, line = job_precision(loaded, plan, settings.precision,
                                 photometry=settings.photometry)
    job = dataclasses.replace(settings, precision=loaded.precision)
    seed = (wd.prepare(work_dir, loaded, plan, job.fingerprint()) if work_dir
            else wd.new_seed(settings.seed))
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING,
                 runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}})
    parts = {u.key: wd.load_part(work_dir, u.key) for u in plan.units if work_dir
             and wd.has_part(work_dir, u.key)}
    todo = [u for u in plan.units if u.key not in parts]
    done = sum(_size(parts[k]) for k in parts)
    for key, part in _run(ray, todo, model, dataclasses.replace(job, seed=seed), actors,
                          predictor):
        if work_dir:
            wd.save_part(work_dir, key, part)
        parts[key] = part
        done += _size(part)
        if on_progress:
            on_progress(min(done, plan.total), plan.total)
    failures = list(plan.failures)
    ordered = []
    for unit in plan.units:
        part = dict(parts[unit.key])
        failures.extend(str(f) for f in part.pop("_failures"))
        if part:
            ordered.append(part)
    return InferenceResult(catalog_from_parts(ordered, failures, loaded, settings.mc,
                                              mc_bad_pixels=settings.mc_bad_pixels), failures,
                           notes=list(plan.notes), precision=line)


def _size(part: dict) -> int:
    return len(part.get("FILE", ())) + len(part.get("_failures", ()))


def _run(ray, units: list[Unit], model: str, settings: InferenceSettings, actors: int | None,
         predictor):
    """Yield (unit key, part) as the cluster finishes them."""
    if not units:
        return
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    n = actors or (gpus if gpus else max(1, int(resources.get("CPU", 1)) // 4))
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = ctx.print_on_execution_start = False  # infer shows progress
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # set after ray.data's own set-up
    items = [{"key": u.key, "unit": pickle.dumps(u)} for u in units]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    # Reading is light next to the model: a fraction of a CPU per read task lets them run
    # beside actors that hold every CPU of a small cluster.
    ds = ds.map(read_pickled_unit, num_cpus=0.25)
    # Ray Data restarts a dead actor and retries its batch by default (max_restarts=-1,
    # max_task_retries=-1); the parts are keyed by unit, so a retry cannot duplicate rows.
    # Two batches per actor at once: while one is in the model (TensorFlow releases the GIL),
    # the other is unpickled, flagged and pickled, so the actor's cores do not wait on Python.
    pool = ray.data.ActorPoolStrategy(size=min(n, len(units)), max_concurrent_calls_per_actor=2,
                                      enable_true_multi_threading=True)
    ds = ds.map_batches(predictor, batch_size=1, compute=pool,
                        num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1,
                        fn_constructor_args=(os.path.abspath(model), settings))
    for row in ds.iter_rows():
        yield int(row["key"]), pickle.loads(row["part"])
