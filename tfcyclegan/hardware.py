"""What this CPU does fast: the probe behind --precision=auto on machines without a GPU.

bfloat16 pays on some AVX512-BF16 CPUs and not on others: oneDNN runs its bf16 kernels on
every CPU with the instruction, but on an Intel Xeon without AMX they measured no faster
than float32 (and the casts around instance norm made the whole step 1.4x slower), while on
an AMD EPYC a bf16 step measured 1.5-1.8x faster. No flag tells the two apart, so `auto`
times what dominates the step: a residual block (reflect pad, 3x3 conv, instance norm, ReLU,
twice, plus the skip; 80 % of the generator's work) forward and backward, under each policy.
The verdict is cached per CPU model and TensorFlow version in
$TFCYCLEGAN_CACHE_DIR (default ~/.cache/tfcyclegan), so a machine decides once and a resumed
run on it uses the same policy.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time

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


def time_residual_block(dtype: str, *, size: int = 32, channels: int = 256, repeats: int = 5) -> float:
    """Best seconds of one residual block forward + backward (input and weight gradients)."""
    import keras
    import tensorflow as tf

    from tfcyclegan.models import apply_residual_block

    inputs = keras.Input((None, None, channels), dtype="float32")
    outputs = apply_residual_block(inputs, channels, norm="instance", name="probe", dtype=dtype)
    block = keras.Model(inputs, keras.layers.Activation("linear", dtype="float32")(outputs))
    x = tf.random.stateless_normal((1, size, size, channels), seed=[0, 0])

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_mean(tf.square(block(x, training=True)))
        return tape.gradient(loss, [x] + block.trainable_variables)

    step(x)[0].numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step(x)[0].numpy()
        best = min(best, time.perf_counter() - start)
    return best


def _cache_path() -> str:
    root = os.environ.get("TFCYCLEGAN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "tfcyclegan")
    return os.path.join(root, "precision_probe.json")


@functools.lru_cache(maxsize=None)
def bf16_speedup() -> float:
    """float32 time / bfloat16 time of the residual block on this CPU (cached on disk)."""
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
    speedup = time_residual_block("float32") / time_residual_block("mixed_bfloat16")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cached[key] = round(speedup, 3)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(cached, f, indent=1)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: probe again next time
    return speedup


def cpu_precision() -> str:
    """The policy `--precision=auto` picks on a machine without a GPU."""
    if not has_bf16_instructions():
        return "float32"
    return "mixed_bfloat16" if bf16_speedup() >= MIN_BF16_SPEEDUP else "float32"
