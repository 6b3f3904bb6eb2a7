"""The CycleGAN networks: ResNet generator and PatchGAN discriminators, size-agnostic.

All models take float32 images (batch, None, None, 3) in [-1, 1], so one set of weights
trains through the progressive schedule and serves any size afterwards.

Generator (Johnson et al. / the CycleGAN paper): c7s1-64, d128, d256, N x R256, u128, u64,
c7s1-3, tanh; u is the official k3 s2 transposed conv, or a 2x resize + 3x3 conv
(ModelConfig.upsample, see apply_upsample). H and W must be divisible by 4 (two stride-2
downsamplings). With instance
norm without affine parameters and biased convolutions it has exactly 11,378,179 parameters
(9 blocks), the count the official PyTorch implementation prints.

Discriminators:
- "patchgan": the 70x70 PatchGAN C64-C128-C256-C512 with 4x4 kernels; output
  (batch, H/8 - 2, W/8 - 2, 1) logits; 2,764,737 parameters with instance norm.
- "downsample8": the stride-2 discriminator of the UTKFace reference design (conv, BN,
  LeakyReLU, a final 1x1 conv); output exactly (batch, H/8, W/8, 1).

`dtype` is a Keras dtype policy name ("float32", "mixed_float16", "mixed_bfloat16"); the
outputs are float32 under every policy.
"""

from __future__ import annotations

import time

import keras
import tensorflow as tf

from tfcyclegan.config import ModelConfig
from tfcyclegan.model.layers import (
    InstanceNormalization, LeakyReLU, NormedConv2D, OutputConv2D, ReflectionPad2D, UpConv2D, Upsample2x,
)

_INIT_STDDEV = 0.02  # the official code initializes convolutions from N(0, 0.02)
MIN_SIDE = 8  # the smallest H and W a generator takes: two stride-2 downsamplings, then a reflect pad of 1


def _conv_init():
    return keras.initializers.RandomNormal(stddev=_INIT_STDDEV)


def apply_norm(x, norm: str, name: str, dtype: str):
    """Instance norm (no affine), batch norm (affine, as PyTorch's default) or nothing."""
    if norm == "instance":
        return InstanceNormalization(epsilon=1e-5, name=name, dtype=dtype)(x)
    if norm == "batch":
        return keras.layers.BatchNormalization(
            momentum=0.9, epsilon=1e-5, gamma_initializer=keras.initializers.RandomNormal(1.0, _INIT_STDDEV),
            name=name, dtype=dtype,
        )(x)
    return x


def apply_conv_norm_act(x, filters, kernel, *, stride=1, norm, act, name, dtype, pad=None, mobile=False):
    """[pad] -> conv -> norm -> activation. pad: "reflect:N", "zero:N" or None ("same" padding)."""
    padding = "same"
    if pad is not None:
        kind, amount = pad.split(":")
        amount = int(amount)
        if kind == "reflect":
            x = ReflectionPad2D(amount, mobile=mobile, name=f"{name}_pad", dtype=dtype)(x)
        else:
            x = keras.layers.ZeroPadding2D(amount, name=f"{name}_pad", dtype=dtype)(x)
        padding = "valid"
    # A conv directly followed by batch norm needs no bias (the official code's use_bias rule);
    # before instance norm the official code has one, which that norm cancels (NormedConv2D).
    conv = NormedConv2D if norm == "instance" else keras.layers.Conv2D
    x = conv(
        filters, kernel, strides=stride, padding=padding, use_bias=norm != "batch",
        kernel_initializer=_conv_init(), name=f"{name}_conv", dtype=dtype,
    )(x)
    x = apply_norm(x, norm, f"{name}_norm", dtype)
    if act == "relu":
        x = keras.layers.ReLU(name=f"{name}_relu", dtype=dtype)(x)
    elif act == "lrelu":
        x = LeakyReLU(negative_slope=0.2, name=f"{name}_lrelu", dtype=dtype)(x)
    return x


def apply_residual_block(x, filters, *, norm, name, dtype, mobile=False):
    """R256: reflect pad -> 3x3 conv -> norm -> ReLU -> reflect pad -> 3x3 conv -> norm, plus x."""
    y = apply_conv_norm_act(x, filters, 3, norm=norm, act="relu", name=f"{name}_a", dtype=dtype, pad="reflect:1", mobile=mobile)
    y = apply_conv_norm_act(y, filters, 3, norm=norm, act=None, name=f"{name}_b", dtype=dtype, pad="reflect:1", mobile=mobile)
    return keras.layers.Add(name=f"{name}_add", dtype=dtype)([x, y])


def apply_upsample(x, filters, *, mode, norm, name, dtype, mobile=False):
    """Doubles H and W: upsampling -> norm -> ReLU; the convolution is always `{name}_conv`.

    mode "transpose": the k3 s2 "same" transposed convolution (PyTorch's padding=1,
    output_padding=1), the official layer. "nearest" / "bilinear": a 2x resize, a reflect pad
    of 1 and a 3x3 convolution (ModelConfig.upsample says why). The kernels are (3, 3, in, out)
    and (3, 3, out, in): the same parameter count.
    """
    if mode == "transpose":
        x = UpConv2D(
            filters, use_bias=norm != "batch", add_bias=norm != "instance", mobile=mobile,
            kernel_initializer=_conv_init(), name=f"{name}_conv", dtype=dtype,
        )(x)
        x = apply_norm(x, norm, f"{name}_norm", dtype)
        return keras.layers.ReLU(name=f"{name}_relu", dtype=dtype)(x)
    x = Upsample2x(mode, name=f"{name}_resize", dtype=dtype)(x)
    return apply_conv_norm_act(x, filters, 3, norm=norm, act="relu", name=name, dtype=dtype, pad="reflect:1", mobile=mobile)


def build_generator(
    cfg: ModelConfig = ModelConfig(), *, dtype: str = "float32", name: str = "generator", mobile: bool = False
) -> keras.Model:
    """ResNet generator. images: float32 (batch, H, W, 3) in [-1, 1], H and W divisible by 4.

    Returns float32 (batch, H, W, 3) in [-1, 1]. mobile: the export form for TFLite (the same
    layers, weights and numbers in operators XNNPACK runs; see layers.py); the weights of a
    generator built with the same cfg transfer with set_weights.
    """
    f, norm = cfg.gen_filters, cfg.norm
    inputs = keras.Input((None, None, 3), name="images", dtype="float32")
    x = apply_conv_norm_act(inputs, f, 7, norm=norm, act="relu", name="c7s1", dtype=dtype, pad="reflect:3", mobile=mobile)
    x = apply_conv_norm_act(x, f * 2, 3, stride=2, norm=norm, act="relu", name="down1", dtype=dtype, pad="zero:1")
    x = apply_conv_norm_act(x, f * 4, 3, stride=2, norm=norm, act="relu", name="down2", dtype=dtype, pad="zero:1")
    for i in range(cfg.gen_blocks):
        x = apply_residual_block(x, f * 4, norm=norm, name=f"res{i + 1}", dtype=dtype, mobile=mobile)
    for i, filters in enumerate((f * 2, f), start=1):
        x = apply_upsample(x, filters, mode=cfg.upsample, norm=norm, name=f"up{i}", dtype=dtype, mobile=mobile)
    x = ReflectionPad2D(3, mobile=mobile, name="out_pad", dtype=dtype)(x)
    x = OutputConv2D(3, 7, mobile=mobile, kernel_initializer=_conv_init(), name="out_conv", dtype=dtype)(x)
    outputs = keras.layers.Activation("tanh", name="out_tanh", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def build_discriminator(cfg: ModelConfig = ModelConfig(), *, dtype: str = "float32", name: str = "discriminator") -> keras.Model:
    """PatchGAN discriminator. images: float32 (batch, H, W, 3) in [-1, 1].

    Returns float32 logits: (batch, H/8 - 2, W/8 - 2, 1) for "patchgan" (H >= 32),
    (batch, H/8, W/8, 1) for "downsample8".
    """
    f, norm = cfg.disc_filters, cfg.disc_norm
    inputs = keras.Input((None, None, 3), name="images", dtype="float32")
    if cfg.disc_type == "patchgan":
        x = apply_conv_norm_act(inputs, f, 4, stride=2, norm="none", act="lrelu", name="c1", dtype=dtype, pad="zero:1")
        mult = 1
        for i in range(1, cfg.disc_layers):
            mult = min(2**i, 8)
            x = apply_conv_norm_act(x, f * mult, 4, stride=2, norm=norm, act="lrelu", name=f"c{i + 1}", dtype=dtype, pad="zero:1")
        mult = min(2**cfg.disc_layers, 8)
        x = apply_conv_norm_act(
            x, f * mult, 4, stride=1, norm=norm, act="lrelu", name=f"c{cfg.disc_layers + 1}", dtype=dtype, pad="zero:1"
        )
        x = keras.layers.ZeroPadding2D(1, name="out_pad", dtype=dtype)(x)
        x = keras.layers.Conv2D(1, 4, padding="valid", kernel_initializer=_conv_init(), name="out_conv", dtype=dtype)(x)
    else:
        x = apply_conv_norm_act(inputs, f, 4, stride=2, norm="none", act="lrelu", name="c1", dtype=dtype)
        for i in range(1, 3):
            x = apply_conv_norm_act(x, f * 2**i, 4, stride=2, norm=norm, act="lrelu", name=f"c{i + 1}", dtype=dtype)
        x = keras.layers.Conv2D(1, 1, kernel_initializer=_conv_init(), name="out_conv", dtype=dtype)(x)
    outputs = keras.layers.Activation("linear", name="logits", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def time_residual_block(dtype: str, *, size: int = 32, channels: int = 256, repeats: int = 5) -> float:
    """Best seconds of one residual block forward + backward (input and weight gradients) under
    the dtype policy `dtype`: what dominates a train step, for runtime.precision's probe."""
    inputs = keras.Input((None, None, channels), dtype="float32")
    outputs = apply_residual_block(inputs, channels, norm="instance", name="probe", dtype=dtype)
    block = keras.Model(inputs, keras.layers.Activation("linear", dtype="float32")(outputs))
    x = tf.random.stateless_normal((1, size, size, channels), seed=[0, 0])

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_mean(tf.square(block(x, training=True)))
        return tape.gradient(loss, [x] + block.trainable_variables)

    step(x)[0].numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step(x)[0].numpy()
        best = min(best, time.perf_counter() - start)
    return best
