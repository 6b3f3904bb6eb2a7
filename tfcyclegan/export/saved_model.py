"""The SavedModel for TF Serving: three signatures over the serving form of a generator.

| signature         | input                                              | output                       |
|-------------------|----------------------------------------------------|------------------------------|
| serving_default   | images: uint8 [batch, H, W, 3], RGB 0..255         | images: uint8, same shape    |
| translate_float   | images: float32 [batch, H, W, 3] in [-1, 1]        | images: float32 in [-1, 1]   |
| translate_encoded | image_bytes: string [batch], JPEG/PNG/BMP/GIF      | png_bytes: string [batch]    |

Any H, W >= MIN_SIDE works (the graph pads to a multiple of 4 and crops back). The variables
are stored once (the float32 parameter bytes) and the SavedModel loads without Keras or tfcyclegan.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from tfcyclegan.export.graph import MIN_SIDE, ExportError, translate
from tfcyclegan.io import to_float, to_uint8

SIGNATURES = {
    "serving_default": {"inputs": {"images": "uint8 [batch, H, W, 3]"}, "outputs": {"images": "uint8 [batch, H, W, 3]"}},
    "translate_float": {"inputs": {"images": "float32 [batch, H, W, 3] in [-1, 1]"},
                        "outputs": {"images": "float32 [batch, H, W, 3] in [-1, 1]"}},
    "translate_encoded": {"inputs": {"image_bytes": "string [batch] JPEG/PNG"}, "outputs": {"png_bytes": "string [batch] PNG"}},
}


class _Untracked:
    """A plain holder: tf.Module does not track (and the SavedModel does not save) what it holds."""

    def __init__(self, value):
        self.value = value


class ServingModule(tf.Module):
    """A trained float32 generator with the SavedModel's signatures."""

    def __init__(self, generator: keras.Model, *, name: str | None = None):
        super().__init__(name=name or generator.name)
        self._generator = _Untracked(generator)
        # The SavedModel tracks the tf.Variables inside the Keras variables (`.value`): TF
        # Serving's and saved_model_cli's loader restores only variables saved as such, and
        # tracking the Keras model as well would store every weight twice.
        self.weights = [weight.value for weight in generator.weights]

    @property
    def generator(self) -> keras.Model:
        return self._generator.value

    def _checked_translate(self, images):
        # The signature's shape is documentation only (TF Serving and loaded signatures do not
        # enforce it), so the checks run in the graph, where they give a readable error.
        images = tf.ensure_shape(images, [None, None, None, 3], name="expected_images_batch_height_width_3_channels")
        shape = tf.shape(images)
        tf.debugging.assert_greater_equal(
            tf.minimum(shape[1], shape[2]), MIN_SIDE,
            message=f"images must be at least {MIN_SIDE}x{MIN_SIDE} pixels (height, width)",
        )
        return translate(self.generator, images)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serving_default(self, images):
        """uint8 (batch, H, W, 3) RGB in [0, 255] -> {"images": uint8 (batch, H, W, 3)}."""
        return {"images": to_uint8(self._checked_translate(to_float(images)))}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    def translate_float(self, images):
        """float32 (batch, H, W, 3) in [-1, 1] -> {"images": float32 (batch, H, W, 3) in [-1, 1]}."""
        return {"images": self._checked_translate(images)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def translate_encoded(self, image_bytes):
        """JPEG/PNG/BMP/GIF bytes (batch,) -> {"png_bytes": PNG bytes (batch,)}; sizes may differ.

        Grey and RGBA images are converted to RGB. The `_bytes` suffixes make TF Serving's REST
        API carry both as {"b64": ...}.
        """

        def one(data):
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
            out = to_uint8(self._checked_translate(to_float(image)[None]))[0]
            return tf.io.encode_png(out)

        return {"png_bytes": tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([], tf.string))}

    def signatures(self) -> dict:
        return {name: getattr(self, name).get_concrete_function() for name in SIGNATURES}


def save(module: ServingModule, path: str) -> None:
    tf.saved_model.save(module, path, signatures=module.signatures())


def float_translator(path_or_loaded):
    """A callable float32 (batch, H, W, 3) [-1, 1] -> same, through the translate_float signature."""
    loaded = tf.saved_model.load(path_or_loaded) if isinstance(path_or_loaded, str) else path_or_loaded
    signature = loaded.signatures["translate_float"]
    return lambda images: signature(images=tf.constant(images, tf.float32))["images"].numpy()


def check_other_signatures(loaded, images: np.ndarray, model_name: str) -> None:
    """serving_default and translate_encoded agree with translate_float (to one uint8 level)."""
    as_uint8 = to_uint8(images)
    served = loaded.signatures["serving_default"](images=tf.constant(as_uint8))["images"].numpy()
    float_out = loaded.signatures["translate_float"](images=tf.constant(to_float(as_uint8)))["images"].numpy()
    expected = to_uint8(float_out).astype(np.int32)
    if served.dtype != np.uint8 or served.shape != as_uint8.shape or np.abs(served.astype(np.int32) - expected).max() > 1:
        raise ExportError(f"{model_name}: serving_default disagrees with translate_float.")
    png = tf.io.encode_png(as_uint8[0])
    decoded = tf.io.decode_png(loaded.signatures["translate_encoded"](image_bytes=tf.stack([png]))["png_bytes"][0]).numpy()
    if not np.array_equal(decoded, served[0]):
        raise ExportError(f"{model_name}: translate_encoded disagrees with serving_default.")


def directory_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
