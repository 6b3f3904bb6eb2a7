"""Real photos in: find the faces, align them like the training crops, translate, paste back.

    from tfcyclegan.faces import translate_faces
    result = translate_faces(photo, translator, crop_size=64)   # photo: uint8 (H, W, 3) RGB
    result.image                                               # the photo, every face translated

Modules, each importing only those above it: detect (MTCNN, weights inside the `mtcnn` wheel),
template (the UTKFace landmark template and the command that measured it), align (similarity
fit, warps, the feathered mask, paste back), photos (translate_faces, the pictures).
docs/faces.md says how it works and what it measured.
"""

from tfcyclegan.faces.align import RESIZE_AND_CROP_VIEW, training_view
from tfcyclegan.faces.detect import LANDMARKS, Detector, Face, get_detector
from tfcyclegan.faces.photos import (
    SKIP_REASONS, FaceResult, FacesResult, NoFaceError, debug_picture, face_panel, translate_faces,
)
from tfcyclegan.faces.template import UTKFACE_TEMPLATE

__all__ = [
    "LANDMARKS", "RESIZE_AND_CROP_VIEW", "SKIP_REASONS", "UTKFACE_TEMPLATE", "Detector", "Face", "FaceResult",
    "FacesResult", "NoFaceError", "debug_picture", "face_panel", "get_detector", "training_view", "translate_faces",
]
