"""CycleGAN losses as pure functions with keyword-only arguments.

Every function returns a per-example loss, float32 (batch,), so the train step can average
over the *global* batch with tf.nn.compute_average_loss under any tf.distribute strategy.
Logits are discriminator outputs of any shape (batch, h, w, 1); images are (batch, H, W, 3)
in [-1, 1].

GAN losses (`kind`):
- "lsgan" (default, as the paper): D minimizes 0.5 * [(D(x) - 1)^2 + D(G(z))^2],
  G minimizes (D(G(z)) - 1)^2.
- "vanilla": binary cross-entropy from logits (real = 1, fake = 0), D loss halved as above.
- "hinge": D minimizes relu(1 - D(x)) + relu(1 + D(G(z))), G minimizes -D(G(z)).
"""

from __future__ import annotations

import tensorflow as tf


def _per_example_mean(x: tf.Tensor) -> tf.Tensor:
    x = tf.cast(x, tf.float32)
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def _bce(logits: tf.Tensor, label: float) -> tf.Tensor:
    logits = tf.cast(logits, tf.float32)
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), label), logits=logits)


def generator_gan_loss(*, fake_logits: tf.Tensor, kind: str = "lsgan") -> tf.Tensor:
    """The generator's adversarial loss: how far D(G(x)) is from "real". Returns (batch,)."""
    fake_logits = tf.cast(fake_logits, tf.float32)
    if kind == "lsgan":
        return _per_example_mean(tf.square(fake_logits - 1.0))
    if kind == "vanilla":
        return _per_example_mean(_bce(fake_logits, 1.0))
    if kind == "hinge":
        return _per_example_mean(-fake_logits)
    raise ValueError(f"Unknown GAN loss {kind!r}: use lsgan, vanilla or hinge.")


def discriminator_loss_parts(*, real_logits: tf.Tensor, fake_logits: tf.Tensor, kind: str = "lsgan") -> tuple[tf.Tensor, tf.Tensor]:
    """The discriminator's loss on the real and on the (pooled) fake batch, each (batch,); their
    sum is discriminator_loss."""
    real_logits = tf.cast(real_logits, tf.float32)
    fake_logits = tf.cast(fake_logits, tf.float32)
    if kind == "lsgan":
        return 0.5 * _per_example_mean(tf.square(real_logits - 1.0)), 0.5 * _per_example_mean(tf.square(fake_logits))
    if kind == "vanilla":
        return 0.5 * _per_example_mean(_bce(real_logits, 1.0)), 0.5 * _per_example_mean(_bce(fake_logits, 0.0))
    if kind == "hinge":
        return _per_example_mean(tf.nn.relu(1.0 - real_logits)), _per_example_mean(tf.nn.relu(1.0 + fake_logits))
    raise ValueError(f"Unknown GAN loss {kind!r}: use lsgan, vanilla or hinge.")


def discriminator_loss(*, real_logits: tf.Tensor, fake_logits: tf.Tensor, kind: str = "lsgan") -> tf.Tensor:
    """The discriminator's loss on a real and a (pooled) fake batch. Returns (batch,)."""
    real, fake = discriminator_loss_parts(real_logits=real_logits, fake_logits=fake_logits, kind=kind)
    return real + fake


def l1_loss(*, target: tf.Tensor, prediction: tf.Tensor) -> tf.Tensor:
    """Mean absolute error per example: the cycle loss (real vs cycled) and the identity
    loss (real vs same). Returns (batch,)."""
    return _per_example_mean(tf.abs(tf.cast(target, tf.float32) - tf.cast(prediction, tf.float32)))
