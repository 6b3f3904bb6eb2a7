"""The four networks, their optimizers and the compiled train step. No I/O here.

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
import tensorflow as tf

from tfcyclegan.config import TrainConfig
from tfcyclegan.model import fast_ops, losses
from tfcyclegan.model.image_pool import ImagePool
from tfcyclegan.model.networks import build_discriminator, build_generator
from tfcyclegan.runtime import cluster
from tfcyclegan.train.optim import make_optimizer

LOSS_NAMES = (
    "gen_g_gan", "gen_f_gan", "cycle_a", "cycle_b", "identity_a", "identity_b",
    "gen_total", "disc_a", "disc_b",
)


class CycleGAN(tf.Module):
    """Build under `strategy.scope()`. precision: "float32", "mixed_float16" or "mixed_bfloat16"."""

    def __init__(self, config: TrainConfig, strategy: tf.distribute.Strategy, *, precision: str = "float32"):
        super().__init__(name="cyclegan")
        self.config = config
        self.strategy = strategy
        self.precision = precision
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
        self._distributed_step = None
        # Batch norm's statistics would mix the two halves of a joined batch.
        self._batch_identity = model_cfg.norm != "batch"
        self._batch_real_fake = model_cfg.disc_norm != "batch"

    @property
    def generator_variables(self) -> list[tf.Variable]:
        return self.gen_g.trainable_variables + self.gen_f.trainable_variables

    @property
    def discriminator_variables(self) -> list[tf.Variable]:
        return self.disc_a.trainable_variables + self.disc_b.trainable_variables

    def set_learning_rate(self, value: float) -> None:
        self.optimizer_g.learning_rate.assign(value)
        self.optimizer_d.learning_rate.assign(value)

    def reset_pools(self, size: int) -> None:
        """Empties both image pools for a new stage of `size` x `size` images."""
        self.pool_a.reset(size, size)
        self.pool_b.reset(size, size)

    def checkpoint_items(self) -> dict[str, tf.Module]:
        return dict(
            gen_g=self.gen_g, gen_f=self.gen_f, disc_a=self.disc_a, disc_b=self.disc_b,
            optimizer_g=self.optimizer_g, optimizer_d=self.optimizer_d, pool_a=self.pool_a, pool_b=self.pool_b,
        )

    # -- the step ----------------------------------------------------------------------------

    @staticmethod
    def _scaled(optimizer, loss: tf.Tensor) -> tf.Tensor:
        """The loss to differentiate: scaled up under float16 loss scaling (call inside the tape)."""
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            return optimizer.scale_loss(loss)
        return loss

    @staticmethod
    def _apply(optimizer, tape: tf.GradientTape, scaled_loss: tf.Tensor, variables: list[tf.Variable]) -> None:
        # LossScaleOptimizer.apply unscales, and skips the update (lowering the scale) when
        # a gradient is not finite; all replicas must take that decision together.
        grads = tape.gradient(scaled_loss, variables)
        # The biases that instance norm cancels (model.layers.NormedConv2D) take no part: exact zeros.
        grads = [tf.zeros(v.shape, v.dtype) if g is None else g for g, v in zip(grads, variables)]
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            grads = cluster.agree_on_overflow(optimizer, grads)
        optimizer.apply(grads, variables)

    def replica_step(self, real_a: tf.Tensor, real_b: tf.Tensor, seed: tf.Tensor, global_batch: tf.Tensor) -> dict[str, tf.Tensor]:
        """One training step on this replica's part of the global batch.

        real_a, real_b: float32 (batch, H, W, 3) in [-1, 1]; seed: int64 (2,) for the pools;
        global_batch: int32 scalar. Returns {name: float32 scalar}, each this replica's share
        of the global-batch mean (sum over replicas for the global value).
        """
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

    def _steps(self, iterator, first_step: tf.Tensor, n: tf.Tensor, global_batch: tf.Tensor) -> dict[str, tf.Tensor]:
        """Runs n steps from `iterator`; returns the losses of each, (n,) per name."""
        history = tf.TensorArray(tf.float32, size=n, element_shape=[len(LOSS_NAMES)])
        for i in tf.range(n):
            real_a, real_b = next(iterator)
            # Every random draw of a step is a function of (seed, global step), so a resumed
            # run draws exactly what an uninterrupted one would.
            seed = tf.stack([tf.constant(self.config.seed, tf.int64), first_step + tf.cast(i, tf.int64)])
            per_replica = self.strategy.run(self._replica_step_with_id, args=(real_a, real_b, seed, global_batch))
            history = history.write(i, self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None))
        stacked = history.stack()
        return {name: stacked[:, k] for k, name in enumerate(LOSS_NAMES)}

    def _replica_step_with_id(self, real_a, real_b, seed, global_batch):
        # Each replica's pool draws its own numbers.
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = seed + tf.stack([tf.constant(0, tf.int64), tf.cast(replica, tf.int64) * 1_000_003])
        out = self.replica_step(real_a, real_b, seed, global_batch)
        # Stacked, the losses take one all-reduce instead of one each: on a multi-worker
        # cluster every collective is a network round trip.
        return tf.stack([out[name] for name in LOSS_NAMES])

    def train_steps(self, iterator, *, first_step: int, steps: int, global_batch: int) -> dict[str, tf.Tensor]:
        """Runs `steps` training steps in one compiled call.

        iterator: an iterator over a distributed dataset of (real_a, real_b);
        first_step: the global step of the first of them (it seeds the step's random draws).
        Returns {name: float32 (steps,)}: the global-batch mean losses of each step.
        """
        if self._distributed_step is None:
            # reduce_retracing: after a second stage size the trace generalizes H and W to
            # None, so the whole schedule costs at most two traces, never one per step.
            self._distributed_step = tf.function(self._steps, reduce_retracing=True)
        return self._distributed_step(
            iterator, tf.constant(first_step, tf.int64), tf.constant(steps, tf.int32), tf.constant(global_batch, tf.int32)
        )

    @property
    def tracing_count(self) -> int:
        return 0 if self._distributed_step is None else self._distributed_step.experimental_get_tracing_count()

    # -- inference ---------------------------------------------------------------------------

    def translate(self, real_a: tf.Tensor, real_b: tf.Tensor) -> dict[str, tf.Tensor]:
        """Eval-mode forward pass for sample grids: fake_b, cycled_a, fake_a, cycled_b (float32)."""
        fake_b = self.gen_g(real_a, training=False)
        fake_a = self.gen_f(real_b, training=False)
        return dict(
            real_a=real_a, fake_b=fake_b, cycled_a=self.gen_f(fake_b, training=False),
            real_b=real_b, fake_a=fake_a, cycled_b=self.gen_g(fake_a, training=False),
        )
