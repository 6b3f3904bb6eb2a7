"""What the benchmarks share: the machine's description, the trainer's model as they time it,
chunks of whole compiled calls, and memory readings. Public tfcyclegan API only."""

from __future__ import annotations

import os
import platform
import time

import numpy as np
import tensorflow as tf

from tfcyclegan import config as config_lib
from tfcyclegan.model.networks import time_residual_block
from tfcyclegan.runtime import precision as precision_lib
from tfcyclegan.runtime import strategy as strategy_lib
from tfcyclegan.train.trainer import generic_image_shape, model_class


def resolve_precision(precision: str) -> str:
    """--precision as the trainer resolves it (auto: the probe's verdict on this CPU)."""
    return precision_lib.resolve_precision(precision, time_residual_block)


def threads_per_op() -> int:
    """Threads one op gets from TensorFlow's pools as they are set (its default: every core)."""
    return tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()


def machine_info() -> dict:
    """CPU model, its vector extensions and the matmul rate (with its thread count): what the figures depend on."""
    model, flags = precision_lib.cpu_model_and_flags()
    isa = sorted(f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma"))
    # The matmul runs with the thread pools as they are set: after --cpu_threads=auto that is
    # half the cores per op (one on this project's 2-core machine), so the rate is theirs.
    return {"tensorflow": tf.__version__, "machine": platform.machine(), "cpu": model, "cpus": os.cpu_count(),
            "isa": isa, "matmul_gflops": {dt: matmul_gflops(dt) for dt in ("float32", "bfloat16")},
            "matmul_threads": threads_per_op()}


def matmul_gflops(dtype: str, n: int = 2048, repeats: int = 5) -> float:
    """The best rate of a 2048^3 matmul in `dtype` on the threads an op gets (matmul_threads):
    this host's practical peak for them."""
    a = tf.cast(tf.random.normal((n, n)), dtype)
    matmul = tf.function(lambda x: tf.matmul(x, x))
    matmul(a).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).numpy()
        best = min(best, time.perf_counter() - start)
    return round(2 * n**3 / best / 1e9, 1)


def chunk_steps(steps: int, steps_per_call: int) -> int:
    """Steps in one timed chunk: at least `steps`, and whole calls of `steps_per_call` steps.

    The trainer runs full calls everywhere but at an epoch's end, so a chunk of 3 steps at
    4 steps per call would time a 3-step call the trainer never makes.
    """
    if steps < 1 or steps_per_call < 1:
        raise ValueError(f"steps ({steps}) and steps_per_call ({steps_per_call}) must be at least 1")
    return -(-steps // steps_per_call) * steps_per_call


def build_model(*, batch: int, steps_per_call: int, gen_blocks: int = 9, precision: str, kind: str = "cyclegan",
                size: int = 64):
    """(config, strategy, model): the trainer's full-size CycleGAN (or DCGAN of `size` px) under a
    MirroredStrategy, as the benchmarks time it."""
    strategy = tf.distribute.MirroredStrategy()
    cfg = config_lib.TrainConfig(model=config_lib.ModelConfig(gen_blocks=gen_blocks), batch_size=batch,
                                 steps_per_call=steps_per_call, kind=kind,
                                 schedule=config_lib.Schedule.parse(f"{size}:1" if kind == "dcgan" else "demo"))
    with strategy.scope():
        model = model_class(cfg)(cfg, strategy, precision=resolve_precision(precision))
    return cfg, strategy, model


def chunk_runner(model, strategy, *, size: int, batch: int, steps_per_call: int):
    """A function run(n) that trains n more steps at `size` in calls of steps_per_call (the last
    one shorter if n is not a multiple), on random images fed through a distributed dataset
    exactly as the trainer feeds them, and waits for their losses as the trainer does."""
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (batch * 2, size, size, 3)).astype(np.float32)
    domains = (images, images[::-1])[: len(model.domains)]  # (real_a, real_b) or (real,)
    ds = tf.data.Dataset.from_tensor_slices(domains).repeat().batch(batch, drop_remainder=True)
    iterator = strategy_lib.iterate(strategy, generic_image_shape(ds.prefetch(2)))
    model.start_stage(size)
    step = 0

    def run(n: int) -> None:
        nonlocal step
        done = 0
        while done < n:
            k = min(steps_per_call, n - done)
            out = model.train_steps(iterator, first_step=step, steps=k, global_batch=batch)
            out[model.loss_names[0]].numpy()
            done += k
            step += k

    return run


def time_steps(model, strategy, *, size: int, batch: int, steps: int, repeats: int, steps_per_call: int,
               min_seconds: float = 0.0) -> float:
    """Minimum seconds per step over timed chunks of chunk_steps(steps, steps_per_call) steps:
    `repeats` chunks, and more until `min_seconds` have been timed (small sizes then get many
    samples, and one chunk slowed by another process on the machine does not decide the figure)."""
    steps = chunk_steps(steps, steps_per_call)
    chunk = chunk_runner(model, strategy, size=size, batch=batch, steps_per_call=steps_per_call)
    chunk(steps_per_call)  # trace and warm up
    best, timed, chunks = float("inf"), 0.0, 0
    while chunks < repeats or timed < min_seconds:
        start = time.perf_counter()
        chunk(steps)
        elapsed = time.perf_counter() - start
        best, timed, chunks = min(best, elapsed / steps), timed + elapsed, chunks + 1
    return best


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (VmRSS) or its peak since the last reset (VmHWM), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
