"""The mixed-precision policy, and the probe behind --precision=auto on machines without a GPU.

precision:
    auto            mixed_float16 (with loss scaling) on a GPU; on a CPU, mixed_bfloat16 where
                    the probe below finds it faster, else float32
    float32, mixed_float16, mixed_bfloat16


bfloat16 pays on some AVX512-BF16 CPUs and not on others: oneDNN runs its bf16 kernels on
every CPU with the instruction, but on an Intel Xeon without AMX they measured no faster
than float32 (and the casts around instance norm made the whole step 1.4x slower), while on
an AMD EPYC a bf16 step measured 1.5-1.8x faster. No flag tells the two apart, so `auto`
times what dominates the step: a residual block forward and backward under each policy (the
caller passes that timing, `time_block`: tfcyclegan.model.networks.time_residual_block).
The verdict is cached per CPU model and TensorFlow version in
the cache folder (tfcyclegan.io.cache_dir), so a machine decides once and a resumed
run on it uses the same policy.
"""

from __future__ import annotations

import functools
import json
import os
import platform
from typing import Callable

from tfcyclegan.io import cache_dir, write_json
from tfcyclegan.runtime.strategy import has_gpu

# bfloat16 must make the block at least this much faster to be chosen: below it, run-to-run
# noise and the float32 casts outside the blocks would eat the gain.
MIN_BF16_SPEEDUP = 1.15


def cpu_model_and_flags() -> tuple[str, frozenset[str]]:
    """('Intel(R) Xeon(R) ...', {'avx512_bf16', ...}) from /proc/cpuinfo; (platform, {}) elsewhere."""
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    model = value.strip()
                elif key.strip() in ("flags", "Features"):
                    flags = frozenset(value.split())
                    break
    except OSError:
        pass
    return model, flags


def has_bf16_instructions(flags: frozenset[str] | None = None) -> bool:
    flags = cpu_model_and_flags()[1] if flags is None else flags
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})  # x86 AVX512-BF16 / AMX, Arm BF16


def _cache_path() -> str:
    return os.path.join(cache_dir(), "precision_probe.json")


TimeBlock = Callable[[str], float]  # dtype policy name -> best seconds of a residual block step


@functools.lru_cache(maxsize=None)
def bf16_speedup(time_block: TimeBlock) -> float:
    """float32 time / bfloat16 time of `time_block` on this CPU (cached on disk per CPU model)."""
    import tensorflow as tf

    key = f"{cpu_model_and_flags()[0]} | tf {tf.__version__} | {os.cpu_count()} cpus"
    path = _cache_path()
    try:
        with open(path) as f:
            cached = json.load(f)
        if key in cached:
            return float(cached[key])
    except (OSError, ValueError):
        cached = {}
    speedup = time_block("float32") / time_block("mixed_bfloat16")
    try:
        cached[key] = round(speedup, 3)
        write_json(path, cached)
    except OSError:
        pass  # a read-only home: probe again next time
    return speedup


def cpu_precision(time_block: TimeBlock) -> str:
    """The policy `--precision=auto` picks on a machine without a GPU."""
    if not has_bf16_instructions():
        return "float32"
    return "mixed_bfloat16" if bf16_speedup(time_block) >= MIN_BF16_SPEEDUP else "float32"


def describe_device(time_block: TimeBlock) -> str:
    """'GPU' or the CPU model with the bfloat16 probe's verdict, for the run's log."""
    if has_gpu():
        return "GPU"
    model, flags = cpu_model_and_flags()
    if not has_bf16_instructions(flags):
        return f"{model}, no bfloat16 instructions"
    return f"{model}: a residual block runs {bf16_speedup(time_block):.2f}x as fast in bfloat16"


def resolve_precision(precision: str, time_block: TimeBlock) -> str:
    """auto: mixed_float16 on a GPU; on a CPU, mixed_bfloat16 where `time_block` runs faster in
    it (cpu_precision, decided once per CPU model), else float32."""
    if precision == "auto":
        return "mixed_float16" if has_gpu() else cpu_precision(time_block)
    return precision
