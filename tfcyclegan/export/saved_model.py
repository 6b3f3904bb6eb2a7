"""The SavedModel for TF Serving: three signatures over the serving form of a generator.

| signature         | input                                              | output                       |
|-------------------|----------------------------------------------------|------------------------------|
| serving_default   | images: uint8 [batch, H, W, 3], RGB 0..255         | images: uint8, same shape    |
| translate_float   | images: float32 [batch, H, W, 3] in [-1, 1]        | images: float32 in [-1, 1]   |
| translate_encoded | image_bytes: string [batch], JPEG/PNG/BMP/GIF      | png_bytes: string [batch]    |

Any H, W from MIN_SIDE to `max_side` works (the graph pads to a multiple of 4 and crops back).
Larger images are refused before any large allocation (for translate_encoded, from the file's
header, before decoding): one oversized upload must not take down a server. translate_encoded
applies a JPEG's EXIF orientation, as phone photos need. The variables are stored once (the
float32 parameter bytes) and the SavedModel loads without Keras or tfcyclegan.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from tfcyclegan.export.graph import MIN_SIDE, ExportError, translate
from tfcyclegan.io import to_float, to_uint8

DEFAULT_MAX_SIDE = 2048  # longest side the signatures accept (export --max_side)

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
    """A trained float32 generator with the SavedModel's signatures; images up to `max_side` px."""

    def __init__(self, generator: keras.Model, *, name: str | None = None, max_side: int = DEFAULT_MAX_SIDE):
        super().__init__(name=name or generator.name)
        if not isinstance(max_side, int) or max_side < MIN_SIDE:
            raise ExportError(f"--max_side must be an integer >= {MIN_SIDE}. Received: {max_side!r}")
        self.max_side = max_side
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
        checks = [
            tf.debugging.assert_greater(shape[0], 0, message="the batch holds no image: send at least one"),
            tf.debugging.assert_greater_equal(
                tf.minimum(shape[1], shape[2]), MIN_SIDE,
                message=f"images must be at least {MIN_SIDE}x{MIN_SIDE} pixels (height, width)"),
            self._assert_not_too_large(shape[1], shape[2]),
        ]
        with tf.control_dependencies(checks):
            return translate(self.generator, tf.identity(images))

    def _assert_not_too_large(self, height, width):
        return tf.debugging.assert_less_equal(
            tf.maximum(height, width), tf.cast(self.max_side, height.dtype),
            message=f"image too large: this model accepts at most {self.max_side} pixels on the longer side "
                    "(the longer side is x below); resize it first, or export with a larger --max_side")

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
            height, width = encoded_size(data)
            with tf.control_dependencies([self._assert_not_too_large(height, width)]):  # before decoding
                image = decode_upright(data)
            out = to_uint8(self._checked_translate(image[None]))[0]
            return tf.io.encode_png(out)

        return {"png_bytes": tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([], tf.string))}

    def signatures(self) -> dict:
        return {name: getattr(self, name).get_concrete_function() for name in SIGNATURES}


# -- encoded images: the size from the header, and the EXIF orientation -------------------------------


def _uint(data, offset, length: int, big_endian):
    """The unsigned integers of `length` bytes at `offset` (a scalar or a vector of offsets) of
    `data` (a scalar string, long enough), int64."""
    offset = tf.convert_to_tensor(offset, tf.int64)
    strings = tf.strings.substr(tf.fill(tf.shape(offset), data), offset, tf.fill(tf.shape(offset), tf.constant(length, tf.int64)))
    raw = tf.cast(tf.io.decode_raw(strings, tf.uint8), tf.int64)  # (..., length)
    powers = tf.constant([256**k for k in range(length)], tf.int64)
    return tf.reduce_sum(raw * tf.where(big_endian, tf.reverse(powers, [0]), powers), axis=-1)


def encoded_size(data):
    """(height, width), int64 scalars, from the header of JPEG, PNG, GIF or BMP bytes, without
    decoding them; (0, 0) for other formats (decode_image then refuses them)."""
    padded = tf.strings.join([data, tf.constant(b"\0" * 32)])  # every read below stays in range
    start = tf.strings.substr(padded, 0, 4)
    jpeg = tf.equal(tf.strings.substr(start, 0, 2), b"\xff\xd8")

    def jpeg_size():
        shape = tf.cast(tf.io.extract_jpeg_shape(data), tf.int64)
        return shape[0], shape[1]

    def png_size():
        return _uint(padded, 20, 4, True), _uint(padded, 16, 4, True)

    def gif_size():
        return _uint(padded, 8, 2, False), _uint(padded, 6, 2, False)

    def bmp_size():
        signed = lambda v: tf.abs(tf.where(v >= 2**31, v - 2**32, v))  # noqa: E731 -- a top-down BMP is negative
        return signed(_uint(padded, 22, 4, False)), signed(_uint(padded, 18, 4, False))

    zero = tf.constant(0, tf.int64)
    return tf.case([
        (jpeg, jpeg_size),
        (tf.equal(start, b"\x89PNG"), png_size),
        (tf.equal(start, b"GIF8"), gif_size),
        (tf.equal(tf.strings.substr(start, 0, 2), b"BM"), bmp_size),
    ], default=lambda: (zero, zero))


def exif_orientation(data):
    """The EXIF orientation (1-8) of JPEG bytes, int32 scalar; 1 when there is none.

    Reads the APP1 "Exif" segment's TIFF header: the byte order, IFD0's offset, then IFD0's
    entries (12 bytes each) for tag 0x0112. Every read is clamped inside the padded segment, so
    garbage offsets give 1, never an error.
    """
    header = tf.strings.substr(data, 0, tf.minimum(tf.strings.length(data), 65536))
    parts = tf.strings.split(header, sep="Exif\x00\x00", maxsplit=1)
    tiff = tf.strings.join([parts[-1], tf.constant(b"\0" * 1024)])
    last = tf.cast(tf.strings.length(tiff), tf.int64) - 16
    at = lambda offset: tf.clip_by_value(offset, 0, last)  # noqa: E731
    found = tf.logical_and(tf.equal(tf.size(parts), 2), tf.equal(tf.strings.substr(data, 0, 2), b"\xff\xd8"))
    big_endian = tf.equal(tf.strings.substr(tiff, 0, 2), b"MM")
    ifd = _uint(tiff, 4, 4, big_endian)
    count = _uint(tiff, at(ifd), 2, big_endian)
    entries = at(ifd + 2 + 12 * tf.range(32, dtype=tf.int64))  # the first 32 entries of IFD0
    tags = _uint(tiff, entries, 2, big_endian)
    values = _uint(tiff, at(entries + 8), 2, big_endian)
    match = tf.logical_and(tf.equal(tags, 0x0112), tf.range(32, dtype=tf.int64) < count)
    value = tf.reduce_max(tf.where(match, values, tf.zeros_like(values)))
    valid = tf.logical_and(found, tf.logical_and(value >= 1, value <= 8))
    return tf.cast(tf.where(valid, value, 1), tf.int32)


def decode_upright(data):
    """JPEG/PNG/BMP/GIF bytes -> float32 (H, W, 3) in [-1, 1], turned as the EXIF orientation says
    (as PIL.ImageOps.exif_transpose does). Grey and RGBA become RGB."""
    # Turned in float32: oneDNN has no uint8 transpose on every CPU (TensorFlow logs an error-looking line).
    image = to_float(tf.io.decode_image(data, channels=3, expand_animations=False))
    transpose = lambda x: tf.transpose(x, [1, 0, 2])  # noqa: E731
    turns = [
        lambda: image,                                   # 1: upright
        lambda: tf.reverse(image, [1]),                  # 2: mirrored left-right
        lambda: tf.image.rot90(image, 2),                # 3: upside down
        lambda: tf.reverse(image, [0]),                  # 4: mirrored top-bottom
        lambda: transpose(image),                        # 5: transposed
        lambda: tf.image.rot90(image, 3),                # 6: turned 90 degrees counter-clockwise
        lambda: tf.image.rot90(transpose(image), 2),     # 7: transversed
        lambda: tf.image.rot90(image, 1),                # 8: turned 90 degrees clockwise
    ]
    upright = tf.switch_case(exif_orientation(data) - 1, turns)
    return tf.ensure_shape(upright, [None, None, 3])


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
