"""Seconds per training step and images/s of the full-size CycleGAN, per stage size.

    python benchmarks/step_time.py                       # 48..256 px, batch 1 and 4, float32 and bfloat16
    python benchmarks/step_time.py --sizes=64,128 --batches=1 --precisions=float32 --steps=5

Prints one JSON object. Each figure is the minimum over --repeats timed chunks of --steps
steps (rounded up to whole calls of the stage's steps per call), after a warm-up (trace + one
call), on random images fed through a distributed dataset exactly as the trainer feeds them.

Two references for batch 1, float32: the figures issue 7 quotes for the reference PyTorch
CycleGAN (0.48 s/step at 64 px, 1.45 s at 128 px, 5.5 s at 256 px, measured on another host
of this 2-core kind), and, with --reference=FILE, the JSON that benchmarks/reference_pytorch.py
printed on THIS machine (the fair comparison: hosts of this kind differ by 2x in matmul speed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from tfcyclegan import config as config_lib  # noqa: E402
from tfcyclegan import distribute, hardware  # noqa: E402
from tfcyclegan.cyclegan import CycleGAN  # noqa: E402
from tfcyclegan.schedule import generic_image_shape  # noqa: E402

ISSUE_REFERENCE_S_PER_STEP = {64: 0.48, 128: 1.45, 256: 5.5}


def threads_per_op() -> int:
    """Threads one op gets from TensorFlow's pools as they are set (its default: every core)."""
    return tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()


def machine_info() -> dict:
    """CPU model, its vector extensions and the matmul rate (with its thread count): what the figures depend on."""
    model, flags = hardware.cpu_model_and_flags()
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


def load_reference(path: str | None) -> dict[int, float]:
    """{size: s/step} from benchmarks/reference_pytorch.py's JSON output."""
    if not path:
        return {}
    try:
        with open(path) as f:
            report = json.load(f)
        return {int(row["size"]): float(row["s_per_step"]) for row in report["results"]}
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"--reference={path}: expected the JSON printed by benchmarks/reference_pytorch.py ({e})")


def chunk_steps(steps: int, steps_per_call: int) -> int:
    """Steps in one timed chunk: at least `steps`, and whole calls of `steps_per_call` steps.

    The trainer runs full calls everywhere but at an epoch's end, so a chunk of 3 steps at
    4 steps per call would time a 3-step call the trainer never makes.
    """
    if steps < 1 or steps_per_call < 1:
        raise ValueError(f"steps ({steps}) and steps_per_call ({steps_per_call}) must be at least 1")
    return -(-steps // steps_per_call) * steps_per_call


def build_model(*, batch: int, steps_per_call: int, gen_blocks: int, precision: str):
    """(config, strategy, model): the trainer's CycleGAN under a MirroredStrategy, as the benchmarks time it."""
    strategy = tf.distribute.MirroredStrategy()
    cfg = config_lib.TrainConfig(model=config_lib.ModelConfig(gen_blocks=gen_blocks), batch_size=batch,
                                 steps_per_call=steps_per_call)
    with strategy.scope():
        model = CycleGAN(cfg, strategy, precision=distribute.resolve_precision(precision))
    return cfg, strategy, model


def chunk_runner(model: CycleGAN, strategy, *, size: int, batch: int, steps_per_call: int):
    """A function run(n) that trains n more steps at `size` in calls of steps_per_call (the last
    one shorter if n is not a multiple), on random images fed through a distributed dataset
    exactly as the trainer feeds them, and waits for their losses as the trainer does."""
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (batch * 2, size, size, 3)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((images, images[::-1])).repeat().batch(batch, drop_remainder=True)
    iterator = distribute.iterate(strategy, generic_image_shape(ds.prefetch(2)))
    model.reset_pools(size)
    step = 0

    def run(n: int) -> None:
        nonlocal step
        done = 0
        while done < n:
            k = min(steps_per_call, n - done)
            out = model.train_steps(iterator, first_step=step, steps=k, global_batch=batch)
            out["gen_total"].numpy()
            done += k
            step += k

    return run


def time_steps(model: CycleGAN, strategy, *, size: int, batch: int, steps: int, repeats: int, steps_per_call: int,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="48,64,96,128,256")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--min_seconds", type=float, default=0.0, help="time more chunks until this many seconds per figure")
    parser.add_argument("--steps_per_call", type=int, default=1, help="0: the trainer's default by stage size")
    parser.add_argument("--cpu_threads", default="auto", choices=config_lib.CPU_THREADS)
    parser.add_argument("--gen_blocks", type=int, default=9)
    parser.add_argument("--reference", help="JSON output of benchmarks/reference_pytorch.py run on this machine")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    measured_reference = load_reference(args.reference)
    threads = distribute.configure_cpu_threads(args.cpu_threads)

    results = []
    for precision in args.precisions.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            cfg, strategy, model = build_model(batch=batch, steps_per_call=args.steps_per_call,
                                               gen_blocks=args.gen_blocks, precision=precision)
            for size in (int(s) for s in args.sizes.split(",")):
                per_call = cfg.steps_for_call(size)
                seconds = time_steps(model, strategy, size=size, batch=batch, steps=args.steps, repeats=args.repeats,
                                     steps_per_call=per_call, min_seconds=args.min_seconds)
                row = {"size": size, "batch": batch, "precision": precision, "steps_per_call": per_call,
                       "steps_per_chunk": chunk_steps(args.steps, per_call), "s_per_step": round(seconds, 4),
                       "images_per_s": round(batch / seconds, 3)}
                if batch == 1 and size in ISSUE_REFERENCE_S_PER_STEP:
                    row["speedup_vs_issue_reference"] = round(ISSUE_REFERENCE_S_PER_STEP[size] / seconds, 3)
                if batch == 1 and size in measured_reference:
                    row["reference_pytorch_here_s_per_step"] = measured_reference[size]
                    row["speedup_vs_reference_pytorch_here"] = round(measured_reference[size] / seconds, 3)
                results.append(row)
                print(json.dumps(row), flush=True, file=sys.stderr)
    print(json.dumps({
        "benchmark": "step_time", **machine_info(), "steps_per_call": args.steps_per_call,
        "cpu_threads": threads or "tensorflow default", "gen_blocks": args.gen_blocks,
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
