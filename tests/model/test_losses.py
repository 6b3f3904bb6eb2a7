import numpy as np
import pytest
import tensorflow as tf

from tfcyclegan.model import losses


def test_lsgan_known_values():
    fake = tf.constant([[[[0.5]], [[0.0]]], [[[1.0]], [[1.0]]]])  # (2, 2, 1, 1)
    real = tf.constant([[[[1.0]], [[0.0]]], [[[2.0]], [[1.0]]]])
    np.testing.assert_allclose(losses.generator_gan_loss(fake_logits=fake).numpy(), [(0.25 + 1) / 2, 0.0])
    d = losses.discriminator_loss(real_logits=real, fake_logits=fake).numpy()
    # 0.5 * (mean((real-1)^2) + mean(fake^2))
    np.testing.assert_allclose(d, [0.5 * (0.5 + 0.125), 0.5 * (0.5 + 1.0)])


def test_vanilla_is_bce_from_logits():
    logits = tf.constant([[[[0.0]]], [[[2.0]]]])
    g = losses.generator_gan_loss(fake_logits=logits, kind="vanilla").numpy()
    np.testing.assert_allclose(g, [np.log(2.0), np.log1p(np.exp(-2.0))], rtol=1e-6)
    d = losses.discriminator_loss(real_logits=logits, fake_logits=logits, kind="vanilla").numpy()
    np.testing.assert_allclose(d[0], np.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(d[1], 0.5 * (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(2.0))), rtol=1e-6)


def test_hinge_known_values():
    real = tf.constant([[[[0.5]]], [[[2.0]]]])
    fake = tf.constant([[[[-2.0]]], [[[0.5]]]])
    np.testing.assert_allclose(losses.discriminator_loss(real_logits=real, fake_logits=fake, kind="hinge").numpy(),
                               [0.5 + 0.0, 0.0 + 1.5])
    np.testing.assert_allclose(losses.generator_gan_loss(fake_logits=fake, kind="hinge").numpy(), [2.0, -0.5])


def test_l1_is_mean_absolute_error_per_example():
    a = tf.zeros((2, 4, 4, 3))
    b = tf.concat([tf.fill((1, 4, 4, 3), 0.5), tf.fill((1, 4, 4, 3), -1.0)], 0)
    np.testing.assert_allclose(losses.l1_loss(target=a, prediction=b).numpy(), [0.5, 1.0])


def test_losses_are_float32_for_bfloat16_inputs():
    x = tf.cast(tf.ones((2, 3, 3, 1)), tf.bfloat16)
    assert losses.generator_gan_loss(fake_logits=x).dtype == tf.float32
    assert losses.l1_loss(target=x, prediction=x * 0).dtype == tf.float32


def test_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="lsgan, vanilla or hinge"):
        losses.generator_gan_loss(fake_logits=tf.zeros((1, 1, 1, 1)), kind="wgan")
