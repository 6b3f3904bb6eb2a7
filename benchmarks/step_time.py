"""Seconds per training step and images/s of the full-size CycleGAN, per stage size.

    python -m benchmarks.step_time                       # 48..256 px, batch 1 and 4, float32 and bfloat16
    python -m benchmarks.step_time --sizes=64,128 --batches=1 --precisions=float32 --steps=5

Prints one JSON object. Each figure is the minimum over --repeats timed chunks of --steps
steps (rounded up to whole calls of the stage's steps per call), after a warm-up (trace + one
call), on random images fed through a distributed dataset exactly as the trainer feeds them.

Two references for batch 1, float32: the published figures of the reference PyTorch
CycleGAN (0.48 s/step at 64 px, 1.45 s at 128 px, 5.5 s at 256 px, measured on another host
of this 2-core kind), and, with --reference=FILE, the JSON that `python -m benchmarks.reference_pytorch`
printed on THIS machine (the fair comparison: hosts of this kind differ by 2x in matmul speed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")



from benchmarks.common import build_model, chunk_steps, machine_info, time_steps
from tfcyclegan import config as config_lib
from tfcyclegan.runtime import strategy as strategy_lib
from tfcyclegan.train.trainer import steps_for_call

ISSUE_REFERENCE_S_PER_STEP = {64: 0.48, 128: 1.45, 256: 5.5}


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
    threads = strategy_lib.configure_cpu_threads(args.cpu_threads)

    results = []
    for precision in args.precisions.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            cfg, strategy, model = build_model(batch=batch, steps_per_call=args.steps_per_call,
                                               gen_blocks=args.gen_blocks, precision=precision)
            for size in (int(s) for s in args.sizes.split(",")):
                per_call = steps_for_call(cfg, size)
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
