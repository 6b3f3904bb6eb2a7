"""Every use of private TensorFlow, Keras and LiteRT API in tfcyclegan, and only here.

Each function below names the private symbol it uses, what it is for and why no public API
does it. `PRIVATE_SYMBOLS` lists them all; tests/runtime/test_private_api.py checks each one
against the installed versions and fails with a clear message when an upgrade removes one.
setup.cfg bounds tensorflow (< 2.22) and keras (< 3.16) for as long as this file is not empty.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# (where, name, what it is for). `where` is a module, or a class whose instances have `name`
# (Keras' Adam once built on a variable).
PRIVATE_SYMBOLS = (
    ("tensorflow.python.eager.context", "context", "the coordination service: barriers with a timeout, "
     "aborting collectives, bounding the cluster start-up"),
    ("tensorflow.python.eager.context.Context", "wait_at_barrier", "a barrier with a timeout across workers"),
    ("tensorflow.python.eager.context.Context", "abort_collective_ops", "the watchdog over the initial broadcast"),
    ("tensorflow.python.eager.context.Context", "configure_coordination_service", "a bounded cluster start-up"),
    ("tensorflow.python.eager.context.Context", "coordination_service", "whether a cluster is running"),
    ("tensorflow.compiler.xla.tsl.protobuf.coordination_config_pb2", "CoordinatedJob", "a bounded cluster start-up"),
    ("keras.optimizers.Adam", "_get_variable_index", "Adam's moment slots of a variable (the fused update)"),
    ("keras.optimizers.Adam", "_momentums", "the same"),
    ("keras.optimizers.Adam", "_velocities", "the same"),
    ("keras.optimizers.Adam", "_all_reduce_sum_gradients", "no all-reduce barrier with one replica"),
    ("ai_edge_litert.interpreter.Interpreter", "_get_ops_details", "which TFLite operators XNNPACK took"),
)


def _context():
    # tensorflow.python.eager.context: the coordination service has no public API.
    from tensorflow.python.eager import context

    return context.context()


# -- the coordination service (multi-worker runs) -------------------------------------------------


def has_coordination_service() -> bool:
    """Whether this process is part of a multi-worker cluster's coordination service."""
    return _context().coordination_service is not None


def wait_at_barrier(barrier_id: str, timeout_ms: int) -> None:
    """Blocks until every worker reached `barrier_id`; DeadlineExceededError naming the missing ones.

    Replaces: nothing public. tf.distribute has no barrier; a collective used as one waits
    forever for a dead worker and does not name it.
    """
    _context().wait_at_barrier(barrier_id, timeout_ms)


def abort_collectives(code: int, message: str) -> None:
    """Makes every pending and future collective of this process fail with `message`.

    Replaces: nothing public. The broadcast of initial weights (variable creation under
    MultiWorkerMirroredStrategy) has no timeout of its own.
    """
    _context().abort_collective_ops(code, message)


def bound_cluster_registration(cluster: dict, jobs: tuple[str, ...], seconds: float) -> None:
    """Starts TensorFlow's coordination service with a registration barrier bounded by `seconds`.

    Replaces: the wait of hours MultiWorkerMirroredStrategy configures itself. Where the private
    API differs (another TensorFlow version) nothing is changed and TensorFlow's own wait stays.
    """
    try:
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2

        ctx = _context()
        if ctx.coordination_service is not None:
            return
        ctx.configure_coordination_service(
            service_type="standalone",
            service_leader="/job:chief/replica:0/task:0" if "chief" in cluster else "/job:worker/replica:0/task:0",
            coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(cluster[job]))
                              for job in jobs if job in cluster],
            cluster_register_timeout_in_ms=int(seconds * 1000),
        )
        ctx.coordination_service.cluster_register_with_barrier = True
    except (ImportError, AttributeError, TypeError, ValueError):
        pass


# -- Keras optimizer internals --------------------------------------------------------------------


def adam_slots(optimizer: keras.optimizers.Optimizer, variable) -> tuple:
    """(first moment, second moment) variables of `variable` in a built Keras Adam.

    Replaces: nothing public; Keras 3 keeps the slots in private lists indexed by variable.
    """
    index = optimizer._get_variable_index(variable)
    return optimizer._momentums[index], optimizer._velocities[index]


class NoAllReduceWithOneReplica:
    """Optimizer mixin: with one replica in sync, gradients skip Keras' batched all-reduce.

    The sum over one replica is each gradient itself, but Keras' all-reduce passes every gradient
    through one IdentityN (its custom gradient's wrapper), so no variable update can start before
    the step's last gradient. Replaces: `Optimizer._all_reduce_sum_gradients` (private).
    """

    def _all_reduce_sum_gradients(self, grads_and_vars):
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync == 1:
            return list(grads_and_vars)
        return super()._all_reduce_sum_gradients(grads_and_vars)


# -- LiteRT ---------------------------------------------------------------------------------------


def tflite_ops_details(interpreter) -> list[dict]:
    """The operators of an allocated LiteRT Interpreter's execution plan (a delegate shows as one op).

    Replaces: nothing public; the only way to see which operators a delegate took.
    """
    return interpreter._get_ops_details()
