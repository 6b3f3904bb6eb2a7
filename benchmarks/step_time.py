"""Seconds per training step and images/s of the full-size CycleGAN, per stage size.

    python benchmarks/step_time.py                       # 48..256 px, batch 1 and 4, float32 and bfloat16
    python benchmarks/step_time.py --sizes=64,128 --batches=1 --precisions=float32 --steps=5

Prints one JSON object. Each figure is the minimum over --repeats timed chunks of --steps
steps, after a warm-up (trace + one chunk), on random images fed through a distributed
dataset exactly as the trainer feeds them. Reference PyTorch CycleGAN on this kind of 2-core
machine (batch 1, float32): 0.48 s/step at 64 px, 1.45 s at 128 px, 5.5 s at 256 px.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from tfcyclegan import config as config_lib
from tfcyclegan.cyclegan import CycleGAN
from tfcyclegan.schedule import generic_image_shape

REFERENCE_PYTORCH_S_PER_STEP = {64: 0.48, 128: 1.45, 256: 5.5}


def time_steps(model: CycleGAN, strategy, *, size: int, batch: int, steps: int, repeats: int, steps_per_call: int) -> float:
    """Minimum seconds per step over `repeats` timed chunks of `steps` steps."""
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (batch * 2, size, size, 3)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((images, images[::-1])).repeat().batch(batch, drop_remainder=True)
    iterator = iter(strategy.experimental_distribute_dataset(generic_image_shape(ds.prefetch(2))))
    model.reset_pools(size)
    step = 0

    def chunk(n):
        nonlocal step
        done = 0
        while done < n:
            k = min(steps_per_call, n - done)
            out = model.train_steps(iterator, first_step=step, steps=k, global_batch=batch)
            out["gen_total"].numpy()  # wait for the result, as the trainer does
            done += k
            step += k

    chunk(min(steps, steps_per_call))  # trace and warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        chunk(steps)
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="48,64,96,128,256")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps_per_call", type=int, default=1)
    parser.add_argument("--gen_blocks", type=int, default=9)
    args = parser.parse_args()

    strategy = tf.distribute.MirroredStrategy()
    results = []
    for precision in args.precisions.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            cfg = config_lib.TrainConfig(model=config_lib.ModelConfig(gen_blocks=args.gen_blocks), batch_size=batch)
            with strategy.scope():
                model = CycleGAN(cfg, strategy, precision=precision)
            for size in (int(s) for s in args.sizes.split(",")):
                seconds = time_steps(model, strategy, size=size, batch=batch, steps=args.steps, repeats=args.repeats,
                                     steps_per_call=args.steps_per_call)
                row = {"size": size, "batch": batch, "precision": precision, "s_per_step": round(seconds, 4),
                       "images_per_s": round(batch / seconds, 3)}
                ref = REFERENCE_PYTORCH_S_PER_STEP.get(size)
                if ref and batch == 1:
                    row["speedup_vs_reference_pytorch"] = round(ref / seconds, 3)
                results.append(row)
                print(json.dumps(row), flush=True, file=__import__("sys").stderr)
    print(json.dumps({
        "benchmark": "step_time", "tensorflow": tf.__version__, "machine": platform.machine(),
        "cpus": os.cpu_count(), "steps_per_call": args.steps_per_call, "gen_blocks": args.gen_blocks,
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
