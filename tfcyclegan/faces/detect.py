"""Finding faces: MTCNN (the `mtcnn` wheel, weights inside it, no download), boxes and five landmarks.

Coordinates everywhere in tfcyclegan.faces are continuous pixel coordinates: pixel (i, j) of an
image covers [j, j + 1) x [i, i + 1), so its centre is (j + 0.5, i + 0.5) in (x, y). PIL's
transforms use the same convention.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping

import numpy as np

LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# "left" and "right" as the detector names them: left_eye is the eye on the image's left (the
# person's right eye in a photo of a person facing the camera).

# The detector's smallest face. MTCNN's pyramid starts at 12 / min_face_size and shrinks by 0.709
# for a number of levels that depends on the image only; above ~20 px its last levels fall under
# PNet's 12 px input and the mtcnn package then returns no face at all for the whole image. We keep
# its default and apply the caller's minimum to what it finds (so small faces can be counted).
DETECTOR_MIN_FACE = 20


@dataclasses.dataclass(frozen=True)
class Face:
    """One detection. box: (x0, y0, x1, y1) as the detector regressed it, not clipped to the image
    (a face cut by the border reaches outside); landmarks: {name: (x, y)} for LANDMARKS;
    confidence in [0, 1]."""

    box: tuple[float, float, float, float]
    landmarks: Mapping[str, tuple[float, float]]
    confidence: float

    @property
    def size(self) -> float:
        """The longer side of the box, in pixels (what --min_face compares with)."""
        x0, y0, x1, y1 = self.box
        return float(max(x1 - x0, y1 - y0))

    def points(self, names=LANDMARKS) -> np.ndarray:
        """float64 (len(names), 2): the named landmarks as (x, y) rows."""
        return np.array([self.landmarks[n] for n in names], np.float64)


class Detector:
    """MTCNN from the `mtcnn` package (P-, R- and O-Net, weights inside the wheel), on the CPU.

    detect(image): image uint8 (H, W, 3) RGB -> [Face], most confident first.
    """

    def __init__(self, *, min_face: int = DETECTOR_MIN_FACE, device: str = "CPU:0"):
        from mtcnn import MTCNN

        self._mtcnn = MTCNN(device=device)
        self.min_face = min_face

    def detect(self, image: np.ndarray) -> list[Face]:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"detect() needs a uint8 (H, W, 3) RGB image. Received: {image.dtype} {image.shape}")
        if min(image.shape[:2]) < 12:  # smaller than PNet's window: nothing can be found
            return []
        # numpy output keeps the landmarks' fractions (the JSON form rounds them to integers), and
        # fit_to_image=False keeps boxes that reach past the border as they are: that is how a face
        # cut by the border is recognised.
        rows = self._mtcnn.detect_faces(
            image, fit_to_image=False, box_format="xyxy", output_type="numpy", min_face_size=self.min_face,
        )
        rows = np.asarray(rows, np.float64).reshape(-1, 16)
        faces = []
        for row in rows:
            # Columns: image index, x0, y0, x1, y1, confidence, then the five x, then the five y.
            # The detector works in pixel indices (pixel i centred on i); +0.5 makes them continuous.
            xs, ys = row[6:11] + 0.5, row[11:16] + 0.5
            landmarks = {name: (float(x), float(y)) for name, x, y in zip(LANDMARKS, xs, ys)}
            box = tuple(float(v) for v in row[1:5])
            faces.append(Face(box, landmarks, float(row[5])))
        faces.sort(key=lambda f: -f.confidence)
        return faces

    __call__ = detect


@functools.lru_cache(maxsize=1)
def get_detector() -> Detector:
    """The detector, built once per process (building it loads three networks)."""
    return Detector()
