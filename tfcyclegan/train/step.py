"""The CycleGAN: its four networks, their optimizers and its train step (the compiled loop
around it is train.gan's). No I/O here.

Names follow the paper, written once:
    gen_g: A -> B      gen_f: B -> A      disc_a: real A vs fake A      disc_b: real B vs fake B
    fake_b = gen_g(real_a)   cycled_a = gen_f(fake_b)   same_a = gen_f(real_a)   (and mirrored)

One step updates both generators (one Adam over gen_g and gen_f), then both discriminators
(one Adam over disc_a and disc_b) on fakes drawn through the image pools, as the official
code does. Per-example losses are averaged over the *global* batch, so gradients summed
across replicas by the optimizer equal the single-device gradient of the global batch.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfcyclegan import pictures
from tfcyclegan.config import TrainConfig
from tfcyclegan.model import fast_ops, losses
from tfcyclegan.model.image_pool import ImagePool
from tfcyclegan.model.networks import build_discriminator, build_generator
from tfcyclegan.train.gan import GANModel
from tfcyclegan.train.optim import make_optimizer

LOSS_NAMES = (
    "gen_g_gan", "gen_f_gan", "cycle_a", "cycle_b", "identity_a", "identity_b",
    "gen_total", "disc_a", "disc_b",
)


class CycleGAN(GANModel):
    """Build under `strategy.scope()`. precision: "float32", "mixed_float16" or "mixed_bfloat16"."""

    loss_names = LOSS_NAMES
    domains = ("a", "b")  # what a training batch holds: (real_a, real_b)
    loss_panels = (
        ("Adversarial (generators)", ("gen_g_gan", "gen_f_gan")),
        ("Cycle L1", ("cycle_a", "cycle_b")),
        ("Identity L1", ("identity_a", "identity_b")),
        ("Discriminators", ("disc_a", "disc_b")),
    )

    def __init__(self, config: TrainConfig, strategy: tf.distribute.Strategy, *, precision: str = "float32"):
        super().__init__(config, strategy, precision=precision, name="cyclegan")
        model_cfg = config.model
        self.gen_g = build_generator(model_cfg, dtype=precision, name="gen_g")
        self.gen_f = build_generator(model_cfg, dtype=precision, name="gen_f")
        self.disc_a = build_discriminator(model_cfg, dtype=precision, name="disc_a")
        self.disc_b = build_discriminator(model_cfg, dtype=precision, name="disc_b")
        self.optimizer_g = make_optimizer(config, precision, "optimizer_g")
        self.optimizer_d = make_optimizer(config, precision, "optimizer_d")
        self.optimizer_g.build(self.generator_variables)
        self.optimizer_d.build(self.discriminator_variables)
        self.pool_a = ImagePool(config.pool_size, name="pool_a")
        self.pool_b = ImagePool(config.pool_size, name="pool_b")
        # Batch norm's statistics would mix the two halves of a joined batch.
        self._batch_identity = model_cfg.norm != "batch"
        self._batch_real_fake = model_cfg.disc_norm != "batch"

    @property
    def generator_variables(self) -> list[tf.Variable]:
        return self.gen_g.trainable_variables + self.gen_f.trainable_variables

    @property
    def discriminator_variables(self) -> list[tf.Variable]:
        return self.disc_a.trainable_variables + self.disc_b.trainable_variables

    def start_stage(self, size: int) -> None:
        """A new stage starts with both image pools empty, sized for `size` x `size` images."""
        self.pool_a.reset(size, size)
        self.pool_b.reset(size, size)

    def before_save(self) -> None:
        for pool in (self.pool_a, self.pool_b):
            pool.stack_replicas()  # an all-gather: every worker saves

    def after_restore(self) -> None:
        for pool in (self.pool_a, self.pool_b):
            pool.unstack_replicas()

    def progress_fields(self, losses: dict[str, float]) -> dict[str, str]:
        return dict(G=f"{losses['gen_total']:.3f}", D=f"{losses['disc_a'] + losses['disc_b']:.3f}",
                    cyc=f"{losses['cycle_a'] + losses['cycle_b']:.3f}")

    def epoch_summary(self, losses: dict[str, float]) -> str:
        return f"cycle {losses['cycle_a']:.3f}/{losses['cycle_b']:.3f}"

    def checkpoint_items(self) -> dict[str, tf.Module]:
        return dict(
            gen_g=self.gen_g, gen_f=self.gen_f, disc_a=self.disc_a, disc_b=self.disc_b,
            optimizer_g=self.optimizer_g, optimizer_d=self.optimizer_d, pool_a=self.pool_a, pool_b=self.pool_b,
        )

    # -- the step ----------------------------------------------------------------------------

    def replica_step(self, batch, seed: tf.Tensor, global_batch: tf.Tensor) -> dict[str, tf.Tensor]:
        """One training step on this replica's part of the global batch.

        batch: (real_a, real_b), float32 (batch, H, W, 3) in [-1, 1]; seed: int64 (2,) for the pools;
        global_batch: int32 scalar. Returns {name: float32 scalar}, each this replica's share
        of the global-batch mean (sum over replicas for the global value).
        """
        real_a, real_b = batch
        cfg = self.config.loss
        average = lambda per_example: tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
        use_identity = cfg.identity > 0

        # Each generator runs twice under this tape: one bf16 cast of its weights serves both.
        with tf.GradientTape() as tape, fast_ops.shared_weight_casts():
            if use_identity and self._batch_identity:
                # gen_g(real_a) and the identity gen_g(real_b) in one call of twice the batch
                # (and the same for gen_f): per-image norms make it the same arithmetic, and
                # the bigger convolutions run faster, most of all at small stage sizes.
                fake_b, same_b = tf.split(self.gen_g(tf.concat([real_a, real_b], 0), training=True), 2)
                fake_a, same_a = tf.split(self.gen_f(tf.concat([real_b, real_a], 0), training=True), 2)
            else:
                fake_b = self.gen_g(real_a, training=True)
                fake_a = self.gen_f(real_b, training=True)
                if use_identity:
                    same_a, same_b = self.gen_f(real_a, training=True), self.gen_g(real_b, training=True)
            cycled_a = self.gen_f(fake_b, training=True)
            cycled_b = self.gen_g(fake_a, training=True)
            gen_g_gan = average(losses.generator_gan_loss(fake_logits=self.disc_b(fake_b, training=True), kind=cfg.gan))
            gen_f_gan = average(losses.generator_gan_loss(fake_logits=self.disc_a(fake_a, training=True), kind=cfg.gan))
            cycle_a = average(losses.l1_loss(target=real_a, prediction=cycled_a))
            cycle_b = average(losses.l1_loss(target=real_b, prediction=cycled_b))
            if use_identity:
                identity_a = average(losses.l1_loss(target=real_a, prediction=same_a))
                identity_b = average(losses.l1_loss(target=real_b, prediction=same_b))
            else:
                identity_a = identity_b = tf.constant(0.0)
            gen_total = (
                gen_g_gan + gen_f_gan
                + cfg.cycle * (cycle_a + cycle_b)
                + cfg.cycle * cfg.identity * (identity_a + identity_b)
            )
            scaled = self._scaled(self.optimizer_g, gen_total)
        self._apply(self.optimizer_g, tape, scaled, self.generator_variables)

        pool_seed = tf.cast(seed, tf.int64)
        pooled_fake_a = self.pool_a.query(fake_a, seed=pool_seed)
        pooled_fake_b = self.pool_b.query(fake_b, seed=pool_seed + tf.constant([0, 1], tf.int64))
        with tf.GradientTape() as tape:
            disc_a = average(losses.discriminator_loss(**self._real_fake_logits(self.disc_a, real_a, pooled_fake_a), kind=cfg.gan))
            disc_b = average(losses.discriminator_loss(**self._real_fake_logits(self.disc_b, real_b, pooled_fake_b), kind=cfg.gan))
            scaled = self._scaled(self.optimizer_d, disc_a + disc_b)
        self._apply(self.optimizer_d, tape, scaled, self.discriminator_variables)

        return dict(
            gen_g_gan=gen_g_gan, gen_f_gan=gen_f_gan, cycle_a=cycle_a, cycle_b=cycle_b,
            identity_a=identity_a, identity_b=identity_b, gen_total=gen_total, disc_a=disc_a, disc_b=disc_b,
        )

    def _real_fake_logits(self, disc: keras.Model, real: tf.Tensor, fake: tf.Tensor) -> dict[str, tf.Tensor]:
        """The discriminator on real and (pooled) fake images: one call on both where norms are per image."""
        if self._batch_real_fake:
            # As with the generators' joined batch: the same arithmetic, in half the ops.
            real_logits, fake_logits = tf.split(disc(tf.concat([real, fake], 0), training=True), 2)
        else:
            real_logits, fake_logits = disc(real, training=True), disc(fake, training=True)
        return dict(real_logits=real_logits, fake_logits=fake_logits)

    # -- samples -----------------------------------------------------------------------------

    def sample_inputs(self, held_out, size: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The fixed held-out images of the per-epoch sample grid: held_out(domain, size, count)."""
        a, b = (held_out(domain, size, count) for domain in ("a", "b"))
        n = min(len(a), len(b))  # the two test splits need not be the same size
        return a[:n], b[:n]

    def sample_grid(self, samples: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """uint8 grid: per row real_a | fake_b | cycled_a || real_b | fake_a | cycled_b."""
        return pictures.sample_grid({k: np.asarray(v) for k, v in self.translate(*samples).items()})

    def translate(self, real_a: tf.Tensor, real_b: tf.Tensor) -> dict[str, tf.Tensor]:
        """Eval-mode forward pass for sample grids: fake_b, cycled_a, fake_a, cycled_b (float32)."""
        fake_b = self.gen_g(real_a, training=False)
        fake_a = self.gen_f(real_b, training=False)
        return dict(
            real_a=real_a, fake_b=fake_b, cycled_a=self.gen_f(fake_b, training=False),
            real_b=real_b, fake_a=fake_a, cycled_b=self.gen_g(fake_a, training=False),
        )
