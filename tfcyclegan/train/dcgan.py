"""The DCGAN: a generator of images from noise and its discriminator, trained on domain A.

One step updates the discriminator on a real batch and a batch generated from fresh noise,
then the generator on another fresh batch, as the reference does (one Adam each, LSGAN by
default, vanilla and hinge as options). The noise of every step is a function of (seed,
global step, replica), so a resumed run draws exactly what an uninterrupted one would. The
compiled loop around the step is train.gan's. No I/O here.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfcyclegan import pictures
from tfcyclegan.config import TrainConfig
from tfcyclegan.io import to_uint8
from tfcyclegan.model import losses
from tfcyclegan.model.dcgan import build_dcgan_discriminator, build_dcgan_generator
from tfcyclegan.train.gan import GANModel
from tfcyclegan.train.optim import make_optimizer

LOSS_NAMES = ("gen_gan", "disc", "disc_real", "disc_fake")
GRID_COLUMNS = 8
INTERPOLATION_STEPS = 10


def fixed_z(seed: int, count: int, z_dim: int) -> np.ndarray:
    """float32 (count, z_dim): the same noise for every sample grid of a run (its seed decides)."""
    return np.random.default_rng([seed, 20160119]).standard_normal((count, z_dim)).astype(np.float32)


def interpolate_z(z0: np.ndarray, z1: np.ndarray, steps: int = INTERPOLATION_STEPS) -> np.ndarray:
    """float32 (steps, z_dim): spherical interpolation from z0 to z1 (Gaussian noise lives near a
    sphere, which a straight line would leave)."""
    a, b = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
    omega = np.arccos(np.clip(np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b)), -1.0, 1.0))
    out = []
    for t in np.linspace(0.0, 1.0, steps):
        if omega < 1e-6:
            out.append((1 - t) * a + t * b)
        else:
            out.append((np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega))
    return np.stack(out).astype(np.float32)


class DCGAN(GANModel):
    """Build under `strategy.scope()`. precision: "float32", "mixed_float16" or "mixed_bfloat16"."""

    loss_names = LOSS_NAMES
    domains = ("a",)  # a training batch holds (real,)
    loss_panels = (
        ("Generator", ("gen_gan",)),
        ("Discriminator", ("disc", "disc_real", "disc_fake")),
    )

    def __init__(self, config: TrainConfig, strategy: tf.distribute.Strategy, *, precision: str = "float32"):
        super().__init__(config, strategy, precision=precision, name="dcgan")
        self.size = config.schedule.stages[0].size
        self.z_dim = config.model.z_dim
        self.generator = build_dcgan_generator(size=self.size, z_dim=self.z_dim, filters=config.model.gen_filters,
                                               dtype=precision, name="generator")
        self.discriminator = build_dcgan_discriminator(size=self.size, filters=config.model.disc_filters,
                                                       dtype=precision, name="discriminator")
        self.optimizer_g = make_optimizer(config, precision, "optimizer_g")
        self.optimizer_d = make_optimizer(config, precision, "optimizer_d")
        self.optimizer_g.build(self.generator.trainable_variables)
        self.optimizer_d.build(self.discriminator.trainable_variables)

    def checkpoint_items(self) -> dict[str, tf.Module]:
        return dict(generator=self.generator, discriminator=self.discriminator,
                    optimizer_g=self.optimizer_g, optimizer_d=self.optimizer_d)

    def progress_fields(self, losses_now: dict[str, float]) -> dict[str, str]:
        return dict(G=f"{losses_now['gen_gan']:.3f}", D=f"{losses_now['disc']:.3f}")

    def epoch_summary(self, losses_now: dict[str, float]) -> str:
        return f"G {losses_now['gen_gan']:.3f}, D {losses_now['disc']:.3f}"

    def replica_step(self, batch, seed: tf.Tensor, global_batch: tf.Tensor) -> dict[str, tf.Tensor]:
        """One training step on this replica's part of the global batch.

        batch: (real,), float32 (batch, size, size, 3) in [-1, 1]; seed: int64 (2,) for the
        noise; global_batch: int32 scalar. Returns {name: float32 scalar}, this replica's share
        of the global-batch mean.
        """
        (real,) = batch
        kind = self.config.loss.gan
        average = lambda per_example: tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)  # noqa: E731
        n = tf.shape(real)[0]
        z_d = tf.random.stateless_normal(tf.stack([n, self.z_dim]), seed=seed)
        z_g = tf.random.stateless_normal(tf.stack([n, self.z_dim]), seed=seed + tf.constant([0, 1], seed.dtype))

        fake = tf.stop_gradient(self.generator(z_d, training=True))
        with tf.GradientTape() as tape:
            real_part, fake_part = losses.discriminator_loss_parts(
                real_logits=self.discriminator(real, training=True),
                fake_logits=self.discriminator(fake, training=True), kind=kind)
            disc_real, disc_fake = average(real_part), average(fake_part)  # which side the discriminator wins
            disc = disc_real + disc_fake
            scaled = self._scaled(self.optimizer_d, disc)
        self._apply(self.optimizer_d, tape, scaled, self.discriminator.trainable_variables)

        with tf.GradientTape() as tape:
            gen_gan = average(losses.generator_gan_loss(
                fake_logits=self.discriminator(self.generator(z_g, training=True), training=True), kind=kind))
            scaled = self._scaled(self.optimizer_g, gen_gan)
        self._apply(self.optimizer_g, tape, scaled, self.generator.trainable_variables)
        return dict(gen_gan=gen_gan, disc=disc, disc_real=disc_real, disc_fake=disc_fake)

    # -- samples -----------------------------------------------------------------------------

    def generate(self, z: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """z: float32 (n, z_dim) -> float32 (n, size, size, 3) in [-1, 1], inference mode."""
        return np.concatenate([np.asarray(self.generator(z[i:i + batch_size], training=False))
                               for i in range(0, len(z), batch_size)])

    def sample_inputs(self, held_out, size: int, count: int) -> np.ndarray:
        """The run's fixed noise: 8 columns, at least `count` images."""
        rows = max(1, -(-max(count, GRID_COLUMNS) // GRID_COLUMNS))
        return fixed_z(self.config.seed, rows * GRID_COLUMNS, self.z_dim)

    def sample_grid(self, z: np.ndarray) -> np.ndarray:
        """uint8 grid of the images of the fixed noise, 8 per row."""
        return pictures.image_grid(to_uint8(self.generate(z)), columns=GRID_COLUMNS)

    def after_training(self, samples_dir: str) -> None:
        """An interpolation strip between the first two images of the fixed noise."""
        import os

        from tfcyclegan.io import save_png

        z = fixed_z(self.config.seed, 2, self.z_dim)
        strip = pictures.image_grid(to_uint8(self.generate(interpolate_z(z[0], z[1]))), columns=INTERPOLATION_STEPS)
        save_png(strip, os.path.join(samples_dir, "interpolation.png"))
