"""Files and pixels: atomic writes, the cache folder, pixel conversions, reading a user's photo.

Nothing here knows about networks or training; every other module writes its JSON, PNGs and
small files through these functions, so a crash never leaves half a file behind.
"""

from __future__ import annotations

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
    import io as _io

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


def read_image(path: str, *, size: int | None = None, max_side: int = MAX_SIDE, min_side: int = 1) -> np.ndarray:
    """A photo as uint8 (H, W, 3) RGB, upright (EXIF orientation applied).

    Grey and palette images become RGB; transparency is composited over white. size: resize so
    the longer side is `size` pixels. Without it, an image whose longer side exceeds `max_side`
    is refused from its header, before it is decoded (memory grows with the pixel count).
    Raises ImageError naming what is wrong.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError("not an image (unknown or unsupported format)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"refused, far too many pixels ({e})") from None
    except OSError as e:
        raise ImageError(f"cannot be read ({e})") from None
    with image:
        width, height = image.size
        if size is None and max(width, height) > max_side:
            raise ImageError(
                f"{width}x{height} is larger than --max_side={max_side}: pass --size=N to translate a copy whose "
                "longer side is N pixels, or raise --max_side (memory grows with the pixel count)"
            )
        try:
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            image = image.convert("RGB")
            if size is not None:
                scale = size / max(image.size)
                target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                image = image.resize(target, Image.Resampling.LANCZOS)
            pixels = np.asarray(image, dtype=np.uint8)
        except OSError as e:  # truncated or corrupt data shows up only when decoding
            raise ImageError(f"cannot be decoded ({e})") from None
    if min(pixels.shape[:2]) < min_side:
        raise ImageError(f"{pixels.shape[1]}x{pixels.shape[0]} is smaller than {min_side}x{min_side} pixels")
    return pixels
