"""What an export must compute, and how close each file must come: references, parity, test images."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfcyclegan.export.graph import MIN_SIDE, ExportError, translate
from tfcyclegan.io import to_float

KERAS_TOLERANCE = 1e-5  # SavedModel vs Keras, max abs difference on the [-1, 1] scale


@dataclasses.dataclass(frozen=True)
class Parity:
    """The bound a TFLite file must meet against the SavedModel on the [-1, 1] scale."""

    metric: str  # "max_abs" (at most `bound`) or "psnr_db" (at least `bound`, peak-to-peak 2.0)
    bound: float


PARITY: Mapping[str, Parity] = {
    "float32": Parity("max_abs", 1e-3),
    "float16": Parity("max_abs", 2e-2),
    "int8": Parity("psnr_db", 30.0),
}


def check_sizes(size: int) -> list[tuple[int, int]]:
    """The export size and a second, non-square size with odd sides (so not divisible by 4)."""
    height = max(MIN_SIDE + 1, size * 3 // 4) | 1
    width = size + 1 if size % 2 == 0 else size + 2
    return [(size, size), (height, width)]


def keras_reference(generator: keras.Model, images: np.ndarray) -> np.ndarray:
    """What the exported graphs must compute: the Keras generator on the reflect-padded images,
    cropped back. images: float32 (batch, H, W, 3) in [-1, 1]."""
    return translate(generator, tf.constant(images, tf.float32)).numpy()


def synthetic_images(count: int, height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """Deterministic photo-like images: smooth colour fields, hard edges and a little noise.

    Returns float32 (count, height, width, 3) in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1.0, 1.0, (count, 5, 5, 3)).astype(np.float32)
    images = tf.image.resize(coarse, (height, width), method="bicubic").numpy()
    for image in images:
        for _ in range(3):
            y0, x0 = rng.integers(0, height // 2), rng.integers(0, width // 2)
            y1, x1 = y0 + rng.integers(2, height // 2 + 2), x0 + rng.integers(2, width // 2 + 2)
            image[y0:y1, x0:x1] = rng.uniform(-1.0, 1.0, 3)
    images += rng.normal(0.0, 0.03, images.shape).astype(np.float32)
    return np.clip(images, -1.0, 1.0)


def load_parity_images(paths: Sequence[str], height: int, width: int) -> np.ndarray:
    """Real photos for the parity checks, resized to (height, width). float32 in [-1, 1]."""
    out = []
    for path in paths:
        data = tf.io.read_file(path)
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        out.append(tf.image.resize(to_float(image), (height, width), antialias=True).numpy())
    if not out:
        raise ExportError("No parity images were given.")
    return np.clip(np.stack(out), -1.0, 1.0)


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two images on the [-1, 1] scale (peak-to-peak 2), in dB; inf when equal."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0.0 else 10.0 * float(np.log10(4.0 / mse))


def measure_parity(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray], quantization: str) -> dict:
    """Compares per-size output batches; passes when the quantization's bound holds at every size."""
    rule = PARITY[quantization]
    max_abs = max(float(np.max(np.abs(r - c))) for r, c in zip(reference, candidate))
    psnr = min(psnr_db(r, c) for r, c in zip(reference, candidate))
    value = max_abs if rule.metric == "max_abs" else psnr
    passed = value <= rule.bound if rule.metric == "max_abs" else value >= rule.bound
    return {
        "metric": rule.metric, "bound": rule.bound, "passed": bool(passed),
        "max_abs": max_abs, "psnr_db": None if psnr == float("inf") else round(psnr, 2),
    }
