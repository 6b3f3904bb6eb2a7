"""Layers the CycleGAN networks need beyond Keras' own: reflection padding and instance norm.

Both work at any spatial size. Inference uses plain ops (tf.pad in REFLECT mode, mean/variance
over axes 1 and 2) that lower to TFLite builtins (MIRROR_PAD, MEAN, SQUARED_DIFFERENCE, RSQRT)
with no Flex ops; training computes the same numbers faster: the padding from slices with a
hand-written gradient (reflect_pad), the instance norm with the fused batch-norm kernel
(fused_instance_norm). tensorflow-addons, which used to provide InstanceNormalization,
reached end of life in 2024 and does not import with Keras 3.
"""

from __future__ import annotations

import contextlib
import threading

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfcyclegan")
class ReflectionPad2D(keras.layers.Layer):
    """Pads H and W by `padding` pixels on each side, mirroring without repeating the edge.

    inputs: (batch, H, W, C) with H, W > padding (H, W >= 2 * padding + 2 with training=True,
    which takes reflect_pad: the same numbers, faster); returns (batch, H + 2p, W + 2p, C).
    """

    def __init__(self, padding: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, inputs, training=None):
        if training:
            return reflect_pad(inputs, self.padding)
        p = self.padding
        return tf.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        grow = lambda n: None if n is None else n + 2 * self.padding
        return (b, grow(h), grow(w), c)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


def reflect_pad_slices(x: tf.Tensor, p: int) -> tf.Tensor:
    """Reflection padding by `p` on H and W from slices and concatenations.

    Equal to tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], "REFLECT") for H, W > p. Used by the
    training path (reflect_pad) and by the mobile export graph: it lowers to STRIDED_SLICE +
    CONCATENATION, which XNNPACK delegates (it has no MIRROR_PAD); at most three tensors are
    concatenated at a time, XNNPACK's limit being lower than TFLite's.
    """
    if p == 0:
        return x

    def along(t, axis):
        def rows(start, stop):
            return t[:, start:stop] if axis == 1 else t[:, :, start:stop]

        before = [rows(i, i + 1) for i in range(p, 0, -1)]  # rows p, ..., 1
        after = [rows(-1 - i, -i) for i in range(1, p + 1)]  # rows n-2, ..., n-1-p
        join = lambda parts: parts[0] if len(parts) == 1 else tf.concat(parts, axis=axis)
        return tf.concat([join(before), t, join(after)], axis=axis)

    return along(along(x, 1), 2)


def _fold_axis(dy: tf.Tensor, p: int, axis: int) -> tf.Tensor:
    """The gradient of reflection padding along `axis` (1 or 2): each padded row's gradient added
    to the row it mirrors.

    dy has n + 2p rows along `axis`; n >= 2p + 2, so the two mirrored bands do not overlap
    (smaller maps fail in the split).
    """
    flip = (lambda t: t) if p == 1 else (lambda t: tf.reverse(t, [axis]))
    # dy rows: top pad | row 0 | rows 1..p | middle | rows n-p-1..n-2 | row n-1 | bottom pad
    top, first, band_top, middle, band_bottom, last, bottom = tf.split(dy, [p, 1, p, -1, p, 1, p], axis)
    return tf.concat([first, band_top + flip(top), middle, band_bottom + flip(bottom), last], axis)


def reflect_pad(x: tf.Tensor, p: int) -> tf.Tensor:
    """tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT") for training: same numbers, faster.

    x: (batch, H, W, C) with H, W >= 2p + 2 (the trainer's stage sizes, >= 16 px, guarantee it
    for every pad of the generator; smaller maps fail in the gradient's split). Built from
    slices and a concat, with the gradient as one split, two adds and a concat per axis.
    TensorFlow's MirrorPad and MirrorPadGrad kernels take 3-7x as long on the residual blocks'
    maps (12x12 to 64x64, 256 channels, bfloat16); at 256 px the step is 3-7 % faster.
    """

    @tf.custom_gradient
    def mirror(x):
        def grad(dy):
            return _fold_axis(_fold_axis(dy, p, 1), p, 2)

        return reflect_pad_slices(x, p), grad

    return mirror(x)


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


def fused_instance_norm(x: tf.Tensor, epsilon: float) -> tf.Tensor:
    """instance_norm(x, epsilon) through FusedBatchNormV3 in training mode, in x's own dtype.

    x: float32, bfloat16 or float16 (batch, H, W, C); returns the same shape and dtype.
    Batch norm in training mode over a batch of one image *is* instance norm, so a batch of N
    is laid out as one image with N * C channels (a transpose, skipped when N is 1). The fused
    kernel (oneDNN on a CPU, cuDNN on a GPU) reads 16-bit activations and keeps its statistics
    in float32 itself, and its gradient is one kernel too: a profile of a bfloat16 step at
    256 px spent 9 % of its time in the ~20 element-wise ops, casts and reductions of the
    unfused form and its gradient.
    """
    batch = x.shape[0]
    # With the batch and channel counts known (they are in the trainer's trace), scale, offset
    # and the reshape are constants, not shape arithmetic at every call. The statistics are over
    # all pixels of a channel, so the pixels' layout in the reshaped image does not matter.
    static = None if batch is None or x.shape[3] is None else batch * x.shape[3]
    if batch != 1:
        x = tf.transpose(x, [1, 2, 0, 3])  # (H, W, N, C)
        transposed_shape = tf.shape(x)
        x = tf.reshape(x, [1, -1, 1, static] if static else [1, -1, 1, transposed_shape[2] * transposed_shape[3]])
    channels = static or tf.shape(x)[3]
    ones, empty = tf.ones([channels], tf.float32), tf.zeros([0], tf.float32)
    y = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=ones, offset=tf.zeros([channels], tf.float32), mean=empty, variance=empty,
        epsilon=epsilon, is_training=True,
    )[0]
    if batch != 1:
        y = tf.transpose(tf.reshape(y, transposed_shape), [2, 0, 1, 3])
    return y


@keras.saving.register_keras_serializable(package="tfcyclegan")
class InstanceNormalization(keras.layers.Layer):
    """Normalizes each image and channel by its own spatial mean and variance.

    Without affine parameters (center=False, scale=False), like PyTorch's InstanceNorm2d
    default that the official CycleGAN uses. Same as
    keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, center=False, scale=False).
    The moments are computed in float32 even under a mixed policy: variances of 16-bit
    activations lose too much precision. With training=True the fused kernel computes it
    (fused_instance_norm, one kernel each way); otherwise the plain ops of instance_norm, which
    export and convert to TFLite as they are. Both give the same numbers (tested).

    inputs: (batch, H, W, C); returns the same shape and dtype.
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs, training=None):
        if training:
            return fused_instance_norm(inputs, self.epsilon)
        return tf.cast(instance_norm(tf.cast(inputs, tf.float32), self.epsilon), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


# Below this many output pixels per batch, the bfloat16 filter gradient is one matmul over
# the unfolded input (a 12x12 map: 1.6x faster than oneDNN's kernel); above it, one matmul
# per kernel tap, which needs no unfolded copy (64x64: 1.15x faster).
_UNFOLD_MAX_PIXELS = 2 * 16 * 16

# The matmuls pay off only with many input channels: each tap's matmul has a Cin x Cout result.
# One thread, bf16, batch 2: the 3x3 residual convolution (256 channels) 2.4 vs 4.1 ms at 12x12,
# the discriminator's 4x4 (256 -> 512) 1.7 vs 5.2 ms at 5x5; but the generator's first 7x7
# convolution (3 channels in) 2.0 vs 0.86 ms at 48x48 and 49 vs 18 ms at 256x256, and a 7x7
# with 64 channels in still 12.4 vs 9.2 ms. Below this many input channels oneDNN's own gradient
# is kept.
_MATMUL_MIN_CHANNELS = 128


def _filter_gradient(x: tf.Tensor, dy: tf.Tensor, kh: int, kw: int) -> tf.Tensor:
    """d(conv2d(x, k, stride 1, VALID))/dk for the output gradient dy, as matmuls.

    x: (N, H, W, Cin), dy: (N, H - kh + 1, W - kw + 1, Cout), same dtype; returns (kh, kw, Cin, Cout).
    Tap (i, j) of the gradient is x[:, i:i+h, j:j+w]^T @ dy over all N * h * w output pixels.
    """
    cin, cout = x.shape[-1], dy.shape[-1]
    flat_dy = tf.reshape(dy, [-1, cout])
    # The window of tap (i, j) as a slice with constant bounds (rows i .. H - kh + i), so it
    # takes no shape arithmetic at run time: a 48 px step ran ~1,200 such small ops.
    stop = lambda start, k: start - (k - 1) or None
    window = lambda i, j: x[:, i:stop(i, kh), j:stop(j, kw), :]

    def unfolded():
        cols = tf.concat([window(i, j) for i in range(kh) for j in range(kw)], axis=3)
        return tf.reshape(tf.matmul(tf.reshape(cols, [-1, kh * kw * cin]), flat_dy, transpose_a=True), [kh, kw, cin, cout])

    def per_tap():
        taps = [tf.matmul(tf.reshape(window(i, j), [-1, cin]), flat_dy, transpose_a=True) for i in range(kh) for j in range(kw)]
        return tf.reshape(tf.stack(taps), [kh, kw, cin, cout])

    return tf.cond(tf.size(dy) <= _UNFOLD_MAX_PIXELS * cout, unfolded, per_tap)


def _matmul_filter_gradient_pays(x: tf.Tensor, kernel: tf.Tensor) -> bool:
    """Whether conv2d_valid computes its filter gradient as matmuls (bfloat16 on a CPU, many channels)."""
    if x.dtype != tf.bfloat16 or tf.config.list_physical_devices("GPU"):
        return False
    return kernel.shape[2] is not None and int(kernel.shape[2]) >= _MATMUL_MIN_CHANNELS


def conv2d_valid(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """tf.nn.conv2d(x, kernel, 1, "VALID"); in bfloat16 on a CPU its filter gradient is matmuls.

    Profiled in a bfloat16 step at 48 px, oneDNN's filter gradient of the residual blocks' 3x3
    convolutions took 2.2x as long as their forward pass (its reduction runs over only the
    N * 12 * 12 output pixels); the same numbers as matmuls are 1.15-1.6x faster at every stage
    size (benchmarks/step_time.py). In float32, on a GPU, and for few input channels (the first
    7x7 convolution, see _MATMUL_MIN_CHANNELS) the native gradient is as fast or faster and is kept.
    """
    if not _matmul_filter_gradient_pays(x, kernel):
        return tf.nn.conv2d(x, kernel, 1, "VALID")
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(dy):
            dx = tf.nn.conv2d_transpose(dy, kernel, tf.shape(x), 1, "VALID")
            return dx, _filter_gradient(x, dy, kh, kw)

        return tf.nn.conv2d(x, kernel, 1, "VALID"), grad

    return conv(x, kernel)


# Instance norm subtracts each image's per-channel mean, which removes a per-channel bias
# exactly. The two convolutions below keep the bias as a weight (the official networks have
# it: the parameter counts and checkpoints stay theirs) but never add it: adding it cost a bias
# add forward and a bias-gradient reduction in every filter gradient, for an output that
# cannot change. Its gradient is exactly zero, and the train step hands the optimizers zeros.


_shared = threading.local()  # per thread: MirroredStrategy traces each replica in its own


@contextlib.contextmanager
def shared_weight_casts():
    """Within this block, a layer's weights are cast to its compute dtype once, for every call.

    Under a mixed policy Keras casts a float32 weight at every use, and the gradient of each cast
    is a cast back, added in float32. A train step calls each generator twice within one tape:
    with one shared cast, the two calls' bfloat16 gradients are added first and cast once, so a
    weight costs one cast each way instead of two (and the sum reads half the bytes). Open it
    around one gradient tape only: a cast made under another tape is not on this one's record,
    and a weight updated inside the block would be read stale.
    """
    previous = getattr(_shared, "casts", None)
    _shared.casts = {}
    try:
        yield
    finally:
        _shared.casts = previous


def _compute_kernel(layer: keras.layers.Layer) -> tf.Tensor:
    """layer.kernel as the layer computes with it (cast to its compute dtype); see shared_weight_casts."""
    casts = getattr(_shared, "casts", None)
    if casts is None:
        return tf.convert_to_tensor(layer.kernel)
    key = (id(layer.kernel), layer.compute_dtype)
    if key not in casts:
        casts[key] = tf.convert_to_tensor(layer.kernel)
    return casts[key]


@keras.saving.register_keras_serializable(package="tfcyclegan")
class NormedConv2D(keras.layers.Conv2D):
    """keras.layers.Conv2D whose output goes straight into instance norm: the bias is not added."""

    def call(self, inputs):
        kernel = _compute_kernel(self)
        if self.strides == (1, 1) and self.padding == "valid" and self.dilation_rate == (1, 1):
            outputs = conv2d_valid(inputs, kernel)
        else:
            outputs = self.convolution_op(inputs, kernel)
        return outputs if self.activation is None else self.activation(outputs)


@keras.saving.register_keras_serializable(package="tfcyclegan")
class NormedConv2DTranspose(keras.layers.Conv2DTranspose):
    """keras.layers.Conv2DTranspose whose output goes straight into instance norm: the bias is not added."""

    def call(self, inputs):
        outputs = keras.ops.conv_transpose(
            inputs, _compute_kernel(self), strides=list(self.strides), padding=self.padding,
            output_padding=self.output_padding, dilation_rate=self.dilation_rate, data_format=self.data_format,
        )
        return outputs if self.activation is None else self.activation(outputs)
