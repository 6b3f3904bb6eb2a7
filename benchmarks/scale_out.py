"""Scale-out figures on this machine: bfloat16 vs float32 per stage size, and what a second
worker (MultiWorkerMirroredStrategy over loopback) costs per step. Prints one JSON object.

    python -m benchmarks.scale_out                                   # everything (30-40 min on 2 cores)
    python -m benchmarks.scale_out --sizes=48,64 --repeats=2 --no_workers
    python -m benchmarks.scale_out --no_precision --worker_size=64 --worker_model=tiny

"precision": seconds per train step of the full-size model (ResNet-9 generators, 70x70
PatchGANs), batch 1, per stage size, float32 and mixed_bfloat16 (oneDNN runs bfloat16
convolutions natively on AVX512-BF16 / AMX CPUs), and bf16_speedup = float32 / bfloat16.

"workers": seconds per step for the same global batch (2) trained three ways, each in its
own process: one process with batch 2; two workers on 127.0.0.1 with batch 1 each (the
gradients, 113 MB for the full model, are all-reduced over gRPC every step, and the trainer
adds one small all-gather per compiled call to agree on stopping); and one process with
batch 1 (what each worker computes). overhead_per_step = two workers - one process. Both
workers share this machine's cores, so the figure is an upper bound for two machines, where
the time would be about batch-1 time + the all-reduce. With timeout_compare, the two-worker
run is repeated without the collective timeout ($TFCYCLEGAN_WORKER_TIMEOUT=0), to price it.

Every figure is the minimum over --repeats timed chunks of --steps steps after a warm-up
(the trace and one step), and for the workers also over --worker_rounds interleaved runs of
each configuration: other processes share the CPU, and the minimum is the least disturbed
measurement. Steps are single compiled calls, as train.py runs them by default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository: workers run `python -m benchmarks.scale_out` from it
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _model_config(kind: str):
    from tfcyclegan import config as config_lib

    if kind == "tiny":
        return config_lib.ModelConfig(gen_filters=8, gen_blocks=1, disc_filters=8)
    return config_lib.ModelConfig()  # the paper's networks


def _build(strategy, *, model: str, precision: str):
    from tfcyclegan import config as config_lib
    from tfcyclegan.train.step import CycleGAN

    config = config_lib.TrainConfig(model=_model_config(model), batch_size=1, seed=0)
    with strategy.scope():
        return CycleGAN(config, strategy, precision=precision)


def _iterator(strategy, *, size: int, global_batch: int):
    import numpy as np
    import tensorflow as tf

    from tfcyclegan.runtime import strategy as strategy_lib
    from tfcyclegan.train.trainer import generic_image_shape

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2 * global_batch, size, size, 3)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((images, images[::-1])).repeat().batch(global_batch, drop_remainder=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = generic_image_shape(ds.prefetch(2)).with_options(options)  # one trace for every size, as the trainer
    return strategy_lib.iterate(strategy, ds)  # as the trainer iterates


def _time_steps(model, strategy, iterator, *, global_batch: int, steps: int, first_step: int) -> float:
    """Seconds per step over `steps` single-step calls, each followed by the trainer's stop check."""
    from tfcyclegan.runtime import cluster

    start = time.perf_counter()
    for k in range(steps):
        out = model.train_steps(iterator, first_step=first_step + k, steps=1, global_batch=global_batch)
        float(out["gen_total"].numpy()[-1])
        cluster.agreed_stop(strategy, None)
    return (time.perf_counter() - start) / steps


def precision_figures(args) -> dict:
    """float32 vs mixed_bfloat16, interleaved size by size so a busy moment hits both."""
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy()
    precisions = args.precisions.split(",")
    models = {p: _build(strategy, model=args.model, precision=p) for p in precisions}
    out = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        best = {p: float("inf") for p in precisions}
        iterators = {}
        for p, model in models.items():
            model.start_stage(size)
            iterators[p] = _iterator(strategy, size=size, global_batch=1)
            _time_steps(model, strategy, iterators[p], global_batch=1, steps=1, first_step=0)  # warm-up (and trace)
        for r in range(args.repeats):
            for p, model in models.items():
                t = _time_steps(model, strategy, iterators[p], global_batch=1, steps=args.steps, first_step=1 + r * args.steps)
                best[p] = min(best[p], t)
        row = {f"{p}_s_per_step": round(t, 4) for p, t in best.items()}
        if "float32" in best and "mixed_bfloat16" in best:
            row["bf16_speedup"] = round(best["float32"] / best["mixed_bfloat16"], 3)
        out[str(size)] = row
        print(json.dumps({"size": size, **row}), file=sys.stderr, flush=True)
    return out


# -- one worker process (this script with --worker) ---------------------------------------------------

def worker_main(args) -> None:
    import tensorflow as tf

    from tfcyclegan.runtime import cluster
    from tfcyclegan.runtime import strategy as strategy_lib

    strategy = strategy_lib.make_strategy("auto")  # MultiWorkerMirroredStrategy when TF_CONFIG is set
    model = _build(strategy, model=args.worker_model, precision="float32")
    model.start_stage(args.worker_size)
    global_batch = args.worker_batch * strategy.num_replicas_in_sync
    iterator = _iterator(strategy, size=args.worker_size, global_batch=global_batch)
    start = time.perf_counter()
    _time_steps(model, strategy, iterator, global_batch=global_batch, steps=1, first_step=0)
    warm_up = time.perf_counter() - start
    times = [_time_steps(model, strategy, iterator, global_batch=global_batch, steps=args.steps, first_step=1 + r * args.steps)
             for r in range(args.repeats)]
    gradient_bytes = sum(v.shape.num_elements() * 4 for v in model.generator_variables + model.discriminator_variables)
    print(json.dumps({"s_per_step": min(times), "all_s_per_step": [round(t, 4) for t in times], "warm_up_s": round(warm_up, 1),
                      "replicas": strategy.num_replicas_in_sync, "global_batch": global_batch,
                      "chief": cluster.is_chief(strategy), "gradient_mb": round(gradient_bytes / 2**20, 1),
                      "tf": tf.__version__}))


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run_workers(args, *, workers: int, batch: int, timeout_env: str | None = None) -> dict:
    base = [sys.executable, "-m", "benchmarks.scale_out", "--worker", f"--worker_size={args.worker_size}",
            f"--worker_model={args.worker_model}", f"--worker_batch={batch}", f"--steps={args.steps}",
            f"--repeats={args.repeats}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TF_CONFIG", None)
    if timeout_env is not None:
        env["TFCYCLEGAN_WORKER_TIMEOUT"] = timeout_env
    ports = _free_ports(workers)
    procs = []
    for i in range(workers):
        worker_env = dict(env)
        if workers > 1:
            worker_env["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                                  "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen(base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=worker_env,
                                      cwd=ROOT))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=3600)
        if proc.returncode:
            raise RuntimeError(f"worker failed ({proc.returncode}):\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    # Workers finish a step together; the slowest one's time is the step time.
    return {**results[0], "s_per_step": max(r["s_per_step"] for r in results)}


def worker_figures(args) -> dict:
    """Each configuration runs --worker_rounds times, interleaved; the minimum counts."""
    configs = {"one_b2": dict(workers=1, batch=2), "two": dict(workers=2, batch=1), "one_b1": dict(workers=1, batch=1)}
    if args.timeout_compare:
        configs["two_untimed"] = dict(workers=2, batch=1, timeout_env="0")
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    for _ in range(args.worker_rounds):
        for name, kwargs in configs.items():
            runs[name].append(_run_workers(args, **kwargs))
    best = {name: min(r["s_per_step"] for r in results) for name, results in runs.items()}
    out = {
        "size": args.worker_size, "model": args.worker_model, "global_batch": 2, "gradient_mb": runs["two"][0]["gradient_mb"],
        "one_process_batch2_s_per_step": round(best["one_b2"], 4),
        "two_workers_batch1x2_s_per_step": round(best["two"], 4),
        "one_process_batch1_s_per_step": round(best["one_b1"], 4),
        "overhead_per_step_s": round(best["two"] - best["one_b2"], 4),
        "two_workers_relative": round(best["two"] / best["one_b2"], 3),
        "warm_up_s": {"one_process": min(r["warm_up_s"] for r in runs["one_b2"]),
                      "two_workers": min(r["warm_up_s"] for r in runs["two"])},
        "all_runs_s_per_step": {name: [round(r["s_per_step"], 4) for r in results] for name, results in runs.items()},
    }
    if args.timeout_compare:
        out["two_workers_no_timeout_s_per_step"] = round(best["two_untimed"], 4)
        out["timeout_cost_per_step_s"] = round(best["two"] - best["two_untimed"], 4)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="48,64,96,128,256")
    p.add_argument("--precisions", default="float32,mixed_bfloat16")
    p.add_argument("--model", default="full", choices=["full", "tiny"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker_size", type=int, default=64)
    p.add_argument("--worker_model", default="full", choices=["full", "tiny"])
    p.add_argument("--worker_batch", type=int, default=1)
    p.add_argument("--worker_rounds", type=int, default=2)
    p.add_argument("--no_precision", action="store_true")
    p.add_argument("--no_workers", action="store_true")
    p.add_argument("--timeout_compare", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker_main(args)
        return
    result = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
              "steps": args.steps, "repeats": args.repeats}
    if not args.no_workers:  # first: subprocesses need a machine this process has not filled yet
        result["workers"] = worker_figures(args)
        print(json.dumps({"workers": result["workers"]}), file=sys.stderr, flush=True)
    if not args.no_precision:
        result["precision"] = precision_figures(args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
