"""Layers the CycleGAN networks need beyond Keras' own: reflection padding, instance norm, and
convolutions that follow instance norm or run in a TFLite-friendly form.

Every layer works at any spatial size and has three forms of the same numbers:
- training (`training=True`): the fast training ops of fast_ops (slices with a hand-written
  gradient for the padding, the fused batch-norm kernel for instance norm);
- inference: plain TensorFlow ops, what the SavedModel exports run;
- mobile (`mobile=True`, export only): operators XNNPACK (LiteRT's CPU delegate) runs, so a
  TFLite file is one delegated graph (reflection padding from slices, the transposed
  convolution as phase convolutions, the last convolution in 2x2 blocks).
tensorflow-addons, which used to provide InstanceNormalization, reached end of life in 2024 and
does not import with Keras 3.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfcyclegan.model import fast_ops


@keras.saving.register_keras_serializable(package="tfcyclegan")
class ReflectionPad2D(keras.layers.Layer):
    """Pads H and W by `padding` pixels on each side, mirroring without repeating the edge.

    inputs: (batch, H, W, C) with H, W > padding (H, W >= 2 * padding + 2 with training=True,
    which takes fast_ops.reflect_pad: the same numbers, faster); returns (batch, H + 2p, W + 2p, C).
    mobile: slices and concatenations instead of MIRROR_PAD, which XNNPACK does not run.
    """

    def __init__(self, padding: int = 1, *, mobile: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)
        self.mobile = bool(mobile)

    def call(self, inputs, training=None):
        if training:
            return fast_ops.reflect_pad(inputs, self.padding)
        if self.mobile:
            return fast_ops.reflect_pad_slices(inputs, self.padding)
        p = self.padding
        return tf.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        grow = lambda n: None if n is None else n + 2 * self.padding
        return (b, grow(h), grow(w), c)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "mobile": self.mobile}


@keras.saving.register_keras_serializable(package="tfcyclegan")
class InstanceNormalization(keras.layers.Layer):
    """Normalizes each image and channel by its own spatial mean and variance.

    Without affine parameters (center=False, scale=False), like PyTorch's InstanceNorm2d
    default that the official CycleGAN uses. Same as
    keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, center=False, scale=False).
    The moments are computed in float32 even under a mixed policy: variances of 16-bit
    activations lose too much precision. With training=True the fused kernel computes it
    (fast_ops.fused_instance_norm, one kernel each way); otherwise fast_ops.instance_norm, plain
    ops that export and convert to TFLite builtins as they are. Both give the same numbers (tested).

    inputs: (batch, H, W, C); returns the same shape and dtype.
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs, training=None):
        if training:
            return fast_ops.fused_instance_norm(inputs, self.epsilon)
        return tf.cast(fast_ops.instance_norm(tf.cast(inputs, tf.float32), self.epsilon), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


# Instance norm subtracts each image's per-channel mean, which removes a per-channel bias
# exactly. The convolutions below that feed instance norm keep the bias as a weight (the
# official networks have it: the parameter counts and checkpoints stay theirs) but never add
# it: adding it would cost a bias add forward and a bias-gradient reduction in every filter
# gradient, for an output that cannot change. Its gradient is exactly zero, and the train step
# hands the optimizers zeros.


@keras.saving.register_keras_serializable(package="tfcyclegan")
class NormedConv2D(keras.layers.Conv2D):
    """keras.layers.Conv2D whose output goes straight into instance norm: the bias is not added."""

    def call(self, inputs):
        kernel = fast_ops.compute_kernel(self)
        if self.strides == (1, 1) and self.padding == "valid" and self.dilation_rate == (1, 1):
            outputs = fast_ops.conv2d_valid(inputs, kernel)
        else:
            outputs = self.convolution_op(inputs, kernel)
        return outputs if self.activation is None else self.activation(outputs)


@keras.saving.register_keras_serializable(package="tfcyclegan")
class UpConv2D(keras.layers.Conv2DTranspose):
    """The generator's k3, stride-2, "same" transposed convolution: doubles H and W (like PyTorch's
    padding=1, output_padding=1).

    add_bias=False: the output goes straight into instance norm, the bias is kept but not added.
    mobile: computed as four phase convolutions (fast_ops.conv_transpose_2x_phases).
    """

    def __init__(self, filters, *, add_bias: bool = True, mobile: bool = False, **kwargs):
        super().__init__(filters, 3, strides=2, padding="same", **kwargs)
        self.add_bias = bool(add_bias)
        self.mobile = bool(mobile)

    def call(self, inputs):
        kernel = fast_ops.compute_kernel(self)
        if self.mobile:
            outputs = fast_ops.conv_transpose_2x_phases(inputs, kernel)
        else:
            outputs = keras.ops.conv_transpose(
                inputs, kernel, strides=list(self.strides), padding=self.padding,
                output_padding=self.output_padding, dilation_rate=self.dilation_rate, data_format=self.data_format,
            )
        if self.use_bias and self.add_bias:
            outputs = tf.nn.bias_add(outputs, tf.convert_to_tensor(self.bias))
        return outputs if self.activation is None else self.activation(outputs)

    def get_config(self):
        config = super().get_config()
        for key in ("kernel_size", "strides", "padding"):
            config.pop(key, None)
        return {**config, "add_bias": self.add_bias, "mobile": self.mobile}


@keras.saving.register_keras_serializable(package="tfcyclegan")
class OutputConv2D(keras.layers.Conv2D):
    """A stride-1 VALID convolution with few output channels (the generator's last, to RGB).

    mobile: computed in 2x2 output blocks (fast_ops.conv2d_valid_blocks), which fills XNNPACK's
    vector lanes; H and W of the output must then be even.
    """

    def __init__(self, filters, kernel_size, *, mobile: bool = False, **kwargs):
        super().__init__(filters, kernel_size, padding="valid", **kwargs)
        self.mobile = bool(mobile)

    def call(self, inputs):
        if not self.mobile:
            return super().call(inputs)
        outputs = fast_ops.conv2d_valid_blocks(inputs, tf.convert_to_tensor(self.kernel))
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, tf.convert_to_tensor(self.bias))
        return outputs if self.activation is None else self.activation(outputs)

    def get_config(self):
        config = super().get_config()
        config.pop("padding", None)
        return {**config, "mobile": self.mobile}


@keras.saving.register_keras_serializable(package="tfcyclegan")
class LeakyReLU(keras.layers.LeakyReLU):
    """keras.layers.LeakyReLU whose training gradient is computed from its output (fast_ops.leaky_relu)."""

    def call(self, inputs, training=None):
        if training:
            return fast_ops.leaky_relu(inputs, self.negative_slope)
        return super().call(inputs)


@keras.saving.register_keras_serializable(package="tfcyclegan")
class Upsample2x(keras.layers.Layer):
    """Doubles H and W by nearest-neighbour or bilinear interpolation, at any (dynamic) size.

    inputs: (batch, H, W, C); returns (batch, 2H, 2W, C) in the input dtype. "nearest" copies
    each pixel into a 2x2 block: four copies of the map interleaved by depth_to_space (its
    gradient is space_to_depth and a sum, no gather; in TFLite, CONCATENATION and DEPTH_TO_SPACE,
    which XNNPACK runs). "bilinear" is tf.image.resize with half-pixel centres (TFLite's
    RESIZE_BILINEAR), computed in float32 and cast back. Keras' UpSampling2D needs a static H
    and W for bilinear, which the trainer's size-generic trace does not have.
    """

    def __init__(self, interpolation: str = "nearest", **kwargs):
        super().__init__(**kwargs)
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"interpolation must be nearest or bilinear. Received: {interpolation!r}")
        self.interpolation = interpolation

    def call(self, inputs):
        if self.interpolation == "nearest":
            doubled = tf.concat([inputs, inputs], axis=3)
            return tf.nn.depth_to_space(tf.concat([doubled, doubled], axis=3), 2)
        shape = tf.shape(inputs)
        out = tf.image.resize(tf.cast(inputs, tf.float32), tf.stack([2 * shape[1], 2 * shape[2]]), method="bilinear")
        return tf.cast(out, inputs.dtype)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        grow = lambda n: None if n is None else 2 * n  # noqa: E731
        return (b, grow(h), grow(w), c)

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}
