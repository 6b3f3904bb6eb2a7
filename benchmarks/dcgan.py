"""The DCGAN: step speed at 64 and 128 px, and what augmentation does on a small data set. Prints JSON.

    python -m benchmarks.dcgan                          # both parts
    python -m benchmarks.dcgan --part=speed --sizes=64  # images/s only
    python -m benchmarks.dcgan --part=ablation --epochs=60

speed: images/s of the full-size DCGAN step (filters 64, z 100, batch --batch) under float32
and --precision=auto, at each size, on random images fed as the trainer feeds them; the minimum
over --repeats timed chunks after a warm-up.

ablation: two runs on the synthetic faces of domain A (215 training images, the size of the
reference's small cat data sets), the same steps, seed and settings, with the default
augmentation (resize 1.12x, random crop, flip) and with --no_augment. Reported for each: the
mean-image distance of 400 samples from the training images (lower is closer to the data) and
the memorisation ratio (median distance of a sample to its nearest training image over the data's
own median nearest-neighbour distance; well below 1 means copies), both from
tfcyclegan.eval.dcgan, and the wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.common import build_model, chunk_runner, machine_info  # noqa: E402
from tfcyclegan import config as config_lib  # noqa: E402
from tfcyclegan import data as data_lib  # noqa: E402
from tfcyclegan.eval.dcgan import mean_image_distance, memorisation  # noqa: E402
from tfcyclegan.runtime import strategy as strategy_lib  # noqa: E402
from tfcyclegan.train import trainer as trainer_lib  # noqa: E402
from tfcyclegan.train.dcgan import fixed_z  # noqa: E402


def speed(sizes: list[int], batch: int, repeats: int, steps: int) -> list[dict]:
    rows = []
    for precision in ("float32", "auto"):
        for size in sizes:
            _, strategy, model = build_model(batch=batch, steps_per_call=steps, precision=precision, kind="dcgan", size=size)
            run = chunk_runner(model, strategy, size=size, batch=batch, steps_per_call=steps)
            run(steps)  # trace and warm up
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                run(steps)
                best = min(best, (time.perf_counter() - start) / steps)
            row = {"size": size, "precision": precision, "resolved": model.precision, "batch": batch,
                   "s_per_step": round(best, 4), "images_per_s": round(batch / best, 1)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def ablation(epochs: int, seed: int, cache_dir: str | None) -> dict:
    out = {}
    for name, augment in (("augmented", True), ("no_augment", False)):
        cfg = config_lib.TrainConfig(
            kind="dcgan", precision="auto", seed=seed, model=config_lib.ModelConfig(gen_filters=32, disc_filters=32),
            data=config_lib.DataConfig(synthetic_count=600, flip=augment,
                                       preprocess="resize_and_crop" if augment else "none"),
            schedule=config_lib.Schedule.parse(f"32:{epochs}"), batch_size=16, steps_per_call=4, log_every_steps=100,
            optim=config_lib.OptimConfig(decay_epochs=0),
        )
        with tempfile.TemporaryDirectory() as workdir:
            trainer = trainer_lib.Trainer(cfg, workdir, data_cache_dir=cache_dir, quiet=True)
            real = data_lib.load_eval_images(trainer.domains, cfg.data, domain="a", split="train", size=32)
            cpu0, start = resource.getrusage(resource.RUSAGE_SELF), time.time()
            result = trainer.run()
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            samples = trainer.model.generate(fixed_z(seed + 1, 400, cfg.model.z_dim))
            out[name] = {
                "steps": result.position.global_step, "wall_s": round(time.time() - start, 1),
                "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
                "mean_image_distance": round(mean_image_distance(samples, real), 4),
                "memorisation": {k: round(v, 4) for k, v in memorisation(samples, real).items()},
                "train_images": len(real),
            }
        print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["speed", "ablation", "both"], default="both")
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2, help="steps per timed chunk")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=120, help="ablation: epochs of 13 steps at 32 px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache_dir", help="where the synthetic faces are cached (default: tfcyclegan's cache)")
    args = parser.parse_args()
    threads = strategy_lib.configure_cpu_threads("auto")
    report = {"benchmark": "dcgan", **machine_info(), "cpu_threads": threads}
    if args.part in ("speed", "both"):
        report["speed"] = speed([int(s) for s in args.sizes.split(",")], args.batch, args.repeats, args.steps)
    if args.part in ("ablation", "both"):
        report["ablation"] = ablation(args.epochs, args.seed, args.cache_dir)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
