"""What every GAN of tfcyclegan shares: the compiled call of several training steps under a
tf.distribute strategy, loss scaling, and the optimizer update. No I/O here.

A model (train.step.CycleGAN, train.dcgan.DCGAN) defines its networks, `loss_names`,
`replica_step(batch, seed, global_batch)` for one replica's share of a global batch, and the
hooks the trainer calls between steps (start_stage, before_save, after_restore, samples).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfcyclegan.runtime import cluster


class GANModel(tf.Module):
    """Build under `strategy.scope()`. Subclasses set `optimizer_g`, `optimizer_d` and `loss_names`."""

    loss_names: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()  # the domains a training batch holds, in order
    # (panel title, loss names) for loss_curves.png
    loss_panels: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __init__(self, config, strategy: tf.distribute.Strategy, *, precision: str, name: str):
        super().__init__(name=name)
        self.config = config
        self.strategy = strategy
        self.precision = precision
        self._distributed_step = None

    def set_learning_rate(self, value: float) -> None:
        self.optimizer_g.learning_rate.assign(value)
        self.optimizer_d.learning_rate.assign(value)

    # -- hooks the trainer calls (no-ops unless a model needs them) -----------------------------

    def start_stage(self, size: int) -> None:
        """A new stage of `size` x `size` images begins."""

    def before_save(self) -> None:
        """Called on every worker before a checkpoint is written (a collective may run here)."""

    def after_restore(self) -> None:
        """Called after a checkpoint was restored."""

    def progress_fields(self, losses: dict[str, float]) -> dict[str, str]:
        """What the progress bar shows of the last step's losses."""
        return {}

    def epoch_summary(self, losses: dict[str, float]) -> str:
        """What the end-of-epoch log line says of the last losses."""
        return ""

    def after_training(self, samples_dir: str) -> None:
        """Called on the chief when the schedule is complete (final pictures)."""

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

    def _steps(self, iterator, first_step: tf.Tensor, n: tf.Tensor, global_batch: tf.Tensor) -> dict[str, tf.Tensor]:
        """Runs n steps from `iterator`; returns the losses of each, (n,) per name."""
        history = tf.TensorArray(tf.float32, size=n, element_shape=[len(self.loss_names)])
        for i in tf.range(n):
            batch = next(iterator)
            # Every random draw of a step is a function of (seed, global step), so a resumed
            # run draws exactly what an uninterrupted one would.
            seed = tf.stack([tf.constant(self.config.seed, tf.int64), first_step + tf.cast(i, tf.int64)])
            per_replica = self.strategy.run(self._replica_step_with_id, args=(batch, seed, global_batch))
            history = history.write(i, self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None))
        stacked = history.stack()
        return {name: stacked[:, k] for k, name in enumerate(self.loss_names)}

    def _replica_step_with_id(self, batch, seed, global_batch):
        # Each replica draws its own numbers (image pools, noise).
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = seed + tf.stack([tf.constant(0, tf.int64), tf.cast(replica, tf.int64) * 1_000_003])
        out = self.replica_step(batch, seed, global_batch)
        # Stacked, the losses take one all-reduce instead of one each: on a multi-worker
        # cluster every collective is a network round trip.
        return tf.stack([out[name] for name in self.loss_names])

    def train_steps(self, iterator, *, first_step: int, steps: int, global_batch: int) -> dict[str, tf.Tensor]:
        """Runs `steps` training steps in one compiled call.

        iterator: an iterator over a distributed dataset of tuples of image batches (the model's
          replica_step takes one such tuple);
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
