"""Speed tricks, each a plain function beside the standard op it replaces (and tested against it).

| function                      | replaces                                   | where it pays              |
|-------------------------------|--------------------------------------------|----------------------------|
| reflect_pad                   | tf.pad(mode="REFLECT") and its gradient    | training                   |
| reflect_pad_slices            | tf.pad(mode="REFLECT")                     | TFLite (XNNPACK)           |
| instance_norm                 | the tf.nn.moments formula's autodiff       | gradients outside training |
| fused_instance_norm           | instance_norm                              | training                   |
| conv2d_valid                  | tf.nn.conv2d VALID's filter gradient       | bfloat16 training on a CPU |
| shared_weight_casts           | Keras' cast of a weight at every call      | mixed-precision training   |
| leaky_relu                    | tf.nn.leaky_relu's gradient                | training (lets grappler fuse) |
| conv_transpose_2x_phases      | tf.nn.conv2d_transpose (k3, s2, SAME)      | TFLite (XNNPACK)           |
| conv2d_valid_blocks           | tf.nn.conv2d VALID with few output channels| TFLite (XNNPACK)           |

Measured gains, with the commands that measure them, are in docs/performance.md and docs/mobile.md.
"""

from __future__ import annotations

import contextlib
import threading

import keras
import tensorflow as tf


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
    slices and a concat, with the gradient as one split, two adds and a concat per axis, where
    TensorFlow's MirrorPad and MirrorPadGrad kernels are several times slower on the residual
    blocks' maps (docs/performance.md).
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
    in float32 itself, and its gradient is one kernel too, where the unfused form and its
    gradient are ~20 element-wise ops, casts and reductions.
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


# Below this many output pixels per batch, the bfloat16 filter gradient is one matmul over
# the unfolded input (small maps: the reduction is short and one matmul keeps the core busy);
# above it, one matmul per kernel tap, which needs no unfolded copy.
UNFOLD_MAX_PIXELS = 2 * 16 * 16

# The matmuls pay off only with many input channels (each tap's matmul has a Cin x Cout
# result): the residual and discriminator convolutions gain, the first 7x7 convolution (3
# channels in) and a 7x7 with 64 channels lose (docs/performance.md). Below this many input
# channels oneDNN's own gradient is kept.
MATMUL_MIN_CHANNELS = 128


def _filter_gradient(x: tf.Tensor, dy: tf.Tensor, kh: int, kw: int) -> tf.Tensor:
    """d(conv2d(x, k, stride 1, VALID))/dk for the output gradient dy, as matmuls.

    x: (N, H, W, Cin), dy: (N, H - kh + 1, W - kw + 1, Cout), same dtype; returns (kh, kw, Cin, Cout).
    Tap (i, j) of the gradient is x[:, i:i+h, j:j+w]^T @ dy over all N * h * w output pixels.
    """
    cin, cout = x.shape[-1], dy.shape[-1]
    flat_dy = tf.reshape(dy, [-1, cout])
    # The window of tap (i, j) as a slice with constant bounds (rows i .. H - kh + i), so it
    # takes no shape arithmetic at run time (hundreds of small ops per step otherwise).
    stop = lambda start, k: start - (k - 1) or None
    window = lambda i, j: x[:, i:stop(i, kh), j:stop(j, kw), :]

    def unfolded():
        cols = tf.concat([window(i, j) for i in range(kh) for j in range(kw)], axis=3)
        return tf.reshape(tf.matmul(tf.reshape(cols, [-1, kh * kw * cin]), flat_dy, transpose_a=True), [kh, kw, cin, cout])

    def per_tap():
        taps = [tf.matmul(tf.reshape(window(i, j), [-1, cin]), flat_dy, transpose_a=True) for i in range(kh) for j in range(kw)]
        return tf.reshape(tf.stack(taps), [kh, kw, cin, cout])

    return tf.cond(tf.size(dy) <= UNFOLD_MAX_PIXELS * cout, unfolded, per_tap)


def matmul_filter_gradient_pays(x: tf.Tensor, kernel: tf.Tensor) -> bool:
    """Whether conv2d_valid computes its filter gradient as matmuls (bfloat16 on a CPU, many channels)."""
    if x.dtype != tf.bfloat16 or tf.config.list_physical_devices("GPU"):
        return False
    return kernel.shape[2] is not None and int(kernel.shape[2]) >= MATMUL_MIN_CHANNELS


def conv2d_valid(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """tf.nn.conv2d(x, kernel, 1, "VALID"); in bfloat16 on a CPU its filter gradient is matmuls.

    In bfloat16, oneDNN's filter gradient of the residual blocks' 3x3 convolutions is slow on
    small maps (its reduction runs over only the N * h * w output pixels); the same numbers as
    matmuls are faster at every stage size (docs/performance.md). In float32, on a GPU, and for
    few input channels (MATMUL_MIN_CHANNELS) the native gradient is as fast or faster and is kept.
    """
    if not matmul_filter_gradient_pays(x, kernel):
        return tf.nn.conv2d(x, kernel, 1, "VALID")
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(dy):
            dx = tf.nn.conv2d_transpose(dy, kernel, tf.shape(x), 1, "VALID")
            return dx, _filter_gradient(x, dy, kh, kw)

        return tf.nn.conv2d(x, kernel, 1, "VALID"), grad

    return conv(x, kernel)


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


def compute_kernel(layer: keras.layers.Layer) -> tf.Tensor:
    """layer.kernel as the layer computes with it (cast to its compute dtype); see shared_weight_casts."""
    casts = getattr(_shared, "casts", None)
    if casts is None:
        return tf.convert_to_tensor(layer.kernel)
    key = (id(layer.kernel), layer.compute_dtype)
    if key not in casts:
        casts[key] = tf.convert_to_tensor(layer.kernel)
    return casts[key]


def leaky_relu(x: tf.Tensor, alpha: float) -> tf.Tensor:
    """tf.nn.leaky_relu(x, alpha) with its gradient computed from the output (y > 0 exactly where
    x > 0): the same numbers.

    TensorFlow's gradient reads the activation's input. Behind a convolution with a bias (the
    discriminator's first layer) that input is the BiasAdd that grappler's remapper fuses into
    the convolution, so the remapper's pass over the whole train step failed, logging an
    error-looking "remapper failed" line. Read from the output, nothing needs the BiasAdd.
    """

    @tf.custom_gradient
    def forward(x):
        y = tf.nn.leaky_relu(x, alpha)

        def grad(dy):
            return tf.where(y > 0, dy, dy * tf.cast(alpha, dy.dtype))

        return y, grad

    return forward(x)


# -- mobile (TFLite) forms: the same numbers in operators XNNPACK runs -----------------------------


def _phase_kernels(kernel):
    """Splits a 3x3 stride-2 'same' transposed-conv kernel into the four output phases.

    kernel: (3, 3, out, in) as Keras stores it. Output pixel (2m + a, 2n + b) of the transposed
    convolution only sees inputs m - 1 and m (rows) and n - 1 and n (columns):
      even rows take tap 2 from row m - 1 and tap 0 from row m; odd rows take tap 1 from row m.
    Returns (k00, k01, k10, k11) as conv2d kernels (kh, kw, in, out) for inputs padded by one
    row on top and one column on the left; 4 + 2 + 2 + 1 = 9 taps, the original weights.
    """
    k = tf.transpose(kernel, [0, 1, 3, 2])  # (3, 3, in, out)
    k00 = tf.stack([tf.stack([k[2, 2], k[2, 0]]), tf.stack([k[0, 2], k[0, 0]])])
    k01 = tf.stack([k[2, 1], k[0, 1]])[:, None]
    k10 = tf.stack([k[1, 2], k[1, 0]])[None]
    k11 = k[1, 1][None, None]
    return k00, k01, k10, k11


def conv_transpose_2x_phases(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """A 3x3 stride-2 "same" transposed convolution (Keras Conv2DTranspose(k=3, strides=2)) as
    four phase convolutions interleaved by depth_to_space.

    x: (batch, H, W, in); kernel: (3, 3, out, in) as Keras stores it. Returns (batch, 2H, 2W, out),
    equal to tf.nn.conv2d_transpose(x, kernel, (batch, 2H, 2W, out), 2, "SAME"). TFLite lowers the
    transposed convolution to a TRANSPOSE_CONV whose output shape is computed at run time, which
    XNNPACK does not take; these are plain CONV_2D and DEPTH_TO_SPACE.
    """
    k00, k01, k10, k11 = _phase_kernels(kernel)
    xp = tf.pad(x, [[0, 0], [1, 0], [1, 0], [0, 0]])
    conv = lambda t, k: tf.nn.conv2d(t, k, 1, "VALID")
    phases = [conv(xp, k00), conv(xp[:, :, 1:], k01), conv(xp[:, 1:], k10), conv(x, k11)]
    return tf.nn.depth_to_space(tf.concat(phases, axis=3), 2)


def block_kernel(kernel: tf.Tensor) -> tf.Tensor:
    """Rewrites a stride-1 conv2d kernel as a stride-2 one that computes 2x2 output blocks.

    kernel: (kh, kw, in, out). Returns (kh + 1, kw + 1, in, 4 * out): output channel
    (oy, ox, c) of block (i, j) is output pixel (2i + oy, 2j + ox), channel c, of the original
    convolution. Each (oy, ox) slice is the original kernel shifted by (oy, ox) inside a zero
    border of one row and one column.
    """
    shifted = [tf.pad(kernel, [[oy, 1 - oy], [ox, 1 - ox], [0, 0], [0, 0]]) for oy in range(2) for ox in range(2)]
    return tf.concat(shifted, axis=3)


def conv2d_valid_blocks(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """tf.nn.conv2d(x, kernel, 1, "VALID") computed in 2x2 output blocks: a stride-2 convolution
    with 4x the output channels, then depth_to_space.

    x: (batch, H, W, in) with H - kh + 1 and W - kw + 1 even; the kernel's sides must be odd.
    For a convolution with few output channels (the generator's last, 3) XNNPACK's vector lanes
    are mostly empty in the plain form; in this one they are full (docs/mobile.md).
    """
    if int(kernel.shape[0]) % 2 == 0 or int(kernel.shape[1]) % 2 == 0:
        raise ValueError(f"The 2x2-block form needs an odd kernel. Received: {kernel.shape}")
    return tf.nn.depth_to_space(tf.nn.conv2d(x, block_kernel(kernel), 2, "VALID"), 2)
