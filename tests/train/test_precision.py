"""Mixed precision on the CPU: float16 loss scaling (drop on overflow, growth back), bfloat16
against float32, and float16 overflow on one replica of two.

The steps run eagerly (`CycleGAN.replica_step` outside tf.function): the same code as the
compiled step, without a trace per model, which keeps these tests to seconds.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfcyclegan.train.step import LOSS_NAMES, CycleGAN

from conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]
OVERFLOW = 1e5  # > 65504, the largest float16: the generators' first layer sees inf


def _batch(seed, fill=None):
    rng = np.random.default_rng(seed)
    a, b = (rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32) for _ in range(2))
    if fill is not None:
        a[:] = fill
    return tf.constant(a), tf.constant(b)


def _step(model, batch, step):
    return model.replica_step(tuple(batch), tf.constant([0, step], tf.int64), tf.constant(2))


def _weights(model):
    return [v.numpy().copy() for v in model.generator_variables + model.discriminator_variables]


def test_float16_loss_scale_halves_on_overflow_skips_the_step_and_grows_back():
    model = CycleGAN(tiny_config(pool_size=0), tf.distribute.get_strategy(), precision="mixed_float16")
    model.start_stage(32)
    optimizers = (model.optimizer_g, model.optimizer_d)
    for opt in optimizers:
        assert isinstance(opt, keras.optimizers.LossScaleOptimizer)
        assert opt.dynamic_growth_steps == 2000 and opt.dynamic_scale.numpy() == 2.0**15  # Keras defaults
        # The scale dynamic scaling settles at for this model after a few overflowing steps
        # (the generator loss, ~18, times 2**15 overflows float16 gradients at first).
        opt.dynamic_scale.assign(2.0**10)
    out = _step(model, _batch(0), 0)
    assert all(np.isfinite(out[name].numpy()) for name in LOSS_NAMES)
    assert [int(opt.step_counter.numpy()) for opt in optimizers] == [1, 1]  # finite: counted, no change
    assert [float(opt.dynamic_scale.numpy()) for opt in optimizers] == [2.0**10, 2.0**10]

    before, iterations = _weights(model), [int(opt.iterations.numpy()) for opt in optimizers]
    out = _step(model, _batch(1, fill=OVERFLOW), 1)
    assert not np.isfinite(out["gen_total"].numpy())
    assert [float(opt.dynamic_scale.numpy()) for opt in optimizers] == [2.0**9, 2.0**9]  # halved
    assert [int(opt.step_counter.numpy()) for opt in optimizers] == [0, 0]
    assert [int(opt.iterations.numpy()) for opt in optimizers] == iterations  # the update was skipped...
    for old, new in zip(before, _weights(model)):
        np.testing.assert_array_equal(old, new)  # ...so no NaN reached the weights

    # The scale doubles after `dynamic_growth_steps` consecutive finite steps (2000 by
    # default; 2 here, to see it happen).
    for opt in optimizers:
        opt.dynamic_growth_steps = 2
    _step(model, _batch(2), 2)
    assert [float(opt.dynamic_scale.numpy()) for opt in optimizers] == [2.0**9, 2.0**9]
    _step(model, _batch(3), 3)
    assert [float(opt.dynamic_scale.numpy()) for opt in optimizers] == [2.0**10, 2.0**10]  # grown back
    assert [int(opt.iterations.numpy()) for opt in optimizers] == [i + 2 for i in iterations]
    assert all(np.isfinite(w).all() for w in _weights(model))


# bfloat16 keeps 8 significant bits (relative rounding 2**-9 = 0.2% per operation); the
# variables, the final activations and the losses stay float32. Measured on this batch: the
# losses within 0.4% of float32, the first Adam update's direction at cosine 0.93.
BF16_LOSS_RTOL = 2e-2
BF16_UPDATE_COSINE = 0.8


def test_bfloat16_step_stays_close_to_float32_on_a_fixed_batch():
    strategy = tf.distribute.get_strategy()
    f32 = CycleGAN(tiny_config(pool_size=0), strategy, precision="float32")
    bf16 = CycleGAN(tiny_config(pool_size=0), strategy, precision="mixed_bfloat16")
    for name in ("gen_g", "gen_f", "disc_a", "disc_b"):
        getattr(bf16, name).set_weights(getattr(f32, name).get_weights())
        assert {v.dtype for v in getattr(bf16, name).weights} == {"float32"}
    for m in (f32, bf16):
        m.start_stage(32)
    batch = _batch(0)
    start = _weights(f32)
    assert bf16.gen_g(batch[0]).dtype == tf.float32
    assert bf16.gen_g.get_layer("c7s1_conv").compute_dtype == "bfloat16"

    expected, got = _step(f32, batch, 0), _step(bf16, batch, 0)
    for name in LOSS_NAMES:
        assert got[name].dtype == tf.float32
        np.testing.assert_allclose(got[name].numpy(), expected[name].numpy(), rtol=BF16_LOSS_RTOL, err_msg=name)
    # A broken gradient (zero, sign-flipped, unscaled) would fail this; rounding does not.
    update_f32 = np.concatenate([(w - s).ravel() for w, s in zip(_weights(f32), start)])
    update_bf16 = np.concatenate([(w - s).ravel() for w, s in zip(_weights(bf16), start)])
    cosine = update_f32 @ update_bf16 / (np.linalg.norm(update_f32) * np.linalg.norm(update_bf16))
    assert cosine > BF16_UPDATE_COSINE, cosine


TWO_REPLICAS = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from conftest import tiny_config
    from tfcyclegan.train.step import CycleGAN

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = CycleGAN(tiny_config(pool_size=0), strategy, precision="mixed_float16")
    model.start_stage(32)
    rng = np.random.default_rng(0)
    a, b = (rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32) for _ in range(2))
    a[2:] = 1e5  # the second replica's half of the global batch overflows float16
    real_a, real_b = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors((a, b)))))
    for opt in (model.optimizer_g, model.optimizer_d):
        opt.dynamic_scale.assign(1024.0)
    before = [v.numpy().copy() for v in model.generator_variables + model.discriminator_variables]
    strategy.run(model._replica_step_with_id, args=((real_a, real_b), tf.constant([0, 0], tf.int64), tf.constant(4)))
    after = [v.numpy() for v in model.generator_variables + model.discriminator_variables]
    print("scales", float(model.optimizer_g.dynamic_scale.numpy()), float(model.optimizer_d.dynamic_scale.numpy()))
    print("unchanged", all(np.array_equal(x, y) for x, y in zip(before, after)))
    print("finite", all(np.isfinite(w).all() for w in after))
""")


def test_float16_overflow_on_one_replica_skips_the_step_on_all():
    """Keras decides from the first replica's own gradients; without our agreement the other
    replica's inf reaches the all-reduce and the discriminators' weights become NaN."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    env.pop("TF_CONFIG", None)
    proc = subprocess.run([sys.executable, "-c", TWO_REPLICAS], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())
    assert lines == {"scales": "512.0 512.0", "unchanged": "True", "finite": "True"}, proc.stdout
