"""Aligning a face like the training crops, and pasting a translated crop back with a feathered mask.

Three frames of continuous pixel coordinates (see tfcyclegan.faces.detect):
  photo  the user's image, (x, y) in [0, W] x [0, H];
  crop   what the generator sees, (x, y) in [0, crop_size]^2;
  frame  a UTKFace crop's frame as fractions of its side, (u, v) in [0, 1]^2, where the template
         (tfcyclegan.faces.template) is measured.
A crop shows the centre `view` of the frame: training resizes each 200 px UTKFace crop to
1.12 x the stage size and cuts a stage-size square at random (preprocess="resize_and_crop"), so on
average a model saw the middle 1/1.12 of the frame (training_view()).

Warps use PIL (Image.transform with an affine, bicubic): no OpenCV. Where a warp shrinks, the
source is first resized with a Lanczos filter to about the target's scale, so nothing aliases.
"""

from __future__ import annotations

import math

import numpy as np

from tfcyclegan.faces.detect import LANDMARKS, Face
from tfcyclegan.faces.template import ALIGN_LANDMARKS, UTKFACE_SIDE, UTKFACE_TEMPLATE

# The weights of ALIGN_LANDMARKS in the fit (eyes, eyes, mouth, mouth). The eyes weigh more: the
# detector places them more steadily than the mouth's corners, and in UTKFace's own crops they
# vary half as much (template.py), so an eye-led fit reproduces the training geometry more closely
# (docs/faces.md compares weights 1 and 0.25 on the mouth).
ALIGN_WEIGHTS = np.array([1.0, 1.0, 0.25, 0.25])
RESIZE_AND_CROP_VIEW = 1 / 1.12  # data.pipeline.LOAD_SCALE: the reference 286/256 rule

# The face region that is pasted back, an ellipse in frame coordinates: centre and semi-axes. It
# covers the forehead to the chin and cheek to cheek of a UTKFace crop (whose landmarks are the
# template) and stays inside a crop that shows the frame's middle 1/1.12; near the crop's edges,
# where the generator pads, its weight is close to 0, so those pixels barely reach the photo.
MASK_CENTRE = (0.5, 0.5)
MASK_AXES = (0.38, 0.42)
# The feather: alpha is 1 inside FEATHER_START of the ellipse's normalised radius and falls to 0 at
# its edge along a smoothstep, whose slope is 0 at both ends (no step in the blend, nor in its
# first derivative, at the mask's border).
FEATHER_START = 0.7


def training_view(preprocess: str = "resize_and_crop", size: int | None = None) -> float:
    """The fraction of a UTKFace crop's side a model trained with `preprocess` saw at stage `size`."""
    if preprocess == "resize_and_crop":
        return RESIZE_AND_CROP_VIEW
    if preprocess == "crop" and size:
        return min(1.0, size / UTKFACE_SIDE)  # stage-size windows of the 200 px crop, not resized
    return 1.0


def frame_to_crop(points: np.ndarray, crop_size: int, view: float) -> np.ndarray:
    """float (..., 2) frame fractions -> crop pixels."""
    return ((np.asarray(points, np.float64) - 0.5) / view + 0.5) * crop_size


def crop_to_frame(points: np.ndarray, crop_size: int, view: float) -> np.ndarray:
    """float (..., 2) crop pixels -> frame fractions."""
    return (np.asarray(points, np.float64) / crop_size - 0.5) * view + 0.5


def template_points(crop_size: int, view: float = RESIZE_AND_CROP_VIEW, names=ALIGN_LANDMARKS) -> np.ndarray:
    """float64 (len(names), 2): where the template puts the named landmarks in a crop, in pixels."""
    return frame_to_crop(np.array([UTKFACE_TEMPLATE[n] for n in names]), crop_size, view)


def similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The weighted least-squares similarity (rotation, uniform scale, translation; no reflection)
    taking src (n, 2) onto dst (n, 2), n >= 2, as a float64 (2, 3) matrix: dst ~ M @ [x, y, 1].
    weights: (n,) >= 0, default all 1."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    src_mean, dst_mean = w @ src, w @ dst
    s, d = src - src_mean, dst - dst_mean
    # Umeyama's closed form in 2-D: the rotation and scale as one complex number a + ib.
    norm = w @ (s**2).sum(1)
    if norm <= 0:
        raise ValueError("similarity() needs at least two distinct source points.")
    a = w @ (s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1]) / norm
    b = w @ (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]) / norm
    rotation = np.array([[a, -b], [b, a]])
    return np.concatenate([rotation, (dst_mean - rotation @ src_mean)[:, None]], axis=1)


def invert(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a (2, 3) affine matrix."""
    linear = np.linalg.inv(matrix[:, :2])
    return np.concatenate([linear, -linear @ matrix[:, 2:]], axis=1)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """float (..., 2) points through a (2, 3) affine matrix."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def alignment_matrix(face: Face, crop_size: int, view: float = RESIZE_AND_CROP_VIEW) -> np.ndarray:
    """float64 (2, 3): photo -> crop, fitting the face's eyes and mouth corners to the template."""
    return similarity(face.points(ALIGN_LANDMARKS), template_points(crop_size, view), ALIGN_WEIGHTS)


# Refinement: the detector's landmarks are least precise on small and tilted faces. A second pass
# looks again at the face warped upright onto a canvas where the frame is REFINE_FRAME pixels
# wide with REFINE_PAD pixels around it: the conditions under which the template was measured
# (template.py), so whatever bias the detector has there cancels.
REFINE_FRAME, REFINE_PAD = 200, 50


def refine(image: np.ndarray, face: Face, detector) -> Face:
    """The face with its landmarks measured again on an upright, template-sized view of it, or the
    face as it is when the second look finds nothing near the centre."""
    canvas_side = REFINE_FRAME + 2 * REFINE_PAD
    targets = np.array([UTKFACE_TEMPLATE[n] for n in ALIGN_LANDMARKS]) * REFINE_FRAME + REFINE_PAD
    to_canvas = similarity(face.points(ALIGN_LANDMARKS), targets, ALIGN_WEIGHTS)
    canvas = warp(image, invert(to_canvas), (canvas_side, canvas_side))
    points = _central_landmarks(detector, canvas)
    if points is None:
        return face
    back = invert(to_canvas)
    landmarks = {n: tuple(float(v) for v in apply(back, p)) for n, p in zip(LANDMARKS, points)}
    return Face(face.box, landmarks, face.confidence)


def _central_landmarks(detector, canvas: np.ndarray) -> np.ndarray | None:
    """float64 (5, 2): the LANDMARKS of the detection nearest the canvas's centre (within a
    quarter of the frame), or None."""
    centre = canvas.shape[0] / 2
    best, best_distance = None, 0.25 * REFINE_FRAME
    for candidate in detector.detect(canvas):
        x0, y0, x1, y1 = candidate.box
        distance = math.hypot((x0 + x1) / 2 - centre, (y0 + y1) / 2 - centre)
        if distance < best_distance:
            best, best_distance = candidate, distance
    return None if best is None else best.points()


def warp(image: np.ndarray, inverse: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resamples `image` onto a (height, width) = size grid: output point p shows input point
    inverse @ [p, 1]. image: uint8 (H, W, 3). Input points outside the image repeat its edge pixels.
    Returns uint8 (height, width, 3)."""
    from PIL import Image

    height, width = size
    corners = apply(inverse, np.array([[0, 0], [width, 0], [0, height], [width, height]], np.float64))
    h, w = image.shape[:2]
    # Only the part of the image the output covers is cut (with 3 px for the bicubic kernel),
    # padded with the edge pixels where it reaches outside the image.
    x0, y0 = np.floor(corners.min(0)).astype(int) - 3
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 3
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx0 >= cx1 or cy0 >= cy1:  # entirely outside: the nearest edge pixels
        cx0, cy0 = min(max(x0, 0), w - 1), min(max(y0, 0), h - 1)
        cx1, cy1 = cx0 + 1, cy0 + 1
    region = image[cy0:cy1, cx0:cx1]
    region = np.pad(region, ((cy0 - y0, y1 - cy1), (cx0 - x0, x1 - cx1), (0, 0)), mode="edge")
    linear, offset = inverse[:, :2].copy(), inverse[:, 2] - np.array([x0, y0], np.float64)
    source = Image.fromarray(np.ascontiguousarray(region))
    shrink = math.sqrt(abs(np.linalg.det(linear)))  # input pixels per output pixel
    if shrink > 1.25:
        target = (max(1, round(source.width / shrink)), max(1, round(source.height / shrink)))
        fx, fy = source.width / target[0], source.height / target[1]
        source = source.resize(target, Image.Resampling.LANCZOS)
        linear, offset = linear / np.array([[fx], [fy]]), offset / np.array([fx, fy])
    coefficients = (*linear[0], offset[0], *linear[1], offset[1])
    out = source.transform((width, height), Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BICUBIC)
    return np.asarray(out)


def align(image: np.ndarray, matrix: np.ndarray, crop_size: int) -> np.ndarray:
    """uint8 (crop_size, crop_size, 3): the photo seen through matrix (photo -> crop)."""
    return warp(image, invert(matrix), (crop_size, crop_size))


def mask_alpha(frame_points: np.ndarray) -> np.ndarray:
    """float32 (...): the blend weight in [0, 1] at frame points (..., 2): 1 on the face, 0 outside
    the ellipse, a smoothstep between."""
    p = np.asarray(frame_points, np.float64)
    r = np.hypot((p[..., 0] - MASK_CENTRE[0]) / MASK_AXES[0], (p[..., 1] - MASK_CENTRE[1]) / MASK_AXES[1])
    t = np.clip((1.0 - r) / (1.0 - FEATHER_START), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def crop_mask(crop_size: int, view: float = RESIZE_AND_CROP_VIEW) -> np.ndarray:
    """float32 (crop_size, crop_size): the blend weight over a crop's pixels (for pictures)."""
    centres = np.stack(np.meshgrid(np.arange(crop_size) + 0.5, np.arange(crop_size) + 0.5), -1)
    return mask_alpha(crop_to_frame(centres, crop_size, view))


def mask_box(matrix: np.ndarray, crop_size: int, view: float, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1): the photo pixels the mask may touch, inside an image of `shape` (H, W),
    or None when none is."""
    # The ellipse's bounding box, in the frame, then its corners through crop -> photo.
    cx, cy = MASK_CENTRE
    ax, ay = MASK_AXES
    corners = np.array([[cx - ax, cy - ay], [cx + ax, cy - ay], [cx - ax, cy + ay], [cx + ax, cy + ay]])
    photo = apply(invert(matrix), frame_to_crop(corners, crop_size, view))
    x0, y0 = np.floor(photo.min(0)).astype(int) - 1
    x1, y1 = np.ceil(photo.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(int(x0), 0), max(int(y0), 0), min(int(x1), shape[1]), min(int(y1), shape[0])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def paste(photo: np.ndarray, crop: np.ndarray, matrix: np.ndarray, view: float = RESIZE_AND_CROP_VIEW):
    """Blends a translated crop back into the photo, in place.

    photo: uint8 (H, W, 3), changed in place; crop: uint8 (S, S, 3), the translation of
    align(photo, matrix, S); matrix: photo -> crop. Only pixels where the mask's weight is above 0
    change: out = round((1 - a) * photo + a * warped crop). Returns (box, alpha): the photo region
    (x0, y0, x1, y1) the mask touches and float32 alpha over it, or (None, None) when it touches none.
    """
    crop_size = crop.shape[0]
    box = mask_box(matrix, crop_size, view, photo.shape[:2])
    if box is None:
        return None, None
    x0, y0, x1, y1 = box
    centres = np.stack(np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5), -1)
    alpha = mask_alpha(crop_to_frame(apply(matrix, centres), crop_size, view))
    # Region pixel p is photo pixel p + (x0, y0); the warp's inverse maps it into the crop.
    to_crop = matrix.copy()
    to_crop[:, 2] = matrix[:, :2] @ np.array([x0, y0], np.float64) + matrix[:, 2]
    translated = warp(crop, to_crop, (y1 - y0, x1 - x0)).astype(np.float32)
    region = photo[y0:y1, x0:x1]
    a = alpha[..., None]
    blended = np.clip(np.round(region * (1.0 - a) + translated * a), 0, 255).astype(np.uint8)
    photo[y0:y1, x0:x1] = np.where(a > 0, blended, region)  # bit for bit outside the mask
    return box, alpha
