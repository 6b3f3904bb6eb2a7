"""Faces mode: the adapter against the face pipeline's contract, and the real pipeline where it exists.

The contract (tfcyclegan.faces): translate_faces(image, translate, *, crop_size, min_face=40,
max_faces=10, detector=None) -> FacesResult(image, faces=[FaceResult(box, ...)], skipped);
NoFaceError (an ImageError) when no face is found; get_detector() builds the detector once.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import sys
import types

import numpy as np
import pytest
from serve.helpers import decode, photo, png_bytes
from fastapi.testclient import TestClient

from tfcyclegan.io import ImageError
from tfcyclegan.serve import UNAVAILABLE, Limits, create_app, start_face_mode


def _fake_pipeline(calls: list) -> types.ModuleType:
    """A stand-in for tfcyclegan.faces that follows the contract: one face, the left half of the image."""

    class NoFaceError(ImageError):
        pass

    @dataclasses.dataclass
    class FaceResult:
        box: tuple
        landmarks: np.ndarray
        before: np.ndarray
        after: np.ndarray

    @dataclasses.dataclass
    class FacesResult:
        image: np.ndarray
        faces: list
        skipped: dict

    def translate_faces(image, translate, *, crop_size, min_face=40, max_faces=10, detector=None):
        calls.append({"crop_size": crop_size, "detector": detector})
        if image.std() == 0:
            raise NoFaceError("no face found in the image")
        crop = image[:crop_size, :crop_size].astype(np.float32)[None] / 127.5 - 1
        after = np.clip(np.round((translate(crop)[0] + 1) * 127.5), 0, 255).astype(np.uint8)
        out = image.copy()
        out[:crop_size, :crop_size] = after
        return FacesResult(out, [FaceResult((0, 0, crop_size, crop_size), np.zeros((5, 2)), crop, after)], {"small": 1})

    module = types.ModuleType("tfcyclegan.faces")
    module.translate_faces, module.NoFaceError = translate_faces, NoFaceError
    module.get_detector = lambda: "the detector"
    return module


def test_without_the_pipeline_faces_mode_is_reported_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "tfcyclegan.faces", types.ModuleType("tfcyclegan.faces"))  # the package, empty
    mode = start_face_mode()
    assert (mode.available, mode.reason) == (False, UNAVAILABLE)


def test_faces_mode_calls_the_pipeline_as_its_contract_says(monkeypatch, registry):
    calls = []
    monkeypatch.setitem(sys.modules, "tfcyclegan.faces", _fake_pipeline(calls))
    app = create_app(registry, Limits(max_side=128))
    image = photo(64, 80, seed=5)
    with TestClient(app) as client:
        assert client.get("/v1/models").json()["faces"] == {"available": True, "reason": None}
        response = client.post("/v1/translate", files={"image": ("me.png", png_bytes(image), "image/png")},
                               data={"model": "age_a2b", "chain": "gender_a2b", "faces": "on", "format": "json"})
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["faces"] == {"count": 1, "faces": [{"box": [0.0, 0.0, 48.0, 48.0]}], "skipped": {"small": 1}}
        out = decode(base64.b64decode(result["image"]))
        # The crop went through the chain (age, then gender); the rest of the photo is untouched.
        steps = [m.translator for m in registry.resolve("age_a2b", ["gender_a2b"])]
        crop = image[:48, :48].astype(np.float32)[None] / 127.5 - 1
        for step in steps:
            crop = np.clip(step(crop), -1, 1)
        np.testing.assert_array_equal(out[:48, :48], np.clip(np.round((crop[0] + 1) * 127.5), 0, 255).astype(np.uint8))
        np.testing.assert_array_equal(out[48:], image[48:])
        # crop_size is the first model's training size; the detector is the one built at start.
        assert calls == [{"crop_size": 48, "detector": "the detector"}]

        flat = client.post("/v1/translate", files={"image": ("wall.png", png_bytes(np.full((64, 64, 3), 90, np.uint8)),
                                                             "image/png")}, data={"faces": "on"})
        assert flat.status_code == 422
        assert "no face found in the image (turn faces mode off" in flat.json()["error"]
        whole = client.post("/v1/translate", files={"image": ("me.png", png_bytes(image), "image/png")})
        assert whole.status_code == 200 and "x-faces" not in whole.headers  # faces mode is off unless asked


def _real_pipeline():
    try:
        faces = importlib.import_module("tfcyclegan.faces")
    except ImportError:
        return None
    return faces if hasattr(faces, "translate_faces") else None


@pytest.mark.skipif(_real_pipeline() is None, reason="tfcyclegan.faces.translate_faces is absent: the face pipeline "
                    "(branch faces) is not merged into this tree yet")
def test_faces_mode_with_the_real_pipeline_on_a_utkface_photo(registry, utkface_sample):
    photo_path = sorted(utkface_sample.glob("*.jpg"))[0]
    app = create_app(registry, Limits(max_side=512))
    with TestClient(app) as client:
        assert client.get("/v1/models").json()["faces"]["available"] is True
        response = client.post("/v1/translate", files={"image": (photo_path.name, photo_path.read_bytes(), "image/jpeg")},
                               data={"faces": "on"})
        assert response.status_code == 200, response.text
        assert int(response.headers["x-faces"]) >= 1
        out = decode(response.content)
        from tfcyclegan.io import read_image

        original = read_image(str(photo_path))
        assert out.shape == original.shape
        assert np.abs(out.astype(int) - original.astype(int)).mean() > 0.5
        flat = client.post("/v1/translate", files={"image": ("wall.png", png_bytes(np.full((96, 96, 3), 90, np.uint8)),
                                                             "image/png")}, data={"faces": "on"})
        assert flat.status_code == 422 and "turn faces mode off" in flat.json()["error"]
