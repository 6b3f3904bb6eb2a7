"""Input pipeline throughput per stage size, against the train step's consumption. Prints JSON.

    python -m benchmarks.input_pipeline                       # synthetic faces, full model, batch 1
    python -m benchmarks.input_pipeline --source=utkface_sample --sizes=48,64,128 --model=tiny
    python -m benchmarks.input_pipeline --no_train            # pipeline alone

"pipeline": images/s the tf.data pipeline delivers on its own (A and B images both counted),
with the in-memory cache (warm: a later epoch; the first epoch's decode is reported apart) and
without it (every epoch decodes the files).

"train": seconds per train step fed from the real pipeline and from a constant in-memory
batch; data_wait_fraction = (pipeline - constant) / pipeline is the share of step time spent
waiting for data (the goal: at most 0.05 at every stage). Both compete for the same CPU
cores, so this is the honest measure on a CPU-only machine, but wall time moves with any
other load on the machine; pipeline_cpu_fraction (the extra CPU seconds per step, from this
process's CPU time) is the load-insensitive counterpart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

from tfcyclegan import config as config_lib
from tfcyclegan import data as data_lib


def sample_dir() -> Path:
    env = os.environ.get("TFCYCLEGAN_UTKFACE_SAMPLE")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface_sample"


def data_config(source: str) -> config_lib.DataConfig:
    if source == "synthetic":
        return config_lib.DataConfig()
    if source == "utkface_sample":
        return config_lib.DataConfig(dataset="utkface", data_dir=str(sample_dir()))
    return config_lib.DataConfig(dataset="utkface", data_dir=source)


def time_pipeline(domains, cfg, *, size: int, batch: int, max_pairs: int) -> dict:
    """Steady-state images/s (after each epoch's first batch), the per-epoch start-up (dataset
    creation + first batch) and the first epoch's time (which fills the memory cache)."""
    steps = data_lib.steps_per_epoch(domains, batch)
    start = time.perf_counter()
    for _ in data_lib.make_train_dataset(domains, cfg, size=size, global_batch=batch, seed=0, epoch=0):
        pass
    first_epoch = time.perf_counter() - start
    startups, running, images, epoch = [], 0.0, 0, 1
    while images < 2 * max_pairs or epoch < 3:
        start = time.perf_counter()
        iterator = iter(data_lib.make_train_dataset(domains, cfg, size=size, global_batch=batch, seed=0, epoch=epoch))
        next(iterator)
        mid = time.perf_counter()
        n = sum(1 for _ in iterator)
        running += time.perf_counter() - mid
        startups.append(mid - start)
        images += 2 * n * batch
        epoch += 1
    return {
        "size": size, "batch": batch, "cache": cfg.cache, "steps_per_epoch": steps,
        "images_per_s": round(images / running, 1),
        "epoch_startup_s": round(sorted(startups)[len(startups) // 2], 3),
        "first_epoch_s": round(first_epoch, 3),
    }


def time_train(domains, cfg, *, sizes, batch: int, steps: int, rounds: int, model: str) -> list[dict]:
    from tfcyclegan.runtime import strategy as strategy_lib
    from tfcyclegan.train.step import CycleGAN

    model_cfg = config_lib.ModelConfig() if model == "full" else config_lib.ModelConfig(gen_filters=8, gen_blocks=1, disc_filters=8)
    train_cfg = config_lib.TrainConfig(model=model_cfg, data=cfg, batch_size=batch)
    strategy = strategy_lib.make_strategy("auto")
    global_batch = batch * strategy.num_replicas_in_sync
    with strategy.scope():
        gan = CycleGAN(train_cfg, strategy, precision="float32")
    out = []
    for size in sizes:
        gan.start_stage(size)
        dataset = data_lib.make_train_dataset(domains, cfg, size=size, global_batch=global_batch, seed=0, epoch=0)
        first = next(iter(dataset))
        constant = tf.data.Dataset.from_tensors(first).repeat().with_options(dataset.options())

        def run(ds, n):
            iterator = strategy_lib.iterate(strategy, ds)  # as the trainer iterates
            gan.train_steps(iterator, first_step=0, steps=1, global_batch=global_batch)  # warm up (and trace)
            start, cpu = time.perf_counter(), time.process_time()
            losses = gan.train_steps(iterator, first_step=1, steps=n, global_batch=global_batch)
            float(losses["gen_total"][-1])  # wait for the result
            return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n

        need = steps + 1
        if data_lib.steps_per_epoch(domains, global_batch) < need:
            raise SystemExit(f"An epoch has fewer than {need} steps at batch {global_batch}; use fewer --train_steps.")
        # Alternate the two inputs and keep the median of each: other load on the machine
        # moves single measurements by more than the effect we look for.
        t_const, t_data = [], []
        for r in range(rounds):
            t_const.append(run(constant, steps))
            t_data.append(run(data_lib.make_train_dataset(domains, cfg, size=size, global_batch=global_batch,
                                                          seed=0, epoch=1 + r), steps))
        median = lambda pairs, k: sorted(p[k] for p in pairs)[rounds // 2]
        cpu_const, cpu_data = median(t_const, 1), median(t_data, 1)
        t_const, t_data = median(t_const, 0), median(t_data, 0)
        wait = max(0.0, (t_data - t_const) / t_data)
        out.append({
            "size": size, "batch": global_batch, "model": model, "steps": steps, "rounds": rounds,
            "step_s_constant_input": round(t_const, 4), "step_s_pipeline": round(t_data, 4),
            "train_images_per_s": round(2 * global_batch / t_data, 2),
            "data_wait_fraction": round(wait, 4),
            # CPU seconds of this process per step (all threads): what the pipeline adds to the
            # step's work, insensitive to other load on the machine.
            "cpu_s_constant_input": round(cpu_const, 4), "cpu_s_pipeline": round(cpu_data, 4),
            "pipeline_cpu_fraction": round(max(0.0, (cpu_data - cpu_const) / cpu_data), 4),
        })
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="synthetic", help="synthetic, utkface_sample, or a UTKFace folder/tarball")
    parser.add_argument("--sizes", default="48,64,96,128,256")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--pipeline_batch", type=int, default=8, help="batch for the pipeline-alone figures")
    parser.add_argument("--max_pairs", type=int, default=1000, help="pairs to time (over several epochs)")
    parser.add_argument("--train_steps", type=int, default=2, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median kept)")
    parser.add_argument("--model", choices=("full", "tiny"), default="full")
    parser.add_argument("--no_train", action="store_true", help="pipeline throughput only")
    parser.add_argument("--cache_dir", default=None, help="data cache (default: a temporary folder)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    cfg = data_config(args.source)
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="tfcyclegan_bench_")
    start = time.perf_counter()
    domains = data_lib.load_domains(cfg, cache_dir=cache_dir)
    load_s = time.perf_counter() - start

    pipeline = []
    for size in sizes:
        for cache in (True, False):
            c = config_lib.replace(config_lib.TrainConfig(data=cfg), {"data.cache": cache}).data
            pipeline.append(time_pipeline(domains, c, size=size, batch=args.pipeline_batch, max_pairs=args.max_pairs))
            print(json.dumps(pipeline[-1]), file=sys.stderr, flush=True)

    result = {
        "machine": {"cpus": os.cpu_count(), "tensorflow": tf.__version__, "python": platform.python_version()},
        "source": domains.stats["source"], "domains": domains.stats["domains"],
        "load_domains_s": round(load_s, 2),
        "pipeline": pipeline,
    }
    if not args.no_train:
        result["train"] = time_train(domains, cfg, sizes=sizes, batch=args.batch, steps=args.train_steps,
                                     rounds=args.rounds, model=args.model)
        result["max_data_wait_fraction"] = max(r["data_wait_fraction"] for r in result["train"])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
