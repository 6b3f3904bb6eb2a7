"""Where the landmarks sit in a UTKFace crop: the template the aligned crops are fitted to.

UTKFACE_TEMPLATE holds the median position of each of the detector's five landmarks over the
UTKFace sample's 200x200 "aligned and cropped" faces, as fractions of the crop's side (x, y):
0 is the crop's left or top edge, 1 its right or bottom edge. It was measured with this module:

    python -m tfcyclegan.faces.template /work/shared/data/utkface_sample

(every crop is placed on a grey 300x300 canvas, so that faces touching the crop's edges are
found as well, and the detection nearest the centre is kept). The command prints the constants
below, the spread of each landmark and how many crops had a face; docs/faces.md holds its output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from tfcyclegan.faces.detect import LANDMARKS, Detector

UTKFACE_SIDE = 200  # the side of every UTKFace crop, in pixels

# Measured by the command above on the 2,986 crops of the UTKFace sample (a face in 2,971); the
# spread of each coordinate (its standard deviation over the crops) is 0.015-0.019 for the eyes
# and 0.025-0.035 for the nose and mouth corners (docs/faces.md).
UTKFACE_TEMPLATE = {
    "left_eye": (0.3008, 0.2926),
    "right_eye": (0.6868, 0.2935),
    "nose": (0.4911, 0.5194),
    "mouth_left": (0.3173, 0.6879),
    "mouth_right": (0.6673, 0.6894),
}

# The landmarks the alignment fits: the eyes and the mouth's corners. The nose moves with the
# head's yaw and pitch more than the others, so it is left out.
ALIGN_LANDMARKS = ("left_eye", "right_eye", "mouth_left", "mouth_right")

_PAD = 50  # grey border around each crop while measuring


def measure(folder: str, *, limit: int | None = None, detector: Detector | None = None) -> dict:
    """The landmarks of the crops in `folder` (*.jpg), as fractions of their side.

    Returns {"template": {name: (x, y)} (medians), "spread": {name: (sd_x, sd_y)}, "crops": n,
    "found": n_with_a_face}.
    """
    from PIL import Image

    detector = detector or Detector()
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(".jpg"))[:limit]
    points = []
    for name in names:
        with Image.open(os.path.join(folder, name)) as image:
            crop = np.asarray(image.convert("RGB"))
        h, w = crop.shape[:2]
        canvas = np.full((h + 2 * _PAD, w + 2 * _PAD, 3), 128, np.uint8)
        canvas[_PAD:_PAD + h, _PAD:_PAD + w] = crop
        faces = detector.detect(canvas)
        if not faces:
            continue
        centre = np.array([_PAD + w / 2, _PAD + h / 2])
        face = min(faces, key=lambda f: np.hypot(*(np.array(f.box[:2]) + np.array(f.box[2:]) - 2 * centre)))
        points.append((face.points() - _PAD) / np.array([w, h]))
    if not points:
        raise ValueError(f"No face found in the crops of {folder}.")
    points = np.stack(points)  # (n, 5, 2)
    median, spread = np.median(points, axis=0), points.std(axis=0)
    return {
        "template": {n: tuple(round(float(v), 4) for v in median[i]) for i, n in enumerate(LANDMARKS)},
        "spread": {n: tuple(round(float(v), 4) for v in spread[i]) for i, n in enumerate(LANDMARKS)},
        "crops": len(names),
        "found": len(points),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Measures the UTKFace landmark template on a folder of crops.")
    parser.add_argument("folder", help="a folder of UTKFace 200x200 crops (*.jpg)")
    parser.add_argument("--limit", type=int, default=None, help="measure the first N crops only")
    args = parser.parse_args(argv)
    result = measure(args.folder, limit=args.limit)
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
