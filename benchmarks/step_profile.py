"""Where a training step's CPU time goes, per stage size: oneDNN's primitives by kind, and the rest.

    python benchmarks/step_profile.py                     # 48 and 256 px, full model, the trainer's defaults
    python benchmarks/step_profile.py --sizes=48,64 --steps=16

Prints one JSON object. Three child processes run the same whole calls of training steps (as
the trainer runs them) at every size, one after the other:

- two without logging (the first and the last) give wall seconds, user and system CPU seconds
  and minor page faults per step, from their own counters; the figures are their mean, so a
  host whose speed drifts meanwhile moves both halves alike;
- one in between with oneDNN's own log on (ONEDNN_VERBOSE=1) gives the time of every oneDNN
  primitive, by kind: convolutions by direction, matmuls (the bf16 filter gradients), weight
  reorders (oneDNN copies a weight into its blocked layout at every call), other reorders, batch
  norm (the instance norms). Writing the log slows that process's step (about 1,000 lines a
  step at 48 px), but not the primitives it times.

"outside_onednn_ms" is the CPU time per step that no oneDNN primitive took: Adam, casts,
gradient sums, slices and concats, the executor, threads waiting for work. With 256 among
--sizes, every smaller size also gets each figure's excess over the 256 px figure scaled by
pixel count: what makes a small step cost more than its pixels (issue 7, target 3).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import subprocess
import tempfile
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from step_time import chunk_runner, chunk_steps, machine_info  # noqa: E402  (benchmarks/ is this script's folder)
from tfcyclegan import config as config_lib  # noqa: E402
from tfcyclegan import distribute  # noqa: E402
from tfcyclegan.cyclegan import CycleGAN  # noqa: E402

BEGIN, END = "=====tfcyclegan step_profile begin {size}=====", "=====tfcyclegan step_profile end {size}====="
KINDS = ("conv_forward", "conv_backward_data", "conv_backward_weights", "matmul", "reorder_weights",
         "reorder_other", "batch_norm", "other")


def primitive_kind(fields: list[str]) -> str:
    """The KINDS entry of one oneDNN verbose 'exec' line, split at commas.

    A reorder counts as a weight reorder when it goes to or from TensorFlow's filter layout
    (HWIO, oneDNN's `cdba` tag for its OIHW dimensions).
    """
    i = fields.index("exec")
    primitive, propagation, formats = fields[i + 2], fields[i + 4], fields[i + 5]
    if primitive == "convolution":
        return {"forward_training": "conv_forward", "forward_inference": "conv_forward",
                "backward_data": "conv_backward_data", "backward_weights": "conv_backward_weights"}.get(propagation, "other")
    if primitive == "reorder":
        return "reorder_weights" if ":cdba:" in formats else "reorder_other"
    if primitive in ("matmul", "inner_product"):
        return "matmul"
    if primitive in ("batch_normalization", "layer_normalization"):
        return "batch_norm"
    return "other"


def onednn_times(lines, steps: int) -> dict[str, dict[str, float]]:
    """{kind: {"ms": per step, "count": per step}} from oneDNN verbose lines (other lines are skipped)."""
    ms, count = collections.Counter(), collections.Counter()
    for line in lines:
        fields = line.strip().split(",")
        if not fields[0].startswith(("onednn_verbose", "dnnl_verbose")) or "exec" not in fields[:6]:
            continue
        kind = primitive_kind(fields)
        ms[kind] += float(fields[-1])
        count[kind] += 1
    return {kind: {"ms": round(ms[kind] / steps, 2), "count": round(count[kind] / steps, 1)} for kind in KINDS}


def log_section(text: str, size: int) -> list[str]:
    """The lines between the child's begin and end markers for `size`."""
    begin, end = BEGIN.format(size=size), END.format(size=size)
    lines = text.splitlines()
    try:
        first, last = lines.index(begin), lines.index(end)
    except ValueError:
        raise SystemExit(f"the oneDNN log has no section for {size} px; is oneDNN enabled (TF_ENABLE_ONEDNN_OPTS)?")
    return lines[first + 1:last]


def profile(args, sizes: list[int]) -> dict[int, dict]:
    """Times whole calls of steps at every size, between log markers; {size: row}."""
    distribute.configure_cpu_threads(args.cpu_threads)
    strategy = tf.distribute.MirroredStrategy()
    cfg = config_lib.TrainConfig(model=config_lib.ModelConfig(gen_blocks=args.gen_blocks), batch_size=1,
                                 steps_per_call=args.steps_per_call)
    with strategy.scope():
        model = CycleGAN(cfg, strategy, precision=distribute.resolve_precision(args.precision))
    rows = {}
    for size in sizes:
        per_call = cfg.steps_for_call(size)
        steps = chunk_steps(args.steps, per_call)
        run = chunk_runner(model, strategy, size=size, batch=1, steps_per_call=per_call)
        run(per_call)  # trace and warm up: creating primitives is not a step's cost
        print(BEGIN.format(size=size), flush=True)
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        run(steps)
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
        print(END.format(size=size), flush=True)
        cpu_ms = 1000 * ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / steps
        rows[size] = {
            "size": size, "precision": model.precision, "steps": steps, "steps_per_call": per_call,
            "wall_s_per_step": round(wall / steps, 4), "cpu_ms_per_step": round(cpu_ms, 1),
            "system_cpu_ms_per_step": round(1000 * (after.ru_stime - before.ru_stime) / steps, 1),
            "minor_page_faults_per_step": round((after.ru_minflt - before.ru_minflt) / steps, 1),
        }
        print(f"step_profile: {size} px timed", file=sys.stderr, flush=True)
    return rows


def run_child(args, sizes: list[int]) -> None:
    """One child: profile() (with oneDNN's log on if --child=logged), its rows as JSON to --out."""
    if args.child == "logged":
        # oneDNN reads this once, at its first primitive (none has run yet: importing
        # TensorFlow runs none). Its log, and the markers, go to this process's stdout.
        os.environ["ONEDNN_VERBOSE"] = "1"
    rows = profile(args, sizes)
    with open(args.out, "w") as f:
        json.dump({"rows": list(rows.values()), "machine": machine_info() if args.child == "plain" else None}, f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="48,256")
    parser.add_argument("--steps", type=int, default=8, help="steps per size, rounded up to whole calls")
    parser.add_argument("--steps_per_call", type=int, default=0, help="0 (the trainer's default): by stage size")
    parser.add_argument("--cpu_threads", default="auto", choices=config_lib.CPU_THREADS)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--gen_blocks", type=int, default=9)
    parser.add_argument("--child", choices=("plain", "logged"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes must be comma-separated pixel sizes like 48,256, got {args.sizes!r}")
    if args.child:
        run_child(args, sizes)
        return

    with tempfile.TemporaryDirectory(prefix="tfcyclegan_step_profile_") as scratch:
        results, log_text = [], None
        for i, kind in enumerate(("plain", "logged", "plain")):
            out = os.path.join(scratch, f"{i}.json")
            cmd = [sys.executable, str(Path(__file__).resolve()), f"--child={kind}", f"--out={out}",
                   f"--sizes={args.sizes}", f"--steps={args.steps}", f"--steps_per_call={args.steps_per_call}",
                   f"--cpu_threads={args.cpu_threads}", f"--precision={args.precision}", f"--gen_blocks={args.gen_blocks}"]
            print(f"step_profile: run {i + 1} of 3 ({kind}) ...", file=sys.stderr, flush=True)
            with open(os.path.join(scratch, f"{i}.log"), "w+") as log:
                env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_VERBOSE", "DNNL_VERBOSE")}
                done = subprocess.run(cmd, stdout=log, env=env)
                if done.returncode != 0:
                    raise SystemExit(f"step_profile: child run {i + 1} failed (exit code {done.returncode}): {' '.join(cmd)}")
                if kind == "logged":
                    log.seek(0)
                    log_text = log.read()
            with open(out) as f:
                results.append(json.load(f))
    plain = [{row["size"]: row for row in results[i]["rows"]} for i in (0, 2)]
    logged = {row["size"]: row for row in results[1]["rows"]}
    rows = {}
    for size in sizes:
        runs = [p[size] for p in plain]
        mean = lambda key: round(sum(r[key] for r in runs) / len(runs), 4 if key == "wall_s_per_step" else 1)
        row = {key: runs[0][key] for key in ("size", "precision", "steps", "steps_per_call")}
        for key in ("wall_s_per_step", "cpu_ms_per_step", "system_cpu_ms_per_step", "minor_page_faults_per_step"):
            row[key] = mean(key)
            row[key + "_by_run"] = [r[key] for r in runs]
        onednn = onednn_times(log_section(log_text, size), row["steps"])
        onednn_ms = sum(v["ms"] for v in onednn.values())
        row.update(onednn=onednn, onednn_ms_per_step=round(onednn_ms, 1),
                   outside_onednn_ms=round(row["cpu_ms_per_step"] - onednn_ms, 1),
                   logged_run_wall_s_per_step=logged[size]["wall_s_per_step"])
        rows[size] = row
    if 256 in rows:
        big = rows[256]
        for size, row in rows.items():
            if size == 256:
                continue
            scale = (size / 256) ** 2
            row["excess_ms_vs_256_pixel_scaled"] = {
                "cpu": round(row["cpu_ms_per_step"] - scale * big["cpu_ms_per_step"], 1),
                "outside_onednn": round(row["outside_onednn_ms"] - scale * big["outside_onednn_ms"], 1),
                **{kind: round(row["onednn"][kind]["ms"] - scale * big["onednn"][kind]["ms"], 1) for kind in KINDS},
            }
            row["wall_overhead_vs_256_pixel_scaled"] = round(row["wall_s_per_step"] / (scale * big["wall_s_per_step"]), 3)
    print(json.dumps({"benchmark": "step_profile", **results[0]["machine"], "stages": list(rows.values())}, indent=2))


if __name__ == "__main__":
    main()
