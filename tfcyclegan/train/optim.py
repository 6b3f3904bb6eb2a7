"""The optimizers and the learning-rate policy of a run.

Adam for both generators (one optimizer) and both discriminators (another), as the official
CycleGAN code does; under mixed_float16 each is wrapped in a LossScaleOptimizer. The learning
rate follows one policy over the whole schedule (learning_rate_at).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfcyclegan.config import TrainConfig
from tfcyclegan.runtime import private


def learning_rate_at(config: TrainConfig, global_epoch: int) -> float:
    """The learning rate of 0-based epoch `global_epoch` of the whole schedule.

    Constant for the first E - D epochs, then linear decay: lr * min(1, (E - e) / (D + 1)),
    the official CycleGAN rule (E = all epochs, D = decay epochs); the last epoch runs at
    lr / (D + 1) and the rate would reach zero one epoch later.
    """
    total, decay = config.schedule.total_epochs, config.decay_epochs
    factor = 1.0 if decay == 0 else min(1.0, (total - global_epoch) / (decay + 1))
    return config.optim.learning_rate * max(0.0, factor)


class FusedAdam(private.NoAllReduceWithOneReplica, keras.optimizers.Adam):
    """keras.optimizers.Adam whose per-variable update is TensorFlow's fused ResourceApplyAdam.

    Same variables (so the same checkpoints) and the same formula as Keras' Adam
    (alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t); m, v moving averages;
    var -= alpha * m / (sqrt(v) + epsilon)), but one kernel per variable instead of about
    ten element-wise ops. With one replica in sync, each update runs as soon as its gradient
    exists (runtime.private.NoAllReduceWithOneReplica).
    """

    def apply(self, grads, trainable_variables=None):
        # The step's scalars (beta powers, learning rate) are computed once per apply and dtype,
        # not once per variable: ~5 small ops for each of the 116 variables of a train step.
        # Outside apply there is no cache, so no tensor outlives the graph it was made in.
        self._scalars = {}
        try:
            return super().apply(grads, trainable_variables)
        finally:
            self._scalars = None

    def _step_scalars(self, dtype, learning_rate, device: str) -> dict[str, tf.Tensor]:
        # Per device too: under a strategy with several devices, each updates its own copies.
        key = (dtype, device, id(learning_rate))
        cache = getattr(self, "_scalars", None)
        if cache is not None and key in cache:
            return cache[key]
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        scalars = dict(
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype),
            beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype),
        )
        if cache is not None:
            cache[key] = scalars
        return scalars

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        m, v = private.adam_slots(self, variable)
        handle = lambda var: (var.value if isinstance(var, keras.Variable) else var).handle
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=handle(m), v=handle(v), grad=tf.cast(gradient, dtype), use_locking=False,
            **self._step_scalars(dtype, learning_rate, variable.device),
        )


def make_optimizer(config: TrainConfig, precision: str, name: str) -> keras.optimizers.Optimizer:
    optimizer = FusedAdam(
        learning_rate=config.optim.learning_rate, beta_1=config.optim.beta_1, beta_2=config.optim.beta_2, name=name
    )
    if precision == "mixed_float16":
        # Dynamic loss scaling: float16 gradients underflow without it.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=f"{name}_loss_scale")
    return optimizer
