"""Photos made from face crops: crops placed in a drawn scene at known positions, sizes and angles.

The tests, the benchmark and the before/after panel of docs/faces.md need photos with faces
whose true geometry is known; UTKFace crops pasted into a background give that (the crops are
read from the user's copy at run time, never stored in the repository).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfcyclegan.faces.align import apply, invert, warp


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a crop goes: centre (x, y) in the scene, side in pixels (the crop's side once
    scaled), angle in degrees (counter-clockwise as seen)."""

    centre: tuple[float, float]
    side: float
    angle: float = 0.0


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """uint8 (height, width, 3): a smooth, coloured scene (a wall, a floor, some furniture) with
    sensor-like noise, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    top, bottom = rng.uniform(60, 220, 3), rng.uniform(30, 160, 3)
    t = (y / max(height - 1, 1))[..., None]
    image = top * (1 - t) + bottom * t
    for _ in range(6):  # blurry blobs of light and shade
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.1, 0.4) * max(width, height)
        image += rng.uniform(-40, 40, 3) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
    for _ in range(4):  # furniture: flat rectangles
        x0, y0 = rng.integers(0, width), rng.integers(height // 3, height)
        w, h = rng.integers(width // 10, width // 3), rng.integers(height // 10, height // 3)
        image[y0:y0 + h, x0:x0 + w] = rng.uniform(20, 230, 3)
    image += rng.normal(0, 3, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def placement_matrix(crop_side: int, placement: Placement) -> np.ndarray:
    """float64 (2, 3): crop pixels -> scene pixels for a crop of `crop_side` pixels."""
    scale = placement.side / crop_side
    theta = math.radians(-placement.angle)  # image y points down: counter-clockwise as seen
    c, s = math.cos(theta) * scale, math.sin(theta) * scale
    linear = np.array([[c, -s], [s, c]])
    centre = np.asarray(placement.centre, np.float64)
    return np.concatenate([linear, (centre - linear @ np.array([crop_side / 2, crop_side / 2]))[:, None]], axis=1)


def place(scene: np.ndarray, crop: np.ndarray, placement: Placement) -> np.ndarray:
    """Pastes `crop` (uint8 (S, S, 3)) into `scene` (uint8 (H, W, 3), changed in place) with a
    soft oval edge, so no square outline shows. Returns the crop -> scene matrix."""
    side = crop.shape[0]
    matrix = placement_matrix(side, placement)
    corners = apply(matrix, np.array([[0, 0], [side, 0], [0, side], [side, side]], np.float64))
    h, w = scene.shape[:2]
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int), [w, h])
    if x0 >= x1 or y0 >= y1:
        return matrix
    to_crop = invert(matrix)
    centres = np.stack(np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5), -1)
    u = apply(to_crop, centres) / side  # crop fractions
    r = np.hypot((u[..., 0] - 0.5) / 0.5, (u[..., 1] - 0.52) / 0.52)
    alpha = np.clip((1.0 - r) / 0.15, 0.0, 1.0)[..., None]
    shifted = to_crop.copy()
    shifted[:, 2] = to_crop[:, :2] @ np.array([x0, y0], np.float64) + to_crop[:, 2]
    pasted = warp(crop, shifted, (y1 - y0, x1 - x0)).astype(np.float32)
    region = scene[y0:y1, x0:x1].astype(np.float32)
    scene[y0:y1, x0:x1] = np.clip(np.round(region * (1 - alpha) + pasted * alpha), 0, 255).astype(np.uint8)
    return matrix


def compose(crops, placements, *, size: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """(scene uint8 (H, W, 3), [crop -> scene (2, 3) matrix per crop]) for size = (width, height)."""
    scene = background(size[0], size[1], seed)
    matrices = [place(scene, np.asarray(c), p) for c, p in zip(crops, placements)]
    return scene, matrices
