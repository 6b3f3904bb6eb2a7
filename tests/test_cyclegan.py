import numpy as np
import pytest
import tensorflow as tf

from tfcyclegan.cyclegan import LOSS_NAMES, CycleGAN

from conftest import tiny_config


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
    m.reset_pools(32)
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
        changed = [not np.array_equal(o, v.numpy()) for o, v in zip(old, net.trainable_variables)]
        assert all(changed), f"{net.name}: {changed.count(False)} variables unchanged"
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
        model.reset_pools(size)
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
    m.reset_pools(32)
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((2, 32, 32, 3), np.float32),) * 2).batch(2)
    out = m.train_steps(iter(strategy.experimental_distribute_dataset(ds)), first_step=0, steps=1, global_batch=2)
    assert all(v.dtype == tf.float32 and np.isfinite(v.numpy()).all() for v in out.values())
    assert m.gen_g.get_layer("c7s1_conv").kernel.dtype == "float32"
