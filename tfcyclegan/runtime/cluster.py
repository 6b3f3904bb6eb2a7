"""Multi-worker runs: TF_CONFIG, the worker timeout, and keeping workers in step.

Multi-worker runs (TF_CONFIG) follow TensorFlow's multi-worker guide: every worker runs the
same command; the chief (task "chief", or "worker" 0 when there is no chief) writes the
checkpoints, summaries and samples; the others save into a scratch folder they delete, and
every worker resumes from the chief's `<workdir>/checkpoints`, so the workdir must be on
storage all machines share (NFS, GCS, ...) for a resume.

Failure handling:
- A malformed TF_CONFIG, or one that names this process wrongly (task not in the cluster,
  its port taken on this machine, its IP not an address of this machine): ConfigError
  before any work.
- A worker that dies: TensorFlow's coordination service misses its heartbeats and aborts the
  collectives of the others; `explain_cluster_errors` turns that into a ClusterError that
  names the lost worker and says how to resume.
- A worker that hangs, or never starts: everything that waits for other workers waits at
  most the worker timeout: the start-up (all workers connecting), a barrier before the
  model is built (`wait_for_workers`), the broadcast of the initial weights and the restore
  (`watchdog`: TensorFlow's broadcast has no timeout of its own), and every collective of
  training (all-reduce, all-gather). When TensorFlow's error does not name the lost worker
  (a timeout), the workers still alive meet at a short barrier, whose timeout names it.
  The worker timeout is --worker_timeout (TrainConfig.worker_timeout) when given, else
  $TFCYCLEGAN_WORKER_TIMEOUT (0 there = wait forever), else 600 s. It must exceed the
  longest time one worker can run ahead of another: a checkpoint write, the data loading,
  the first epoch's decode, the trace of the step.

The coordination service's barrier and abort have no public API: they are reached through
runtime/private.py.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import itertools
import json
import math
import os
import re
import socket
import threading

import tensorflow as tf

from tfcyclegan.config import ConfigError
from tfcyclegan.runtime import private

WORKER_TIMEOUT_ENV = "TFCYCLEGAN_WORKER_TIMEOUT"
DEFAULT_WORKER_TIMEOUT = 600.0
JOBS = ("chief", "worker")  # the task types MultiWorkerMirroredStrategy trains with
_SIGNALS = (None, "SIGINT", "SIGTERM")  # ordered: a SIGTERM anywhere wins
_CLUSTER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError)


class ClusterError(RuntimeError):
    """A multi-worker run lost a worker, timed out waiting for one, or its workers disagree."""


def worker_timeout(value: float | None = None) -> float | None:
    """Seconds a collective (or the start-up) may wait for other workers; None: forever.

    Precedence: `value` (--worker_timeout, i.e. TrainConfig.worker_timeout) when given, else
    $TFCYCLEGAN_WORKER_TIMEOUT when set (0 there = wait forever), else DEFAULT_WORKER_TIMEOUT.
    """
    if value is None:
        raw = os.environ.get(WORKER_TIMEOUT_ENV, "").strip()
        try:
            value = float(raw) if raw else DEFAULT_WORKER_TIMEOUT
        except ValueError:
            raise ConfigError(f"${WORKER_TIMEOUT_ENV} must be a number of seconds (0 = no timeout). Received: {raw!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"${WORKER_TIMEOUT_ENV} must be a finite number of seconds >= 0 (0 = no timeout). "
                              f"Received: {raw!r}")
        return value or None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"--worker_timeout must be a positive, finite number of seconds. Received: {value!r}")
    return float(value)


# -- TF_CONFIG ------------------------------------------------------------------------------------

_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}')


def task_count(cluster: dict) -> int:
    """Tasks in a TF_CONFIG cluster ({"worker": [...], "chief": [...]})."""
    return sum(len(tasks) for tasks in cluster.values())


def _split_address(address) -> tuple[str, int] | None:
    if not isinstance(address, str):
        return None
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def validated_tf_config(raw: str) -> dict:
    """Parses TF_CONFIG and checks that it describes a chief/worker cluster naming this task."""
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e}). Example: {_EXAMPLE}. Received: {raw[:200]!r}") from e
    if not isinstance(tf_config, dict) or not isinstance(tf_config.get("cluster"), dict) or not tf_config["cluster"]:
        raise ConfigError(f'TF_CONFIG needs a "cluster" object, e.g. {_EXAMPLE}. Received: {raw[:200]!r}')
    cluster = tf_config["cluster"]
    unsupported = sorted(set(cluster) - set(JOBS))
    if unsupported:
        raise ConfigError(
            f"TF_CONFIG cluster jobs must be {' and '.join(JOBS)} (MultiWorkerMirroredStrategy; no parameter "
            f"servers or evaluators). Received: {unsupported}"
        )
    seen = {}
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise ConfigError(f'TF_CONFIG cluster["{job}"] must be a non-empty list of "host:port". Received: {addresses!r}')
        for address in addresses:
            if _split_address(address) is None:
                raise ConfigError(f'TF_CONFIG cluster["{job}"] has an address that is not "host:port". Received: {address!r}')
            if address in seen:
                raise ConfigError(f"TF_CONFIG lists {address} twice ({seen[address]} and {job}): every task needs its own port.")
            seen[address] = job
    if len(cluster.get("chief", [])) > 1:
        raise ConfigError(f'TF_CONFIG may have one "chief". Received: {cluster["chief"]}')
    task = tf_config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ConfigError(f'TF_CONFIG needs "task": {{"type": ..., "index": ...}} naming this worker. Received: {raw[:200]!r}')
    index = task["index"]
    if task["type"] not in cluster or not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[task["type"]]):
        raise ConfigError(
            f"TF_CONFIG task {task} does not name a member of cluster {cluster}: task.type must be a key of "
            "cluster and task.index an integer within its list."
        )
    _check_own_address(task["type"], index, cluster[task["type"]][index])
    return tf_config


def _check_own_address(job: str, index: int, address: str) -> None:
    """The address TF_CONFIG gives this task must be usable here: its port free, its IP ours."""
    host, port = _split_address(address)
    who = f"TF_CONFIG names this process {job} {index} at {address}"
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None  # a host name: it may resolve to a service address, not ours, so trust it
    if literal is not None and not literal.is_loopback and not literal.is_unspecified:
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, 0))
            except OSError as e:
                if e.errno == errno.EADDRNOTAVAIL:
                    raise ConfigError(
                        f"{who}, but {host} is not an address of this machine: each machine needs its own "
                        "task.index (the position of its own address in the cluster list)."
                    ) from None
    # TensorFlow's server listens on all interfaces at that port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"{who}, but port {port} is already in use on this machine: another process was given the "
                    "same task, or an earlier run is still alive."
                ) from None
            raise


def describe(tf_config: dict) -> str:
    task = tf_config["task"]
    return f"{task['type']} {task['index']} of cluster {json.dumps(tf_config['cluster'])}"


def _cluster(strategy: tf.distribute.Strategy) -> dict:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None):
        return {}
    return resolver.cluster_spec().as_dict()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes checkpoints, summaries and samples."""
    cluster = _cluster(strategy)
    if not cluster:
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """Processes taking part in the training (1 without TF_CONFIG)."""
    cluster = _cluster(strategy)
    return max(1, sum(len(cluster.get(job, ())) for job in JOBS))


def task_name(strategy: tf.distribute.Strategy) -> str:
    """"worker 1", "chief 0", or "this process" when training alone."""
    if num_workers(strategy) == 1:
        return "this process"
    return f"{strategy.cluster_resolver.task_type} {strategy.cluster_resolver.task_id}"


# -- keeping the workers in step ------------------------------------------------------------------

def _gather_ints(strategy: tf.distribute.Strategy, value: int) -> list[int]:
    """`value` of every replica of every worker (a collective: all workers must call it)."""
    return [int(v) for v in _compiled_gather(strategy)(tf.constant(value, tf.int64)).numpy()]


@functools.lru_cache(maxsize=4)
def _compiled_gather(strategy: tf.distribute.Strategy):
    # Compiled once: an eager all-gather costs about 0.1 s a call, this about a millisecond.
    @tf.function
    def gather(value):
        return strategy.gather(strategy.run(lambda v: tf.reshape(v, [1]), args=(value,)), axis=0)

    return gather


def agreed_stop(strategy: tf.distribute.Strategy, local_signal: str | None) -> str | None:
    """The stop signal any worker received ("SIGTERM" over "SIGINT"), or None.

    A preempted machine's worker gets SIGTERM alone; all must checkpoint at the same step and
    stop together, or the others would wait for it in the next all-reduce. Every worker calls
    this at the same points of the loop (once per compiled call: one tiny all-gather).
    """
    if num_workers(strategy) == 1:
        return local_signal
    code = _SIGNALS.index(local_signal) if local_signal in _SIGNALS else len(_SIGNALS) - 1
    return _SIGNALS[max(_gather_ints(strategy, code))]


def check_workers_agree(strategy: tf.distribute.Strategy, global_step: int, checkpoint_dir: str) -> None:
    """Raises ClusterError unless every worker restored the same global step."""
    if num_workers(strategy) == 1:
        return
    steps = _gather_ints(strategy, global_step)
    if len(set(steps)) > 1:
        raise ClusterError(
            f"The workers restored different checkpoints (global step per replica: {steps}); {task_name(strategy)} "
            f"sees step {global_step} in {checkpoint_dir}. Every worker resumes from the chief's checkpoints: put "
            "--workdir on storage all machines share (NFS, GCS, ...), or copy the chief's checkpoints there."
        )


def agree_on_overflow(optimizer, grads: list) -> list:
    """Makes every replica see non-finite gradients when any replica has them.

    Call in the replica context, on a LossScaleOptimizer's (scaled, not yet all-reduced)
    gradients, before `optimizer.apply`. Keras decides to skip a step from the local
    gradients; replicas that decide differently would either apply an all-reduced inf
    (MirroredStrategy: NaN weights) or leave the others waiting in an all-reduce they skip
    (MultiWorkerMirroredStrategy: a hang). One scalar all-reduce per optimizer and step.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return grads
    nonfinite_here = 1.0 - tf.cast(optimizer.check_finite(grads), tf.float32)
    nonfinite_anywhere = context.all_reduce(tf.distribute.ReduceOp.SUM, nonfinite_here)
    poison = tf.where(nonfinite_anywhere > 0, tf.constant(float("nan")), tf.constant(0.0))
    return [g if g is None else g + tf.cast(poison, g.dtype) for g in grads]


_TASK_NAME = re.compile(r"/job:(\w+)/replica:\d+/task:(\d+)")
_barrier_ids = itertools.count()  # every worker calls the barriers in the same order


def _tf_config_task() -> str | None:
    """"worker 1" when TF_CONFIG describes a cluster of several tasks, else None."""
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG", "") or "{}")
        if task_count(tf_config["cluster"]) < 2:
            return None
        return f"{tf_config['task']['type']} {tf_config['task']['index']}"
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _missing_tasks(message: str, own: str | None, *, unavailable: bool = False) -> list[str]:
    """The tasks TensorFlow names as lost in an error, as "worker 1", without `own`.

    Reads the names after "unhealthy" (the coordination service lost their heartbeats) and
    "timed out task names" (they did not reach a barrier), and, for an UnavailableError (a
    connection broke), the one after "remote target". Other task names in a message (who
    reported the error, who came first to a barrier, who relayed a timeout) are not lost ones.
    """
    names = []
    for marker in ("unhealthy", "timed out task names"):
        at = message.find(marker)
        if at >= 0:
            names += _TASK_NAME.findall(message[at:])
    if unavailable:
        names += re.findall(r"remote target /job:(\w+)/replica:\d+/task:(\d+)", message)
    return [n for n in dict.fromkeys(f"{job} {index}" for job, index in names) if n != own]


def wait_for_workers(strategy: tf.distribute.Strategy, what: str, timeout: float | None = None) -> None:
    """A barrier: returns once every worker called it, or raises DeadlineExceededError naming
    the ones that did not within the worker timeout. A no-op outside a multi-worker cluster.

    what: what the workers are about to do together, for the barrier's id ("build the model");
    timeout: --worker_timeout or None (see `worker_timeout`).
    """
    seconds = worker_timeout(timeout)
    if num_workers(strategy) == 1 or not seconds:
        return
    private.wait_at_barrier(f"tfcyclegan: {what} #{next(_barrier_ids)}", int(seconds * 1000))


@contextlib.contextmanager
def watchdog(strategy: tf.distribute.Strategy, what: str, timeout: float | None = None):
    """Aborts this worker's collectives when the block takes longer than the worker timeout.

    For work whose collectives have no timeout of their own: the broadcast of the initial
    weights, when the variables are created. The block then raises DeadlineExceededError
    with a message that says what it was waiting for. A no-op outside a multi-worker cluster.
    """
    seconds = worker_timeout(timeout)
    if num_workers(strategy) == 1 or not seconds:
        yield
        return
    def give_up():
        private.abort_collectives(
            tf.errors.DEADLINE_EXCEEDED,
            f"{task_name(strategy)} waited more than {seconds:.0f} s for the other workers to {what}",
        )

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _who_is_missing(seconds: float, own: str | None) -> list[str]:
    """After a collective failed without naming a lost worker (a timeout says nobody): the
    workers that do not reach a barrier within `seconds`.

    The workers still alive fail in the same collective at about the same time and come
    here; a hung or dead one does not, and the barrier's error names it. [] if all came (no
    worker is stuck: the timeout was too short) or if the cluster cannot answer.
    """
    if not private.has_coordination_service():
        return []
    try:
        private.wait_at_barrier(f"tfcyclegan: who is missing #{next(_barrier_ids)}", int(seconds * 1000))
    except tf.errors.OpError as e:
        return _missing_tasks(e.message or "", own)
    except Exception:  # noqa: BLE001 -- a diagnosis on the way out must not hide the real error
        return []
    return []


@contextlib.contextmanager
def explain_cluster_errors(checkpoint_dir: str, *, timeout: float | None = None):
    """Turns a collective aborted by a lost or stuck worker into a ClusterError that names the
    lost worker and says how to resume.

    Wrap the whole run, strategy creation included (the first collectives broadcast the
    initial weights). timeout: the run's worker timeout (see `worker_timeout`). Outside a
    multi-worker cluster (TF_CONFIG) errors pass unchanged.
    """
    try:
        yield
    except _CLUSTER_ERRORS as e:
        task = _tf_config_task()
        if task is None:
            raise
        message = e.message or ""
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        keys = ("unhealthy", "heartbeat", "deadline", "timed out", "timeout", "waited more than", "/job:", "socket",
                "connect")
        cause = " ".join(line for line in lines if any(k in line.lower() for k in keys))[:400] or lines[0][:400]
        seconds = worker_timeout(timeout)
        missing = _missing_tasks(message, task, unavailable=isinstance(e, tf.errors.UnavailableError))
        if not missing and seconds:
            missing = _who_is_missing(min(seconds / 2, 30.0), task)
        lost = f"lost {' and '.join(missing)}" if missing else "lost the other workers"
        latest = tf.train.latest_checkpoint(checkpoint_dir)
        raise ClusterError(
            f"{task} {lost} ({type(e).__name__}: {cause}). A worker died, hung, or lost its network; this one "
            "stops rather than wait forever (it waits at most "
            f"{'forever' if seconds is None else f'{seconds:.0f} s'}: --worker_timeout or ${WORKER_TIMEOUT_ENV}). "
            f"Restart every worker with the same command and TF_CONFIG to resume from "
            f"{latest or 'the start (no checkpoint yet)'}."
        ) from e
