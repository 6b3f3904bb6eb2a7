"""The DCGAN networks (Radford et al., 2016), as the reference cats system and PyTorch's DCGAN
example build them: unconditional generation of `size` x `size` images from noise.

Generator: z (batch, z_dim) as a 1x1 map -> 4x4 transposed convolution (stride 1, valid) to
8f channels at 4x4 -> batch norm -> ReLU -> then 4x4 stride-2 transposed convolutions, each
halving the channels and doubling H and W, with batch norm and ReLU -> a last one to 3 channels
-> tanh. Discriminator: 4x4 stride-2 convolutions (padding 1) from f channels, doubling, batch
norm (not on the first) and LeakyReLU 0.2, down to 4x4 -> a 4x4 valid convolution to one logit.
Convolutions have no bias (batch norm follows, or the output is a logit as in the reference).

At 64 px with f = 64 and z_dim = 100 they have 3,576,704 and 2,765,568 parameters, the counts
of the PyTorch example; each doubling of `size` adds one stage to each network (and doubles
the channels of the stages before it in the generator, as the reference's widths do: the first
stage has f * size / 8 channels).

`dtype` is a Keras dtype policy name; the outputs are float32 under every policy.
"""

from __future__ import annotations

import math

import keras

from tfcyclegan.model.layers import LeakyReLU

_INIT_STDDEV = 0.02  # the reference initializes convolutions from N(0, 0.02), batch norm's gamma from N(1, 0.02)


def stages_for(size: int) -> int:
    """How many stride-2 stages a DCGAN of `size` px has between 4x4 and size x size (4 at 64 px)."""
    stages = math.log2(size / 4)
    if size < 8 or stages != int(stages):
        raise ValueError(f"A DCGAN's size must be a power of two >= 8. Received: {size!r}")
    return int(stages)


def _batch_norm(name: str, dtype: str):
    return keras.layers.BatchNormalization(
        momentum=0.9, epsilon=1e-5, gamma_initializer=keras.initializers.RandomNormal(1.0, _INIT_STDDEV),
        name=name, dtype=dtype,
    )


def _init():
    return keras.initializers.RandomNormal(stddev=_INIT_STDDEV)


def build_dcgan_generator(*, size: int = 64, z_dim: int = 100, filters: int = 64, dtype: str = "float32",
                          name: str = "generator") -> keras.Model:
    """z: float32 (batch, z_dim) -> images float32 (batch, size, size, 3) in [-1, 1]."""
    stages = stages_for(size)
    inputs = keras.Input((z_dim,), name="z", dtype="float32")
    x = keras.layers.Reshape((1, 1, z_dim), name="z_map", dtype=dtype)(inputs)
    channels = filters * 2 ** (stages - 1)
    x = keras.layers.Conv2DTranspose(channels, 4, strides=1, padding="valid", use_bias=False, kernel_initializer=_init(),
                                     name="g0_conv", dtype=dtype)(x)
    x = keras.layers.ReLU(name="g0_relu", dtype=dtype)(_batch_norm("g0_norm", dtype)(x))
    for i in range(1, stages):
        channels //= 2
        x = keras.layers.Conv2DTranspose(channels, 4, strides=2, padding="same", use_bias=False,
                                         kernel_initializer=_init(), name=f"g{i}_conv", dtype=dtype)(x)
        x = keras.layers.ReLU(name=f"g{i}_relu", dtype=dtype)(_batch_norm(f"g{i}_norm", dtype)(x))
    x = keras.layers.Conv2DTranspose(3, 4, strides=2, padding="same", use_bias=False, kernel_initializer=_init(),
                                     name="out_conv", dtype=dtype)(x)
    outputs = keras.layers.Activation("tanh", name="out_tanh", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def build_dcgan_discriminator(*, size: int = 64, filters: int = 64, dtype: str = "float32",
                              name: str = "discriminator") -> keras.Model:
    """images: float32 (batch, size, size, 3) in [-1, 1] -> float32 logits (batch, 1)."""
    stages = stages_for(size)
    inputs = keras.Input((size, size, 3), name="images", dtype="float32")
    x = inputs
    for i in range(stages):
        x = keras.layers.ZeroPadding2D(1, name=f"d{i}_pad", dtype=dtype)(x)
        x = keras.layers.Conv2D(filters * 2**i, 4, strides=2, use_bias=False, kernel_initializer=_init(),
                                name=f"d{i}_conv", dtype=dtype)(x)
        if i > 0:  # the reference has no batch norm on the first layer
            x = _batch_norm(f"d{i}_norm", dtype)(x)
        x = LeakyReLU(negative_slope=0.2, name=f"d{i}_lrelu", dtype=dtype)(x)
    x = keras.layers.Conv2D(1, 4, padding="valid", use_bias=False, kernel_initializer=_init(), name="out_conv",
                            dtype=dtype)(x)
    outputs = keras.layers.Flatten(name="logits", dtype="float32")(x)
    return keras.Model(inputs, keras.layers.Activation("linear", name="logit", dtype="float32")(outputs), name=name)
