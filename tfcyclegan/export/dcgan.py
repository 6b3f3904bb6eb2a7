"""Exporting a DCGAN: a SavedModel that generates images for TF Serving, and TFLite files (z -> image).

SavedModel signatures:

| signature                         | input                                | output                                  |
|-----------------------------------|--------------------------------------|-----------------------------------------|
| serving_default, generate         | seeds: int64 [batch]                 | images: uint8 [batch, S, S, 3]          |
| generate_from_z                   | z: float32 [batch, z_dim]            | images: uint8 [batch, S, S, 3]          |
| generate_float                    | z: float32 [batch, z_dim]            | images: float32 [batch, S, S, 3], [-1, 1] |

A seed always gives the same image (its z is tf.random.stateless_normal([z_dim], [seed, 0])).
The TFLite files take z float32 [1, z_dim] and give float32 [1, S, S, 3] in [-1, 1]: the batch
is fixed at 1, so every shape is static and XNNPACK takes the transposed convolutions.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfcyclegan.export.graph import ExportError
from tfcyclegan.io import to_uint8

SIGNATURES = {
    "serving_default": {"inputs": {"seeds": "int64 [batch]"}, "outputs": {"images": "uint8 [batch, S, S, 3]"}},
    "generate": {"inputs": {"seeds": "int64 [batch]"}, "outputs": {"images": "uint8 [batch, S, S, 3]"}},
    "generate_from_z": {"inputs": {"z": "float32 [batch, z_dim]"}, "outputs": {"images": "uint8 [batch, S, S, 3]"}},
    "generate_float": {"inputs": {"z": "float32 [batch, z_dim]"},
                       "outputs": {"images": "float32 [batch, S, S, 3] in [-1, 1]"}},
}


def z_of_seeds(seeds, z_dim: int):
    """float32 (batch, z_dim): the noise of each int64 seed."""
    return tf.map_fn(lambda seed: tf.random.stateless_normal([z_dim], seed=tf.stack([seed, tf.constant(0, tf.int64)])),
                     tf.cast(seeds, tf.int64), fn_output_signature=tf.TensorSpec([z_dim], tf.float32))


class _Untracked:
    def __init__(self, value):
        self.value = value


class GeneratorModule(tf.Module):
    """A trained float32 DCGAN generator with the SavedModel's signatures."""

    def __init__(self, generator: keras.Model, *, name: str | None = None):
        super().__init__(name=name or generator.name)
        self._generator = _Untracked(generator)
        # As for the CycleGAN exports: the tf.Variables inside the Keras variables, stored once.
        self.weights = [weight.value for weight in generator.weights]
        self.z_dim = int(generator.inputs[0].shape[-1])
        z_spec = tf.TensorSpec([None, self.z_dim], tf.float32, name="z")
        seeds_spec = tf.TensorSpec([None], tf.int64, name="seeds")
        self.generate = tf.function(lambda seeds: {"images": self._uint8(z_of_seeds(seeds, self.z_dim))},
                                    input_signature=[seeds_spec])
        self.generate_from_z = tf.function(lambda z: {"images": self._uint8(z)}, input_signature=[z_spec])
        self.generate_float = tf.function(lambda z: {"images": self._float(z)}, input_signature=[z_spec])

    def _float(self, z):
        z = tf.ensure_shape(z, [None, self.z_dim], name=f"expected_z_batch_{self.z_dim}")
        return self._generator.value(z, training=False)

    def _uint8(self, z):
        return to_uint8(self._float(z))

    def signatures(self) -> dict:
        generate = self.generate.get_concrete_function()
        return {"serving_default": generate, "generate": generate,
                "generate_from_z": self.generate_from_z.get_concrete_function(),
                "generate_float": self.generate_float.get_concrete_function()}


def mobile_function(generator: keras.Model):
    """The TFLite graph: z float32 (1, z_dim) -> {"images": float32 (1, S, S, 3) in [-1, 1]}."""
    z_dim = int(generator.inputs[0].shape[-1])
    spec = tf.TensorSpec([1, z_dim], tf.float32, name="z")
    return tf.function(lambda z: {"images": generator(z, training=False)}, input_signature=[spec])


def parity_z(count: int, z_dim: int, seed: int = 7) -> np.ndarray:
    """float32 (count, z_dim): the noise the parity checks generate from."""
    return np.random.default_rng(seed).standard_normal((count, z_dim)).astype(np.float32)


def check_seeds_signature(loaded, z_dim: int, model_name: str) -> None:
    """generate(seeds) must equal generate_from_z(z of those seeds), and be repeatable."""
    seeds = tf.constant([0, 1, 12345], tf.int64)
    first = loaded.signatures["generate"](seeds=seeds)["images"].numpy()
    again = loaded.signatures["generate"](seeds=seeds)["images"].numpy()
    from_z = loaded.signatures["generate_from_z"](z=z_of_seeds(seeds, z_dim))["images"].numpy()
    if first.dtype != np.uint8 or not np.array_equal(first, again) or not np.array_equal(first, from_z):
        raise ExportError(f"{model_name}: generate(seeds) is not repeatable or disagrees with generate_from_z.")
