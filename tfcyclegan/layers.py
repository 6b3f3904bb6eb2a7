"""Layers the CycleGAN networks need beyond Keras' own: reflection padding and instance norm.

Both are written with plain ops (tf.pad in REFLECT mode, mean/variance over axes 1 and 2) so
they work at any spatial size and lower to TFLite builtins (MIRROR_PAD, MEAN, SQUARED_DIFFERENCE,
RSQRT) with no Flex ops. tensorflow-addons, which used to provide InstanceNormalization, reached
end of life in 2024 and does not import with Keras 3.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfcyclegan")
class ReflectionPad2D(keras.layers.Layer):
    """Pads H and W by `padding` pixels on each side, mirroring without repeating the edge.

    inputs: (batch, H, W, C) with H, W > padding; returns (batch, H + 2p, W + 2p, C).
    """

    def __init__(self, padding: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, inputs):
        p = self.padding
        return tf.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        grow = lambda n: None if n is None else n + 2 * self.padding
        return (b, grow(h), grow(w), c)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


def instance_norm(x: tf.Tensor, epsilon: float) -> tf.Tensor:
    """(x - mean) / sqrt(var + epsilon) per image and channel, with a hand-written gradient.

    x: float32 (batch, H, W, C). The gradient is the closed form
    dx = rstd * (dy - mean(dy) - y * mean(dy * y)), five element-wise ops and two means,
    instead of the ~15 ops TensorFlow derives from tf.nn.moments.
    """

    @tf.custom_gradient
    def forward(x):
        mean, variance = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        rstd = tf.math.rsqrt(variance + epsilon)
        y = (x - mean) * rstd

        def grad(dy):
            mean_dy = tf.reduce_mean(dy, axis=[1, 2], keepdims=True)
            mean_dy_y = tf.reduce_mean(dy * y, axis=[1, 2], keepdims=True)
            return rstd * (dy - mean_dy - y * mean_dy_y)

        return y, grad

    return forward(x)


@keras.saving.register_keras_serializable(package="tfcyclegan")
class InstanceNormalization(keras.layers.Layer):
    """Normalizes each image and channel by its own spatial mean and variance.

    Without affine parameters (center=False, scale=False), like PyTorch's InstanceNorm2d
    default that the official CycleGAN uses. Same as
    keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, center=False, scale=False).
    The moments are computed in float32 even under a mixed policy: variances of 16-bit
    activations lose too much precision.

    inputs: (batch, H, W, C); returns the same shape and dtype.
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        return tf.cast(instance_norm(tf.cast(inputs, tf.float32), self.epsilon), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
