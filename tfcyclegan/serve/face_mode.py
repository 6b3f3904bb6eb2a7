"""Faces mode: the face pipeline (tfcyclegan.faces) behind the web app, in one adapter.

The pipeline finds each face, aligns it like the training crops, translates the crop and pastes
it back. Installations without it still serve whole images: faces mode then answers 501 and
GET /v1/models reports it unavailable, with the reason.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from tfcyclegan.io import ImageError

UNAVAILABLE = "faces mode needs the face pipeline (tfcyclegan.faces.translate_faces), which this installation does not have"


class FacesUnavailableError(RuntimeError):
    """Faces mode was asked for, and this installation has no face pipeline (or it failed to start)."""


@dataclasses.dataclass(frozen=True)
class FaceMode:
    """available: whether requests may ask for faces mode; reason: why not, in words."""

    available: bool
    reason: str | None = None
    detector: object = None

    def describe(self) -> dict:
        return {"available": self.available, "reason": self.reason}


def start_face_mode() -> FaceMode:
    """Imports the face pipeline and builds its detector once (at server start, not per request)."""
    try:
        from tfcyclegan.faces import get_detector, translate_faces  # noqa: F401 -- their presence is the check
    except ImportError:
        return FaceMode(False, UNAVAILABLE)
    try:
        detector = get_detector()
    except Exception as e:  # the detector is optional: whole-image mode still works without it
        return FaceMode(False, f"faces mode is unavailable: the face detector failed to start ({e})")
    return FaceMode(True, None, detector)


def translate_faces_in(
    image: np.ndarray, steps: Sequence[Callable[[np.ndarray], np.ndarray]], *, crop_size: int, mode: FaceMode
) -> tuple[np.ndarray, dict]:
    """image: uint8 (H, W, 3) -> (uint8 (H, W, 3) with each face translated, what was done).

    steps: each float32 (1, S, S, 3) in [-1, 1] -> the same; the chain is their composition.
    crop_size: S, the first model's training size. Raises FacesUnavailableError, or ImageError
    (the pipeline's NoFaceError is one) when no face is found.
    """
    if not mode.available:
        raise FacesUnavailableError(mode.reason or UNAVAILABLE)
    try:
        from tfcyclegan.faces import NoFaceError, translate_faces
    except ImportError as e:
        raise FacesUnavailableError(UNAVAILABLE) from e

    def translate(crops: np.ndarray) -> np.ndarray:
        for step in steps:
            crops = np.clip(step(crops), -1.0, 1.0)
        return crops

    try:
        result = translate_faces(image, translate, crop_size=crop_size, detector=mode.detector)
    except NoFaceError as e:
        raise ImageError(f"{e} (turn faces mode off to translate the whole image)") from None
    faces = [{"box": _numbers(face.box)} for face in result.faces]
    return np.asarray(result.image, np.uint8), {"count": len(faces), "faces": faces, "skipped": dict(result.skipped or {})}


def _numbers(box) -> list | str:
    """A face's box as a JSON list of numbers (whatever sequence the pipeline gives), else its text."""
    try:
        return np.asarray(box, dtype=np.float64).round(1).tolist()
    except (TypeError, ValueError):
        return str(box)
