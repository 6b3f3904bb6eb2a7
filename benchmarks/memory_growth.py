"""Host memory of a real training run, epoch after epoch: does it grow?

    python -m benchmarks.memory_growth                         # full model, 64 px, 8 epochs of 6 steps
    python -m benchmarks.memory_growth --schedule=48:4,64:4 --steps_per_epoch=4

Runs the trainer itself (tfcyclegan.train.trainer.run, embedded synthetic data, checkpoints, samples and
summaries written as in train.py) in a scratch workdir and reads this process's resident
memory (VmRSS) at the end of every epoch. Prints one JSON object with the RSS per epoch and
the growth from the end of the second epoch of the last stage to the end of the run (the
first epochs of a run or a stage fill caches and the image pools; after that, a flat line is
what we want: a leak shows as a steady climb).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from benchmarks.common import rss_mb
from tfcyclegan import config as config_lib
from tfcyclegan.train import trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedule", default="64:8")
    parser.add_argument("--steps_per_epoch", type=int, default=6)
    parser.add_argument("--gen_blocks", type=int, default=9)
    parser.add_argument("--workdir", help="default: a temporary folder, deleted afterwards")
    args = parser.parse_args()

    cfg = config_lib.TrainConfig(
        model=config_lib.ModelConfig(gen_blocks=args.gen_blocks),
        data=config_lib.DataConfig(dataset="synthetic", synthetic_count=120),
        schedule=config_lib.Schedule.parse(args.schedule),
        batch_size=1, steps_per_epoch=args.steps_per_epoch, sample_count=2,
    )
    workdir = args.workdir or tempfile.mkdtemp(prefix="tfcyclegan_memory_")
    per_epoch = []

    def on_step(position, losses):
        if position.step == args.steps_per_epoch:
            size = cfg.schedule.stages[position.stage].size
            per_epoch.append({"stage": position.stage, "size": size, "epoch": position.epoch,
                              "global_step": position.global_step, "rss_mb": round(rss_mb(), 1)})
            print(json.dumps(per_epoch[-1]), file=sys.stderr, flush=True)

    try:
        trainer.run(cfg, workdir, on_step=on_step, quiet=True)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    last_stage = [row for row in per_epoch if row["stage"] == per_epoch[-1]["stage"]]
    base = last_stage[1] if len(last_stage) > 2 else last_stage[0]
    growth = per_epoch[-1]["rss_mb"] - base["rss_mb"]
    epochs = max(1, per_epoch[-1]["global_step"] - base["global_step"]) / args.steps_per_epoch
    print(json.dumps({
        "benchmark": "memory_growth", "schedule": args.schedule, "steps_per_epoch": args.steps_per_epoch,
        "per_epoch": per_epoch, "peak_rss_mb": round(rss_mb("VmHWM"), 1),
        "growth_mb_after_warmup": round(growth, 1), "growth_mb_per_epoch": round(growth / epochs, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
