"""A photo in, the same photo out with every face translated: detect, align, translate, paste back.

translate_faces() is what `tfcyclegan-translate --faces` and the web app call; face_panel() and
debug_picture() are the pictures beside it.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from tfcyclegan.faces.align import RESIZE_AND_CROP_VIEW, align, alignment_matrix, apply, invert, paste, refine, warp
from tfcyclegan.faces.detect import Face, get_detector
from tfcyclegan.faces.template import ALIGN_LANDMARKS
from tfcyclegan.io import ImageError, to_uint8

# Why a face the detector found is left as it is; FacesResult.skipped counts each.
SKIP_REASONS = ("too_small", "cut_by_border", "profile", "over_max")
_REASON_WORDS = {
    "too_small": "smaller than the minimum face size",
    "cut_by_border": "cut by the image border",
    "profile": "seen from the side (profile)",
    "over_max": "beyond the maximum number of faces",
}
# A face is cut by the border when an eye or a mouth corner lies outside the image, or when more
# than this fraction of its box does (the crop would then be mostly made-up edge pixels).
CUT_FRACTION = 0.25
# A face is in profile when its nose, projected on the line between the eyes, falls outside the
# middle of that segment: frontal and three-quarter faces keep it between the eyes. The generator
# never saw a profile (UTKFace crops are frontal), and a fit of four points of which two are hidden
# turns the crop at random.
PROFILE_NOSE_RANGE = (0.1, 0.9)
# When nothing usable is found upright, the photo is searched again turned by these angles.
RETRY_ROTATIONS = (40.0, -40.0)
MIN_CROP = 8  # the generator's smallest side (tfcyclegan.model.networks.MIN_SIDE)


class NoFaceError(ImageError):
    """No usable face in a photo; the message says how many faces were seen and why each was skipped.

    skipped: {reason: count}; rejected: [(box, reason)] for each face seen (as in FacesResult).
    """

    def __init__(self, message: str, *, skipped: dict[str, int] | None = None, rejected=()):
        super().__init__(message)
        self.skipped = dict(skipped or {})
        self.rejected = list(rejected)


@dataclasses.dataclass
class FaceResult:
    """One translated face.

    box: (x0, y0, x1, y1) the detector's box in the photo (it may reach past the border);
    landmarks: {name: (x, y)} in the photo; before, after: uint8 (crop_size, crop_size, 3), the
    aligned crop and its translation; confidence: the detector's, in [0, 1]; matrix: float64 (2, 3),
    photo -> crop coordinates; paste_box: (x0, y0, x1, y1) the photo pixels the blend may change,
    and alpha: float32 (y1 - y0, x1 - x0) in [0, 1], the weight of the translated face there
    (pixels where it is 0 are the photo's, bit for bit).
    """

    box: tuple[float, float, float, float]
    landmarks: dict
    before: np.ndarray
    after: np.ndarray
    confidence: float = 1.0
    matrix: np.ndarray | None = None
    paste_box: tuple[int, int, int, int] | None = None
    alpha: np.ndarray | None = None


@dataclasses.dataclass
class FacesResult:
    """image: uint8 (H, W, 3), the photo with every translated face blended in; faces: the
    translated faces, largest first; skipped: {reason: count} for SKIP_REASONS; rejected:
    [(box, reason)] for each skipped face (for pictures)."""

    image: np.ndarray
    faces: list[FaceResult]
    skipped: dict[str, int]
    rejected: list[tuple[tuple[float, float, float, float], str]] = dataclasses.field(default_factory=list)

    @property
    def seen(self) -> int:
        """How many faces the detector found."""
        return len(self.faces) + sum(self.skipped.values())


def _fraction_outside(box, shape) -> float:
    x0, y0, x1, y1 = box
    area = max(x1 - x0, 1e-6) * max(y1 - y0, 1e-6)
    inside = max(0.0, min(x1, shape[1]) - max(x0, 0.0)) * max(0.0, min(y1, shape[0]) - max(y0, 0.0))
    return 1.0 - inside / area


def _nose_position(face: Face) -> float:
    """Where the nose projects on the eye line: 0 at the left eye, 1 at the right eye."""
    left, right, nose = (np.asarray(face.landmarks[n]) for n in ("left_eye", "right_eye", "nose"))
    axis = right - left
    return float((nose - left) @ axis / max(axis @ axis, 1e-9))


def skip_reason(face: Face, shape: tuple[int, ...], min_face: int, *, profile: bool = True) -> str | None:
    """Why `face` is not translated in an image of `shape` (H, W, ...), or None when it is usable.
    profile=False: the size and the border only."""
    if face.size < min_face:
        return "too_small"
    points = face.points(ALIGN_LANDMARKS)
    outside = (points[:, 0] < 0) | (points[:, 0] > shape[1]) | (points[:, 1] < 0) | (points[:, 1] > shape[0])
    if outside.any() or _fraction_outside(face.box, shape) > CUT_FRACTION:
        return "cut_by_border"
    low, high = PROFILE_NOSE_RANGE
    if profile and not low <= _nose_position(face) <= high:
        return "profile"
    return None


def describe_skipped(skipped: dict[str, int], *, min_face: int) -> str:
    """'1 smaller than the minimum face size (40 px), 2 cut by the image border': each reason with
    a count above 0, in SKIP_REASONS order ("" when none)."""
    reasons = []
    for reason in SKIP_REASONS:
        if skipped.get(reason):
            words = _REASON_WORDS[reason] + (f" ({min_face} px)" if reason == "too_small" else "")
            reasons.append(f"{skipped[reason]} {words}")
    return ", ".join(reasons)


def no_face_message(skipped: dict[str, int], *, min_face: int) -> str:
    """Words for a photo without a usable face: how many were seen and why each was skipped."""
    seen = sum(skipped.values())
    if not seen:
        return "no face found"
    return f"no usable face: {seen} face{'s' if seen != 1 else ''} seen, " + describe_skipped(skipped, min_face=min_face)


def _sort_out(image, faces, detector, min_face, max_faces, refine_landmarks):
    """(skipped, rejected, usable): the faces to translate, the largest first, with their
    landmarks refined; why each other one is left as it is. Profiles are judged on the refined
    landmarks (the first look places them worst on tilted faces)."""
    skipped = {reason: 0 for reason in SKIP_REASONS}
    rejected, candidates, usable = [], [], []
    for face in faces:
        reason = skip_reason(face, image.shape, min_face, profile=False)
        if reason:
            skipped[reason] += 1
            rejected.append((face.box, reason))
        else:
            candidates.append(face)
    candidates.sort(key=lambda f: -f.size)
    for face in candidates:
        if len(usable) == max_faces:
            skipped["over_max"] += 1
            rejected.append((face.box, "over_max"))
            continue
        if refine_landmarks:
            face = refine(image, face, detector)
        if skip_reason(face, image.shape, min_face) == "profile":
            skipped["profile"] += 1
            rejected.append((face.box, "profile"))
        else:
            usable.append(face)
    return skipped, rejected, usable


def detect_turned(detector, image: np.ndarray, angle: float) -> list[Face]:
    """The faces found in the photo turned by `angle` degrees (counter-clockwise as seen), in the
    photo's coordinates. Boxes keep their width and height around their turned-back centre, so a
    face's size does not grow with the angle."""
    h, w = image.shape[:2]
    theta = np.radians(-angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    corners = (np.array([[0, 0], [w, 0], [0, h], [w, h]]) - [w / 2, h / 2]) @ rotation.T
    side = np.ceil(corners.max(0) - corners.min(0)).astype(int)
    to_turned = np.concatenate([rotation, (side / 2 - rotation @ [w / 2, h / 2])[:, None]], axis=1)
    turned = warp(image, invert(to_turned), (int(side[1]), int(side[0])))
    back = invert(to_turned)
    faces = []
    for face in detector.detect(turned):
        x0, y0, x1, y1 = face.box
        cx, cy = apply(back, np.array([(x0 + x1) / 2, (y0 + y1) / 2]))
        box = (float(cx - (x1 - x0) / 2), float(cy - (y1 - y0) / 2), float(cx + (x1 - x0) / 2), float(cy + (y1 - y0) / 2))
        landmarks = {n: tuple(float(v) for v in apply(back, np.array(p))) for n, p in face.landmarks.items()}
        faces.append(Face(box, landmarks, face.confidence))
    return faces


def translate_faces(
    image: np.ndarray,
    translate: Callable[[np.ndarray], np.ndarray],
    *,
    crop_size: int,
    min_face: int = 40,
    max_faces: int = 10,
    detector=None,
    view: float = RESIZE_AND_CROP_VIEW,
    refine_landmarks: bool = True,
    rotations: Sequence[float] = RETRY_ROTATIONS,
) -> FacesResult:
    """Translates every face of a photo and blends it back; the rest of the photo stays as it is.

    image: uint8 (H, W, 3) RGB. translate: float32 (1, crop_size, crop_size, 3) in [-1, 1] -> the
    same (a chain is the composition of its steps); it is called once per translated face, in the
    order of the result's faces. crop_size: the model's training size (the last stage's). min_face:
    faces whose box is smaller (its longer side, in pixels) are skipped; max_faces: at most this
    many faces, the largest, are translated. detector: anything with detect(image) -> [Face]
    (default: get_detector()). view: the part of a UTKFace crop the model saw in training
    (tfcyclegan.faces.align.training_view). refine_landmarks: look at each face a second time,
    upright and at the template's scale, for steadier landmarks (one more detector pass per face).
    rotations: when no face is usable, the photo is searched again turned by each of these angles
    (degrees) in turn, for faces tilted further than the detector takes; () never.

    Each face: its eyes and mouth corners are fitted to the UTKFace template by a similarity
    transform, the aligned crop is translated, and the result is warped back and blended with a
    feathered elliptic mask. Faces are translated from the original photo, largest first, and
    blended one after the other. Raises NoFaceError when no face is usable, ValueError for
    arguments out of range or a translate that returns another shape.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"translate_faces needs a uint8 (H, W, 3) RGB image. Received: {image.dtype} {image.shape}")
    if not isinstance(crop_size, (int, np.integer)) or crop_size < MIN_CROP:
        raise ValueError(f"crop_size must be an integer >= {MIN_CROP}. Received: {crop_size!r}")
    if min_face < 1 or max_faces < 1:
        raise ValueError(f"min_face and max_faces must be >= 1. Received: min_face={min_face}, max_faces={max_faces}")
    detector = detector if detector is not None else get_detector()
    faces = detector.detect(image)
    skipped, rejected, usable = _sort_out(image, faces, detector, min_face, max_faces, refine_landmarks)
    if not usable and rotations:
        # Nothing usable upright: look again at the photo turned, for faces tilted further than the
        # detector takes (it was trained on faces within about 30 degrees of upright).
        # What the upright look saw is reported unless a turned look finds a usable face.
        for angle in rotations:
            turned = detect_turned(detector, image, angle)
            if turned:
                found = _sort_out(image, turned, detector, min_face, max_faces, refine_landmarks)
                if found[2]:
                    skipped, rejected, usable = found
                    break
    if not usable:
        raise NoFaceError(no_face_message(skipped, min_face=min_face), skipped=skipped, rejected=rejected)

    out = image.copy()
    results = []
    for face in usable:
        matrix = alignment_matrix(face, int(crop_size), view)
        before = align(image, matrix, int(crop_size))
        translated = np.asarray(translate(before.astype(np.float32)[None] / 127.5 - 1.0))
        if translated.shape != (1, crop_size, crop_size, 3):
            raise ValueError(f"translate returned shape {translated.shape} for a (1, {crop_size}, {crop_size}, 3) crop.")
        after = to_uint8(np.clip(translated[0], -1.0, 1.0))
        box, alpha = paste(out, after, matrix, view)
        results.append(FaceResult(face.box, dict(face.landmarks), before, after, face.confidence, matrix, box, alpha))
    return FacesResult(out, results, skipped, rejected)


def face_panel(faces: Sequence[FaceResult], *, labels: Sequence[str] = ("face", "translated"), height: int = 128,
               steps: Sequence[Sequence[np.ndarray]] | None = None) -> np.ndarray:
    """uint8 panel: one row per face, its aligned crop then its translation (or each of `steps[i]`,
    the crops after each step of a chain), scaled to `height` pixels, under a header of labels."""
    from tfcyclegan.pictures import rows_panel

    rows = [[f.before, *(steps[i] if steps is not None else [f.after])] for i, f in enumerate(faces)]
    return rows_panel(rows, list(labels), height=height)


def debug_picture(image: np.ndarray, result: FacesResult | None, rejected=()) -> np.ndarray:
    """uint8 (H, W, 3): the photo with each translated face's box (green), landmarks (red) and
    pasted region (blue), and each skipped face's box (orange) labelled with the reason."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.asarray(image))
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(max(canvas.size) / 400))
    faces = result.faces if result is not None else []
    for face in faces:
        draw.rectangle(face.box, outline=(0, 220, 0), width=width)
        if face.paste_box:
            draw.rectangle(face.paste_box, outline=(60, 120, 255), width=1)
        for x, y in face.landmarks.values():
            draw.ellipse((x - 2 * width, y - 2 * width, x + 2 * width, y + 2 * width), fill=(255, 0, 0))
    for box, reason in [*(result.rejected if result is not None else []), *rejected]:
        draw.rectangle(box, outline=(255, 150, 0), width=width)
        draw.text((box[0], box[3] + 2), reason, fill=(255, 150, 0))
    return np.asarray(canvas)
