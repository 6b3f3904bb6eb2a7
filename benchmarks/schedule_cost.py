"""What the progressive schedule costs against training at 256 px only, and memory per stage.

    python -m benchmarks.schedule_cost                      # full model, the progressive schedule
    python -m benchmarks.schedule_cost --steps=4 --repeats=3 --steps_per_call=1 --cpu_threads=tensorflow

Times chunks of a fixed number of training steps at every stage size (--repeats chunks, more
until --min_seconds have been timed; the fastest chunk counts) with the trainer's own step
(the same compiled call, distributed dataset and generic-shape trace as train.py), then weights
the seconds per step by the schedule's epochs (every epoch has the same number of steps at
every size). The sizes are timed in --rounds passes over all of them (the seconds split
between the passes, the fastest chunk of any pass counts): on a shared host whose speed drifts
by 5-10 % over minutes, the ratios then compare sizes timed at the same times, not a 48 px
figure from one minute with a 256 px figure from another. Prints one JSON object:

- per stage: s/step (and the fastest per pass), images/s, the peak resident memory (VmHWM,
  reset before each stage in the first pass) and
  the overhead ratio: s/step divided by the 256 px s/step scaled by pixel count (1.0 = the
  small stage costs exactly what its arithmetic says);
- schedule_cost_ratio: measured wall time of the schedule / wall time of the same number of
  epochs at 256 px (the aim: <= 0.30), beside arithmetic_ratio, the same with pure
  pixel scaling (0.285 for 48:15,64:25,96:30,128:20,256:20).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from benchmarks.common import (
    build_model,
    chunk_steps,
    machine_info,
    reset_peak_rss,
    rss_mb,
    time_steps,
)
from tfcyclegan import config as config_lib
from tfcyclegan.runtime import strategy as strategy_lib
from tfcyclegan.train.trainer import steps_for_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedule", default="progressive", help="a named schedule or a literal like 48:15,256:20")
    parser.add_argument("--steps", type=int, default=3,
                        help="timed steps per chunk, rounded up to whole calls (4 at 48 px: chunks of 4)")
    parser.add_argument("--repeats", type=int, default=2, help="timed chunks per size; the minimum is kept")
    parser.add_argument("--min_seconds", type=float, default=15.0,
                        help="time more chunks until this many seconds per size (small sizes: many samples)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over all sizes; --min_seconds is split between them")
    parser.add_argument("--steps_per_call", type=int, default=config_lib.TrainConfig().steps_per_call,
                        help="0 (the trainer's default): by stage size, TrainConfig.steps_for_call")
    parser.add_argument("--cpu_threads", default="auto", choices=config_lib.CPU_THREADS)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--gen_blocks", type=int, default=9)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")

    threads = strategy_lib.configure_cpu_threads(args.cpu_threads)
    schedule = config_lib.Schedule.parse(args.schedule)
    sizes = sorted({stage.size for stage in schedule.stages} | {256})
    cfg, strategy, model = build_model(batch=1, steps_per_call=args.steps_per_call, gen_blocks=args.gen_blocks,
                                       precision=args.precision)
    precision = model.precision

    stages = {}
    for round_ in range(args.rounds):
        for size in sizes:
            can_reset = reset_peak_rss() if round_ == 0 else None
            per_call = steps_for_call(cfg, size)
            seconds = time_steps(model, strategy, size=size, batch=1, steps=args.steps, repeats=args.repeats,
                                 steps_per_call=per_call, min_seconds=args.min_seconds / args.rounds)
            if round_ == 0:
                stages[size] = {"size": size, "steps_per_call": per_call, "steps_per_chunk": chunk_steps(args.steps, per_call),
                                "s_per_step_by_round": [],
                                "peak_rss_mb": round(rss_mb("VmHWM"), 1), "peak_reset_before_stage": can_reset}
            row = stages[size]
            row["s_per_step_by_round"].append(round(seconds, 4))
            row["s_per_step"] = min(row["s_per_step_by_round"])
            row["images_per_s"] = round(1 / row["s_per_step"], 3)
            print(json.dumps(row), file=sys.stderr, flush=True)
    t256 = stages[256]["s_per_step"]
    for size, row in stages.items():
        row["overhead_vs_256_pixel_scaled"] = round(row["s_per_step"] / (t256 * (size / 256) ** 2), 3)

    epochs_total = sum(stage.epochs for stage in schedule.stages)
    measured = sum(stage.epochs * stages[stage.size]["s_per_step"] for stage in schedule.stages)
    arithmetic = sum(stage.epochs * (stage.size / 256) ** 2 for stage in schedule.stages)
    print(json.dumps({
        "benchmark": "schedule_cost", **machine_info(), "precision": precision, "steps_per_call": args.steps_per_call,
        "min_steps_per_chunk": args.steps, "min_chunks": args.repeats, "min_seconds_per_size": args.min_seconds, "rounds": args.rounds,
        "cpu_threads": threads or "tensorflow default",
        "schedule": [f"{s.size}:{s.epochs}" for s in schedule.stages],
        "stages": list(stages.values()),
        "schedule_cost_ratio": round(measured / (epochs_total * t256), 4),
        "arithmetic_ratio": round(arithmetic / epochs_total, 4),
        "target_schedule_cost_ratio": 0.30, "target_overhead_48px": 1.25,
    }, indent=2))


if __name__ == "__main__":
    main()
