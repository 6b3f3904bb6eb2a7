"""Choosing the tf.distribute strategy and the precision policy.

strategy:
    auto          MultiWorkerMirroredStrategy when TF_CONFIG is set, else MirroredStrategy
    mirrored      MirroredStrategy over all local GPUs (or the CPU when there is none)
    multi_worker  MultiWorkerMirroredStrategy (TF_CONFIG describes the cluster)
    one_device    OneDeviceStrategy on the first GPU, or the CPU
precision:
    auto            mixed_float16 (with loss scaling) on a GPU, float32 on a CPU
    float32, mixed_float16, mixed_bfloat16
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from tfcyclegan.config import ConfigError


def has_gpu() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def resolve_precision(precision: str) -> str:
    if precision == "auto":
        return "mixed_float16" if has_gpu() else "float32"
    return precision


def _validated_tf_config(raw: str) -> dict:
    """Parses TF_CONFIG and checks that it names this worker within its cluster."""
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e}). Received: {raw[:200]!r}") from e
    if not isinstance(tf_config, dict) or not isinstance(tf_config.get("cluster"), dict):
        raise ConfigError(f'TF_CONFIG needs a "cluster" object, e.g. {{"cluster": {{"worker": ["host1:port", "host2:port"]}}, '
                          f'"task": {{"type": "worker", "index": 0}}}}. Received: {raw[:200]!r}')
    task = tf_config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ConfigError(f'TF_CONFIG needs "task": {{"type": ..., "index": ...}} naming this worker. Received: {raw[:200]!r}')
    jobs = tf_config["cluster"].get(task["type"])
    if not isinstance(jobs, list) or not isinstance(task["index"], int) or not 0 <= task["index"] < len(jobs):
        raise ConfigError(
            f"TF_CONFIG task {task} does not name a member of cluster {tf_config['cluster']}: "
            f"task.type must be a key of cluster and task.index within its list."
        )
    return tf_config


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    raw_tf_config = os.environ.get("TF_CONFIG")
    if name == "auto":
        name = "multi_worker" if raw_tf_config else "mirrored"
    if name == "multi_worker":
        if raw_tf_config:
            _validated_tf_config(raw_tf_config)
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if has_gpu() else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise ConfigError(f"Unknown strategy {name!r}: use auto, mirrored, multi_worker or one_device.")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes checkpoints, summaries and samples."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None) or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict())
