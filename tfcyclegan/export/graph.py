"""The export graphs: the trained generator in its serving and mobile forms, any image size.

Both forms are the generator of tfcyclegan.model.networks, built in float32 with the trained
weights (a second model of the same config, filled with set_weights, for the mobile form), so
the export is the model, not a re-implementation of it:
- serving (SavedModel): the generator itself in inference mode: tf.pad REFLECT and
  conv2d_transpose, which TensorFlow runs fast;
- mobile (TFLite): `build_generator(mobile=True)`: reflection padding from slices, each
  stride-2 transposed convolution as four phase convolutions, the last convolution in 2x2
  blocks, so XNNPACK (LiteRT's CPU delegate) takes the whole graph (model/layers.py).

Both are size-agnostic: images of any H, W >= MIN_SIDE are reflect-padded at the bottom/right
to a multiple of 4 inside the graph and the output is cropped back.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfcyclegan.config import ModelConfig
from tfcyclegan.model.networks import MIN_SIDE, build_generator

__all__ = ["ExportError", "MIN_SIDE", "mobile_generator", "pad_to_multiple", "translate"]


class ExportError(RuntimeError):
    """An export cannot be made or failed its verification; the message says which and why."""


def pad_to_multiple(images, multiple: int = 4):
    """Reflect-pads H and W at the bottom/right to a multiple. Returns (padded, height, width)."""
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    padded = tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="REFLECT")
    # The converter loses the static channel count through a run-time pad; restore it.
    padded = tf.reshape(padded, [-1, height + pad_h, width + pad_w, 3])
    return padded, height, width


def translate(generator: keras.Model, images):
    """images: float32 (batch, H, W, 3) in [-1, 1], any H, W >= MIN_SIDE -> the same shape, through
    `generator` in inference mode on the reflect-padded images, cropped back."""
    padded, height, width = pad_to_multiple(images)
    return generator(padded, training=False)[:, :height, :width, :]


def mobile_generator(generator: keras.Model, model_config: ModelConfig) -> keras.Model:
    """The TFLite form of a trained float32 generator: the same architecture built with
    mobile=True, holding a copy of its weights."""
    mobile = build_generator(model_config, name=f"{generator.name}_mobile", mobile=True)
    try:
        mobile.set_weights(generator.get_weights())
    except ValueError as e:
        raise ExportError(
            f"Generator {generator.name!r} does not have the layout build_generator makes for {model_config}: {e}"
        ) from e
    return mobile
