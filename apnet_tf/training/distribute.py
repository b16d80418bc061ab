"""Where training runs: tf.distribute strategies, how workers share the data, which process
writes the run, and two workarounds for Keras 3.15 under MultiWorkerMirroredStrategy."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import tensorflow as tf

from apnet_tf.errors import ApnetError

__all__ = ["STRATEGIES", "get_strategy", "shard_policy", "build_for_multiworker", "is_chief"]

STRATEGIES = ("default", "mirrored", "multiworker")


def get_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy for ``--strategy``.

    ``mirrored`` uses every GPU, or every logical CPU device when there is no GPU (so it can be
    tested on a CPU split into logical devices). ``multiworker`` reads the cluster from TF_CONFIG.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ApnetError("--strategy multiworker needs the TF_CONFIG environment variable; "
                             "see the README's 'Scale out' section")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _patch_keras_multiworker_reduce()
        return strategy
    raise ApnetError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def _patch_keras_multiworker_reduce() -> None:
    """Work around Keras 3.15's fit under MultiWorkerMirroredStrategy (tensorflow#72388).

    Keras averages each step's logs across the workers with ``strategy.reduce("MEAN", v,
    axis=0)``, which fails on the scalar losses it logs ("Invalid reduction dimension 0 for input
    with 0 dimensions"). Scalars are averaged with ``axis=None`` (the all-reduce) instead; every
    other case is Keras's own. Installed once, only when a multi-worker strategy is made.
    """
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    if getattr(original, "apnet_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and isinstance(
                strategy, tf.distribute.MultiWorkerMirroredStrategy):
            def mean(v):
                rank = strategy.experimental_local_results(v)[0].shape.rank
                return strategy.reduce("MEAN", v, axis=0 if rank else None)
            return tree.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica.apnet_patched = True
    trainer.reduce_per_replica = reduce_per_replica


def shard_policy(dist: tf.distribute.Strategy) -> tf.data.experimental.AutoShardPolicy:
    """How the workers of a multi-worker run share the data: DATA, every worker reads every shard
    and keeps its own part of each global batch.

    FILE sharding (a worker per shard file) cannot work with fewer shard files than workers
    (make-records writes one per split by default), and with more it gives workers unequal
    numbers of batches (shards differ in size, more so after the label filter and the Payne
    draw), which synchronous training cannot run. One worker (default, mirrored): OFF.
    """
    policy = tf.data.experimental.AutoShardPolicy
    if isinstance(dist, tf.distribute.MultiWorkerMirroredStrategy):
        return policy.DATA
    return policy.OFF


def build_for_multiworker(model: keras.Model, dist: tf.distribute.Strategy) -> None:
    """Work around Keras 3.15 under MultiWorkerMirroredStrategy.

    Keras's fit and evaluate first reduce one input batch across the workers to build the model
    (``TensorFlowTrainer._maybe_symbolic_build``); this strategy cannot reduce an (x, y) pair and
    fails with "Attempt to convert a value (PerReplica...) to a Tensor". The model, its compiled
    loss and its optimizer are built here from zero inputs of the right shapes instead, and that
    step is switched off for this model (it only builds what is built already).
    """
    batch = (np.zeros((1, model.input_shape[-1]), np.float32), np.zeros((1, 3), np.float32))
    with dist.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def is_chief(strategy: str) -> bool:
    """Whether this process writes the run: always, except on the workers of a multi-worker
    cluster (TF_CONFIG) other than the chief (the "chief" task, else worker 0)."""
    if strategy != "multiworker":
        return True
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    if task.get("type") == "chief":
        return True
    return (task.get("type") == "worker" and int(task.get("index", 0)) == 0
            and "chief" not in config.get("cluster", {}))
