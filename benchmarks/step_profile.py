"""Where a training step's CPU time goes, per stage size: oneDNN's primitives by kind, and the rest.

    python -m benchmarks.step_profile                     # 48 and 256 px, full model, the trainer's defaults
    python -m benchmarks.step_profile --sizes=48,64 --steps=16

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
pixel count: what makes a small step cost more than its pixels (docs/performance.md).

oneDNN's log times a primitive by the wall clock of the thread that runs it. The figures hold
with one thread per op (--cpu_threads=auto on 2 cores) on an otherwise idle machine; "warnings"
in the JSON says when they do not (oneDNN's total above the logged run's own CPU time: the host
had other work; more than one thread per op).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from benchmarks.common import (
    build_model,
    chunk_runner,
    chunk_steps,
    machine_info,
    resolve_precision,
    threads_per_op,
)
from tfcyclegan import config as config_lib
from tfcyclegan.runtime import strategy as strategy_lib
from tfcyclegan.train.trainer import steps_for_call

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
    """The lines between the logged run's begin and end markers for `size`; they must hold
    oneDNN exec lines (none: oneDNN is off, or its log never started)."""
    begin, end = BEGIN.format(size=size), END.format(size=size)
    lines = text.splitlines()
    try:
        first, last = lines.index(begin), lines.index(end)
    except ValueError:
        raise SystemExit(f"step_profile: the logged run has no section for {size} px")
    section = lines[first + 1:last]
    if not any(",exec," in line for line in section):
        raise SystemExit(f"step_profile: oneDNN logged nothing at {size} px. Is oneDNN off "
                         f"(TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')})? "
                         "This profile splits oneDNN's time and needs it on (TensorFlow's default on x86).")
    return section


def summarize(plain_runs: list[dict[int, dict]], log_text: str, sizes: list[int]) -> dict[int, dict]:
    """Per size: the unlogged runs' mean figures (and each run's), oneDNN's time by kind from
    the logged run, and the CPU time outside oneDNN."""
    rows = {}
    for size in sizes:
        runs = [run[size] for run in plain_runs]
        setup = {key: runs[0][key] for key in ("size", "precision", "threads_per_op", "steps", "steps_per_call")}
        if any({key: run[key] for key in setup} != setup for run in runs):
            raise SystemExit(f"step_profile: the runs at {size} px differ in their set-up: {runs}")
        row = dict(setup)
        for key, digits in (("wall_s_per_step", 4), ("cpu_ms_per_step", 1), ("system_cpu_ms_per_step", 1),
                            ("minor_page_faults_per_step", 1)):
            row[key] = round(sum(run[key] for run in runs) / len(runs), digits)
            row[key + "_by_run"] = [run[key] for run in runs]
        onednn = onednn_times(log_section(log_text, size), row["steps"])
        onednn_ms = sum(v["ms"] for v in onednn.values())
        row.update(onednn=onednn, onednn_ms_per_step=round(onednn_ms, 1),
                   outside_onednn_ms=round(row["cpu_ms_per_step"] - onednn_ms, 1))
        rows[size] = row
    return rows


def add_excess_over_256(rows: dict[int, dict]) -> None:
    """For every size below 256 (with 256 among rows): each figure minus the 256 px figure
    scaled by pixel count, and the wall-time ratio to the scaled 256 px step."""
    if 256 not in rows:
        return
    big = rows[256]
    for size, row in rows.items():
        if size >= 256:
            continue
        scale = (size / 256) ** 2
        excess = lambda mine, theirs: round(mine - scale * theirs, 1)
        row["excess_ms_vs_256_pixel_scaled"] = {
            "cpu": excess(row["cpu_ms_per_step"], big["cpu_ms_per_step"]),
            "outside_onednn": excess(row["outside_onednn_ms"], big["outside_onednn_ms"]),
            **{kind: excess(row["onednn"][kind]["ms"], big["onednn"][kind]["ms"]) for kind in KINDS},
        }
        row["wall_overhead_vs_256_pixel_scaled"] = round(row["wall_s_per_step"] / (scale * big["wall_s_per_step"]), 3)


def profile(args, sizes: list[int]) -> dict[int, dict]:
    """One run (a child process): whole calls of steps at every size, between log markers; {size: row}."""
    strategy_lib.configure_cpu_threads(args.cpu_threads)
    cfg, strategy, model = build_model(batch=1, steps_per_call=args.steps_per_call, gen_blocks=args.gen_blocks,
                                       precision=args.precision)
    rows = {}
    for size in sizes:
        per_call = steps_for_call(cfg, size)
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
            "size": size, "precision": model.precision, "threads_per_op": threads_per_op(), "steps": steps,
            "steps_per_call": per_call, "wall_s_per_step": round(wall / steps, 4), "cpu_ms_per_step": round(cpu_ms, 1),
            "system_cpu_ms_per_step": round(1000 * (after.ru_stime - before.ru_stime) / steps, 1),
            "minor_page_faults_per_step": round((after.ru_minflt - before.ru_minflt) / steps, 1),
        }
        print(f"step_profile: {size} px timed", file=sys.stderr, flush=True)
    return rows


def run_children(args, precision: str) -> tuple[list[dict], str]:
    """The three runs (plain, logged, plain): ([their results], the logged run's stdout)."""
    results, log_text = [], ""
    # Only the logged run has oneDNN's log on, from its start (oneDNN reads the variable once).
    clean_env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_VERBOSE", "DNNL_VERBOSE")}
    with tempfile.TemporaryDirectory(prefix="tfcyclegan_step_profile_") as scratch:
        for i, kind in enumerate(("plain", "logged", "plain")):
            out = os.path.join(scratch, f"{i}.json")
            cmd = [sys.executable, "-m", "benchmarks.step_profile", f"--child={kind}", f"--out={out}",
                   f"--sizes={args.sizes}", f"--steps={args.steps}", f"--steps_per_call={args.steps_per_call}",
                   f"--cpu_threads={args.cpu_threads}", f"--precision={precision}", f"--gen_blocks={args.gen_blocks}"]
            if i == 0:  # the report's machine figures (its matmul rates take seconds): from one run, after its steps
                cmd.append("--machine_info")
            env = {**clean_env, "ONEDNN_VERBOSE": "1"} if kind == "logged" else clean_env
            print(f"step_profile: run {i + 1} of 3 ({kind}) ...", file=sys.stderr, flush=True)
            with open(os.path.join(scratch, f"{i}.log"), "w+") as log:
                done = subprocess.run(cmd, stdout=log, env=env, cwd=Path(__file__).resolve().parents[1])
                log.seek(0)
                text = log.read()
            if done.returncode != 0:
                tail = "\n".join(text.splitlines()[-20:])
                raise SystemExit(f"step_profile: run {i + 1} ({kind}) failed with exit code {done.returncode}: "
                                 f"{' '.join(cmd)}\nits last output lines:\n{tail}")
            if kind == "logged":
                log_text = text
            with open(out) as f:
                results.append(json.load(f))
    return results, log_text


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
    parser.add_argument("--machine_info", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes must be comma-separated pixel sizes like 48,256, got {args.sizes!r}")
    if len(set(sizes)) != len(sizes) or min(sizes) < 16:
        parser.error(f"--sizes must be distinct sizes of at least 16 px (the trainer's smallest stage), got {args.sizes!r}")
    if args.child:
        rows = profile(args, sizes)
        with open(args.out, "w") as f:
            json.dump({"rows": list(rows.values()), "machine": machine_info() if args.machine_info else None}, f)
        return

    # Decided once here, so that the three runs cannot pick different precisions.
    precision = resolve_precision(args.precision)
    results, log_text = run_children(args, precision)
    rows = summarize([{row["size"]: row for row in results[i]["rows"]} for i in (0, 2)], log_text, sizes)
    warnings = []
    for logged in results[1]["rows"]:
        row = rows[logged["size"]]
        row["logged_run_wall_s_per_step"] = logged["wall_s_per_step"]
        row["logged_run_cpu_ms_per_step"] = logged["cpu_ms_per_step"]
        # oneDNN times a primitive by the wall clock: on a busy host that includes waiting for a core.
        if row["onednn_ms_per_step"] > 1.02 * logged["cpu_ms_per_step"]:
            warnings.append(f"{logged['size']} px: oneDNN's primitives took {row['onednn_ms_per_step']} ms per step, more "
                            f"than the logged run's CPU time ({logged['cpu_ms_per_step']} ms): the host had other work; "
                            "run again on an idle machine")
    if any(row["threads_per_op"] > 1 for row in rows.values()):
        warnings.append("more than one thread per op: oneDNN's log times a primitive by the wall time of the thread "
                        "that calls it, so outside_onednn_ms also holds the other threads' share")
    add_excess_over_256(rows)
    report = {"benchmark": "step_profile", **results[0]["machine"], "stages": list(rows.values()), "warnings": warnings}
    for warning in warnings:
        print(f"step_profile: warning: {warning}", file=sys.stderr)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
