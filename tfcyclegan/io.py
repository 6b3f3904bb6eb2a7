"""Files and pixels: atomic writes, the cache folder, pixel conversions, reading a user's photo.

Nothing here knows about networks or training; every other module writes its JSON, PNGs and
small files through these functions, so a crash never leaves half a file behind.
"""

from __future__ import annotations

import io as _io
import json
import os
import tempfile
import warnings
from typing import Any

import numpy as np

CACHE_ENV = "TFCYCLEGAN_CACHE_DIR"
DEPRECATED_CACHE_ENV = "TFCYCLEGAN_CACHE"  # the data cache's old name for the same folder
MAX_SIDE = 1024  # the default longest side read_image accepts without resizing


class ImageError(ValueError):
    """One input image cannot be used (not an image, too large, too small); the message says why."""


class NotAnImageError(ImageError):
    """The bytes are empty, or not an image in a format PIL reads."""


class ImageTooLargeError(ImageError):
    """The image has more pixels, or a longer side, than the caller allows."""


# -- the cache folder ----------------------------------------------------------------------------


def cache_dir() -> str:
    """$TFCYCLEGAN_CACHE_DIR, else ~/.cache/tfcyclegan: generated data, file indexes, the precision probe.

    $TFCYCLEGAN_CACHE (the data cache's former variable) still works, with a warning.
    """
    value = os.environ.get(CACHE_ENV)
    if not value and os.environ.get(DEPRECATED_CACHE_ENV):
        value = os.environ[DEPRECATED_CACHE_ENV]
        warnings.warn(
            f"${DEPRECATED_CACHE_ENV} is deprecated and will be removed: set ${CACHE_ENV} instead "
            "(the same folder).", FutureWarning, stacklevel=2,
        )
    return value or os.path.join(os.path.expanduser("~"), ".cache", "tfcyclegan")


# -- atomic writes -------------------------------------------------------------------------------


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file in the same folder and a rename."""
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, value: Any, *, sort_keys: bool = True) -> None:
    """JSON with a trailing newline; NaN and Inf are refused (they are not JSON)."""
    write_text(path, json.dumps(value, indent=2, sort_keys=sort_keys, allow_nan=False) + "\n")


def save_png(image: np.ndarray, path: str | os.PathLike, *, optimize: bool = False) -> None:
    """uint8 (H, W, 3) -> a PNG file, written atomically."""
    from PIL import Image

    buffer = _io.BytesIO()
    Image.fromarray(np.asarray(image)).save(buffer, format="PNG", optimize=optimize)
    write_bytes(path, buffer.getvalue())


# -- pixels --------------------------------------------------------------------------------------


def _is_tensorflow(value) -> bool:
    return type(value).__module__.split(".")[0] == "tensorflow"


def to_float(images):
    """uint8 [0, 255] -> float32 [-1, 1]. numpy in, numpy out; a TensorFlow tensor in, a tensor out."""
    if _is_tensorflow(images):
        import tensorflow as tf  # already loaded: the argument is one of its tensors

        return tf.cast(images, tf.float32) / 127.5 - 1.0
    return np.asarray(images, np.float32) / 127.5 - 1.0


def to_uint8(images):
    """float [-1, 1] -> uint8 [0, 255], rounded. numpy in, numpy out; a TensorFlow tensor in, a tensor out."""
    if _is_tensorflow(images):
        import tensorflow as tf

        return tf.cast(tf.round(tf.clip_by_value((images + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)
    return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def read_image(
    source: str | os.PathLike | bytes,
    *,
    size: int | None = None,
    max_side: int = MAX_SIDE,
    min_side: int = 1,
    shrink: bool = False,
    max_pixels: int | None = None,
) -> np.ndarray:
    """A photo (a file's path, or its bytes) as uint8 (H, W, 3) RGB, upright (EXIF orientation applied).

    Grey and palette images become RGB; transparency is composited over white. size: resize so
    the longer side is `size` pixels. Without it, an image whose longer side exceeds `max_side`
    is refused from its header, before it is decoded (memory grows with the pixel count), or,
    with shrink=True, made smaller so its longer side is `max_side`; a JPEG is then decoded at a
    reduced scale (1/2, 1/4 or 1/8, at least twice `max_side`), so the memory follows the output
    size rather than the file's pixel count. max_pixels: refuse, before decoding, an image that
    would decode to more pixels than this (after the reduced-scale decoding of a JPEG).
    Raises ImageError naming what is wrong: NotAnImageError for bytes that are no image we
    read, ImageTooLargeError for one over a limit.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise NotAnImageError("empty (0 bytes)")
        opened = _io.BytesIO(source)
    else:
        opened = source
    try:
        image = Image.open(opened)
    except UnidentifiedImageError:
        raise NotAnImageError("not an image (unknown or unsupported format)") from None
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"refused, far too many pixels ({e})") from None
    except OSError as e:
        raise ImageError(f"cannot be read ({e})") from None
    with image:
        width, height = image.size
        if size is None and max(width, height) > max_side:
            if not shrink:
                raise ImageTooLargeError(
                    f"{width}x{height} is larger than --max_side={max_side}: pass --size=N to translate a copy whose "
                    "longer side is N pixels, or raise --max_side (memory grows with the pixel count)"
                )
            size = max_side
            # Only a JPEG can be decoded smaller than it is stored (its DCT scales); the 2x margin
            # leaves LANCZOS, below, to do the last step, so the copy is as sharp as from a full decode.
            scale = 2 * max_side / max(width, height)
            image.draft(None, (max(1, int(width * scale)), max(1, int(height * scale))))
        if max_pixels is not None and image.width * image.height > max_pixels:
            raise ImageTooLargeError(
                f"{width}x{height} is {width * height / 1e6:.1f} megapixels, more than the {max_pixels / 1e6:g} "
                "megapixels allowed (memory grows with the pixel count): send a smaller copy"
            )
        try:
            if shrink and size is not None and image.mode in ("RGB", "L"):
                # Shrunk first, so the copies below (turning, converting) are of the small image.
                image = _longer_side(image, size)
                size = None
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            image = image.convert("RGB")
            if size is not None:
                image = _longer_side(image, size)
            pixels = np.asarray(image, dtype=np.uint8)
        except OSError as e:  # truncated or corrupt data shows up only when decoding
            raise ImageError(f"cannot be decoded ({e})") from None
    if min(pixels.shape[:2]) < min_side:
        raise ImageError(f"{pixels.shape[1]}x{pixels.shape[0]} is smaller than {min_side}x{min_side} pixels")
    return pixels


def _longer_side(image, size: int):
    """A PIL image resized (LANCZOS) so its longer side is `size` pixels."""
    from PIL import Image

    scale = size / max(image.size)
    target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(target, Image.Resampling.LANCZOS)
