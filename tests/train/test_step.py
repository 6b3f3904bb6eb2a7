import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfcyclegan.train.step import LOSS_NAMES, CycleGAN
from tfcyclegan.model.layers import NormedConv2D, UpConv2D

from conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]


def _dataset(strategy, size, batch=2, n=12, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32)
    b = rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((a, b)).batch(batch, drop_remainder=True)
    return iter(strategy.experimental_distribute_dataset(ds))


@pytest.fixture(scope="module")
def model():
    strategy = tf.distribute.MirroredStrategy()
    with strategy.scope():
        m = CycleGAN(tiny_config(), strategy)
    m.start_stage(32)
    return m


def _weights(net):
    return [v.numpy().copy() for v in net.trainable_variables]


def test_one_step_changes_all_four_networks(model):
    nets = [model.gen_g, model.gen_f, model.disc_a, model.disc_b]
    before = [_weights(n) for n in nets]
    out = model.train_steps(_dataset(model.strategy, 32), first_step=0, steps=1, global_batch=2)
    assert set(out) == set(LOSS_NAMES)
    assert all(np.isfinite(v.numpy()).all() and v.shape == (1,) for v in out.values())
    for net, old in zip(nets, before):
        # Every weight moves but the biases instance norm cancels (layers.NormedConv2D), which
        # get exact zero gradients and so stay as they were.
        cancelled = {id(layer.bias) for layer in net.layers
                     if isinstance(layer, NormedConv2D) or (isinstance(layer, UpConv2D) and not layer.add_bias)}
        assert cancelled  # every network has instance-normed convolutions
        for o, v in zip(old, net.trainable_variables):
            if id(v) in cancelled:
                np.testing.assert_array_equal(o, v.numpy(), err_msg=f"{net.name}: {v.path} should not move")
            else:
                assert not np.array_equal(o, v.numpy()), f"{net.name}: {v.path} unchanged"
    assert model.optimizer_g.iterations.numpy() >= 1 and model.optimizer_d.iterations.numpy() >= 1
    # Total = adversarial + 10 x cycle + 5 x identity (defaults).
    o = {k: float(v.numpy()[0]) for k, v in out.items()}
    expected = o["gen_g_gan"] + o["gen_f_gan"] + 10 * (o["cycle_a"] + o["cycle_b"]) + 5 * (o["identity_a"] + o["identity_b"])
    assert o["gen_total"] == pytest.approx(expected, rel=1e-5)


def test_no_retrace_within_a_stage_and_one_more_for_all_later_sizes(model):
    it = _dataset(model.strategy, 32, n=20)
    model.train_steps(it, first_step=0, steps=2, global_batch=2)
    count = model.tracing_count
    for step, n in [(2, 1), (3, 3), (6, 2)]:
        model.train_steps(it, first_step=step, steps=n, global_batch=2)
    assert model.tracing_count == count  # steps and chunk lengths never retrace
    for size in (48, 64, 96):
        model.start_stage(size)
        model.train_steps(_dataset(model.strategy, size, n=4), first_step=0, steps=2, global_batch=2)
    # One trace for the new size; reduce_retracing makes it generic (None H, W) for the rest.
    assert model.tracing_count <= count + 1


def test_learning_rate_is_set_on_both_optimizers(model):
    model.set_learning_rate(1e-5)
    assert model.optimizer_g.learning_rate.numpy() == pytest.approx(1e-5)
    assert model.optimizer_d.learning_rate.numpy() == pytest.approx(1e-5)


def test_mixed_float16_step_uses_loss_scaling_and_keeps_float32_outputs():
    import keras

    strategy = tf.distribute.get_strategy()
    m = CycleGAN(tiny_config(), strategy, precision="mixed_float16")
    assert isinstance(m.optimizer_g, keras.optimizers.LossScaleOptimizer)
    m.start_stage(32)
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((2, 32, 32, 3), np.float32),) * 2).batch(2)
    out = m.train_steps(iter(strategy.experimental_distribute_dataset(ds)), first_step=0, steps=1, global_batch=2)
    assert all(v.dtype == tf.float32 and np.isfinite(v.numpy()).all() for v in out.values())
    assert m.gen_g.get_layer("c7s1_conv").kernel.dtype == "float32"


ADAM_SHAPES = [(3, 4), (5,), (2, 2, 3)]  # several variables share the step's scalars

FUSED_ADAM = textwrap.dedent("""
    import json
    import sys
    import keras
    import numpy as np
    import tensorflow as tf
    devices = int(sys.argv[1])
    if devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    from tfcyclegan.train.optim import FusedAdam

    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(devices)])
    shapes = [tuple(s) for s in json.loads(sys.argv[3])]
    results = {}
    for optimizer_class in (keras.optimizers.Adam, FusedAdam):
        with strategy.scope():
            ws = [keras.Variable(np.linspace(-1, 1, int(np.prod(s)), dtype=np.float32).reshape(s)) for s in shapes]
            optimizer = optimizer_class(learning_rate=2e-4, beta_1=0.5)
            optimizer.build(ws)

        @tf.function
        def step(i):
            def on_replica():
                replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.float32)
                grads = [tf.sin(w.value * (tf.cast(i, tf.float32) + 1.0 + k + replica)) * 10.0 for k, w in enumerate(ws)]
                optimizer.apply(grads, ws)

            strategy.run(on_replica)

        for i in range(20):
            step(tf.constant(i))
        name = optimizer_class.__name__
        # Keras' batched all-reduce joins every gradient in one IdentityN: no update can start
        # before the last gradient is ready.
        graph = step.get_concrete_function(tf.constant(0)).graph
        results[f"{name}/identity_n"] = np.array(sum(op.type == "IdentityN" for op in graph.get_operations()))
        for k in range(len(shapes)):
            for what, var in (("w", ws[k]), ("m", optimizer._momentums[k]), ("v", optimizer._velocities[k])):
                for d, local in enumerate(strategy.experimental_local_results(var.value)):
                    results[f"{name}/{what}{k}/{d}"] = local.numpy()
    np.savez(sys.argv[2], **results)
""")


@pytest.mark.parametrize("devices", [1, 2])
def test_fused_adam_matches_keras_adam_under_a_strategy(devices, tmp_path):
    out = tmp_path / "adam.npz"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", FUSED_ADAM, str(devices), str(out), json.dumps(ADAM_SHAPES)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = dict(np.load(out))
    assert len(r) == 2 * 3 * len(ADAM_SHAPES) * devices + 2
    assert r["Adam/identity_n"] > 0  # the all-reduce's barrier, in Keras' own Adam
    if devices == 1:  # one replica: nothing to sum, so no barrier between the gradients and the updates
        assert r["FusedAdam/identity_n"] == 0
    else:  # several: the gradients are still summed across the replicas (checked below)
        assert r["FusedAdam/identity_n"] > 0
    for k, shape in enumerate(ADAM_SHAPES):
        start = np.linspace(-1, 1, int(np.prod(shape))).reshape(shape)
        for d in range(devices):
            w0, w1 = r[f"Adam/w{k}/{d}"], r[f"FusedAdam/w{k}/{d}"]
            assert np.abs(w1 - start).max() > 2e-4  # it did move (by more than one step of lr)
            np.testing.assert_allclose(w1, w0, rtol=0, atol=1e-6)
            # The same formula in another order (ResourceApplyAdam takes 1 - beta_2 from the float32
            # beta_2: 1.3e-5 relative): float32 rounding over 20 updates, and small entries of m are differences of
            # large gradients, hence also a bound relative to the largest entry.
            for what in "mv":
                reference = r[f"Adam/{what}{k}/{d}"]
                np.testing.assert_allclose(r[f"FusedAdam/{what}{k}/{d}"], reference, rtol=5e-5,
                                           atol=2e-6 * np.abs(reference).max())
        if devices > 1:  # both devices hold the same values (the gradients were summed across them)
            np.testing.assert_array_equal(r[f"FusedAdam/w{k}/0"], r[f"FusedAdam/w{k}/1"])


def test_joined_identity_and_real_fake_batches_give_the_losses_and_weights_of_separate_calls():
    strategy = tf.distribute.get_strategy()
    model = CycleGAN(tiny_config(), strategy)
    model.start_stage(32)
    rng = np.random.default_rng(3)
    real_a, real_b = (tf.constant(rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)) for _ in range(2))
    seed, batch = tf.constant([0, 1], tf.int64), tf.constant(2)
    weights = [v.numpy() for v in model.generator_variables + model.discriminator_variables]
    losses, after = {}, {}
    for joined in (True, False):
        for v, w in zip(model.generator_variables + model.discriminator_variables, weights):
            v.assign(w)
        for opt in (model.optimizer_g, model.optimizer_d):
            opt.iterations.assign(0)
            for slot in opt._momentums + opt._velocities:
                slot.assign(tf.zeros_like(slot))
        model.start_stage(32)
        model._batch_identity = model._batch_real_fake = joined
        out = model.replica_step((real_a, real_b), seed, batch)
        losses[joined] = {k: float(v) for k, v in out.items()}
        after[joined] = [v.numpy() for v in model.generator_variables + model.discriminator_variables]
    assert losses[True]["identity_a"] > 0
    for name in LOSS_NAMES:
        assert losses[True][name] == pytest.approx(losses[False][name], rel=1e-5, abs=1e-6), name
    moved = max(np.abs(a - w).max() for a, w in zip(after[True], weights))
    assert moved > 1e-5
    # Adam's first step moves each weight by lr * g / (|g| + epsilon): about lr (2e-4) wherever
    # the gradient is not tiny, but a gradient near zero (terms that almost cancel) turns the
    # last-bit differences of another batch layout into a visible share of a step (seen once:
    # 3.6e-6 on 1 weight of 1176). So: at most 0.1 % of the weights off by more than 1e-6, none
    # off by more than 5 % of a step.
    lr = model.config.optim.learning_rate
    diffs = np.concatenate([np.abs(a - b).ravel() for a, b in zip(after[True], after[False])])
    assert np.mean(diffs > 1e-6) <= 1e-3, np.sort(diffs)[-10:]
    assert diffs.max() <= 0.05 * lr, diffs.max()


def test_batch_norm_models_do_not_join_batches():
    import dataclasses

    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, norm="batch"))
    assert CycleGAN(cfg, tf.distribute.get_strategy())._batch_identity is False
    assert CycleGAN(tiny_config(), tf.distribute.get_strategy())._batch_identity is True
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, disc_norm="batch"))
    assert CycleGAN(cfg, tf.distribute.get_strategy())._batch_real_fake is False
    assert CycleGAN(tiny_config(), tf.distribute.get_strategy())._batch_real_fake is True
