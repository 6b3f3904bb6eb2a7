"""Choosing the tf.distribute strategy and TensorFlow's CPU thread pools.

strategy:
    auto          MultiWorkerMirroredStrategy when TF_CONFIG is set, else MirroredStrategy
    mirrored      MirroredStrategy over all local GPUs (or the CPU when there is none)
    multi_worker  MultiWorkerMirroredStrategy (TF_CONFIG describes the cluster, see cluster.py)
    one_device    OneDeviceStrategy on the first GPU, or the CPU
"""

from __future__ import annotations

import os

import tensorflow as tf

from tfcyclegan.config import ConfigError
from tfcyclegan.runtime import cluster, private


def has_gpu() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def configure_cpu_threads(mode: str = "auto") -> str | None:
    """Sets TensorFlow's thread pools for a machine without a GPU; returns what it set, for the log.

    auto: two ops at a time (inter-op) on half the cores each (intra-op). A CycleGAN step has
    two independent chains most of the way (gen_g and gen_f, disc_a and disc_b), and one
    convolution on a 12x12 or 64x64 map does not keep every core busy, so two ops with one
    thread each beat TensorFlow's default (every core for each op) on a 2-core CPU
    (docs/performance.md). With a GPU, or mode
    "tensorflow", nothing is changed (None). Must run before TensorFlow's runtime starts;
    where it already has, the pools it has are kept (None).
    """
    if mode == "tensorflow" or has_gpu():
        return None
    cores = os.cpu_count() or 1
    inter, intra = (2, max(1, cores // 2)) if cores >= 2 else (1, 1)
    threading_cfg = tf.config.threading
    if (threading_cfg.get_inter_op_parallelism_threads(), threading_cfg.get_intra_op_parallelism_threads()) != (inter, intra):
        try:
            threading_cfg.set_inter_op_parallelism_threads(inter)
            threading_cfg.set_intra_op_parallelism_threads(intra)
        except RuntimeError:  # the runtime has started (a second Trainer in one process, a test)
            return None
    return f"{inter} ops at a time, {intra} thread{'s' if intra > 1 else ''} each (--cpu_threads={mode}, {cores} cores)"


def make_strategy(name: str = "auto", *, timeout: float | None = None) -> tf.distribute.Strategy:
    """The strategy `name` (see the module docstring); validates TF_CONFIG first.

    timeout: --worker_timeout in seconds, or None (see `worker_timeout`).
    Create it before any other TensorFlow work: multi-worker collectives are configured at
    program start-up.
    """
    raw_tf_config = os.environ.get("TF_CONFIG", "").strip()
    if name == "auto":
        name = "multi_worker" if raw_tf_config else "mirrored"
    if name not in ("multi_worker", "one_device", "mirrored"):
        raise ConfigError(f"Unknown strategy {name!r}: use auto, mirrored, multi_worker or one_device.")
    tf_config = cluster.validated_tf_config(raw_tf_config) if raw_tf_config else None
    if name != "multi_worker":
        if tf_config is not None and cluster.task_count(tf_config["cluster"]) > 1:
            raise ConfigError(
                f"TF_CONFIG describes a cluster (this process: {cluster.describe(tf_config)}), but --strategy={name} trains "
                "alone and every process would write the same checkpoints. Use --strategy=multi_worker (or auto), "
                "or unset TF_CONFIG."
            )
        if name == "one_device":
            return tf.distribute.OneDeviceStrategy("/gpu:0" if has_gpu() else "/cpu:0")
        return tf.distribute.MirroredStrategy()

    seconds = cluster.worker_timeout(timeout)
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=seconds)
    if tf_config is None or cluster.task_count(tf_config["cluster"]) == 1:
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if seconds:
        private.bound_cluster_registration(tf_config["cluster"], cluster.JOBS, seconds)
    try:
        # Blocks until every worker of TF_CONFIG has connected.
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except tf.errors.DeadlineExceededError as e:
        if not seconds:
            raise
        raise cluster.ClusterError(
            f"Gave up after {seconds:.0f} s waiting for the other workers to start (this process is "
            f"{cluster.describe(tf_config)}). Start every worker of TF_CONFIG within {seconds:.0f} s of each other, "
            f"or raise --worker_timeout. ({str(e).splitlines()[0][:200]})"
        ) from e


def iterate(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset):
    """An iterator over `dataset` (global batches) to call next() on inside `strategy.run` loops.

    With several replicas, the strategy's distributed iterator (each replica its share, each
    worker its shard). With one, the dataset's own iterator: the distributed one prefetches on
    a thread of its own that competes with the step for the CPU, and one replica needs nothing
    it does.
    """
    if strategy.num_replicas_in_sync == 1:
        return iter(dataset)
    return iter(strategy.experimental_distribute_dataset(dataset))
