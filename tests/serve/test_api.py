"""The HTTP API in-process (FastAPI's test client): what /v1/translate, /v1/models and /healthz answer."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest
from serve.helpers import decode, jpeg_bytes, photo, png_bytes
from fastapi.testclient import TestClient

from tfcyclegan.io import read_image
from tfcyclegan.serve import UNAVAILABLE, FaceMode, Limits, create_app
from tfcyclegan.translate.files import translate_image

STATIC = Path(__file__).resolve().parents[2] / "tfcyclegan" / "serve" / "static"


@pytest.fixture(scope="module")
def client(registry):
    app = create_app(registry, Limits(max_upload_bytes=2 * 2**20, max_side=128, max_pixels=4_000_000),
                     face_mode=FaceMode(False, UNAVAILABLE))
    with TestClient(app) as c:
        yield c


def _expected(registry, image: np.ndarray, *names: str) -> np.ndarray:
    """What tfcyclegan-translate computes for the same image and chain."""
    return translate_image(image, [m.translator for m in registry.resolve(names[0], names[1:])])[-1]


def test_models_lists_task_direction_domains_step_and_sizes(client):
    info = client.get("/v1/models").json()
    models = {m["name"]: m for m in info["models"]}
    assert list(models) == ["age_a2b", "age_b2a", "gender_a2b"]
    age = models["age_b2a"]
    assert (age["kind"], age["task"], age["direction"], age["group"]) == ("saved_model", "age", "b2a", "age")
    assert age["domains"] == {"a": "age 20-29", "b": "age 50-59"}
    assert (age["from_domain"], age["to_domain"]) == ("age 50-59", "age 20-29")
    assert (age["global_step"], age["version"], age["export_size"], age["max_side"]) == (120, 1, 48, 2048)
    gender = models["gender_a2b"]  # a workdir: the same keys from its config and checkpoint
    assert (gender["kind"], gender["task"], gender["direction"], gender["global_step"]) == ("workdir", "gender", "a2b", 70)
    assert (gender["from_domain"], gender["to_domain"], gender["export_size"]) == ("male", "female", 48)
    assert info["faces"] == {"available": False, "reason": UNAVAILABLE}
    assert info["limits"] == {"max_upload_bytes": 2 * 2**20, "max_side": 128, "max_pixels": 4_000_000,
                              "workers": 1, "queue": 8, "upload_seconds": 60}


def test_healthz(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["models"] == 3
    assert health["rss_mb"] > 0 and health["peak_rss_mb"] >= health["rss_mb"]


def test_multipart_upload_returns_the_png_tfcyclegan_translate_computes(client, registry):
    image = photo(42, 58)  # sides that are not multiples of 4
    response = client.post("/v1/translate", files={"image": ("me.png", png_bytes(image), "image/png")},
                           data={"model": "age_b2a"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-models"] == "age_b2a"
    assert response.headers["x-input-size"] == response.headers["x-output-size"] == "58x42"
    out = decode(response.content)
    assert out.shape == image.shape
    np.testing.assert_array_equal(out, _expected(registry, image, "age_b2a"))
    assert np.abs(out.astype(int) - image.astype(int)).mean() > 5  # it did translate


def test_the_first_model_is_the_default(client, registry):
    image = photo(32, 32, seed=1)
    response = client.post("/v1/translate", files={"image": ("me.png", png_bytes(image), "image/png")})
    assert response.headers["x-models"] == "age_a2b"
    np.testing.assert_array_equal(decode(response.content), _expected(registry, image, "age_a2b"))


def test_a_chain_runs_each_model_in_turn(client, registry):
    image = photo(40, 40, seed=2)
    response = client.post("/v1/translate", files={"image": ("me.png", png_bytes(image), "image/png")},
                           data={"model": "age_a2b", "chain": "gender_a2b"})
    assert response.status_code == 200 and response.headers["x-models"] == "age_a2b,gender_a2b"
    chained = decode(response.content)
    np.testing.assert_array_equal(chained, _expected(registry, image, "age_a2b", "gender_a2b"))
    assert not np.array_equal(chained, _expected(registry, image, "age_a2b"))


def test_json_in_json_out(client, registry):
    image = photo(36, 28, seed=3)
    body = {"image": base64.b64encode(png_bytes(image)).decode(), "model": "age_a2b", "chain": ["gender_a2b"]}
    response = client.post("/v1/translate", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["width"], result["height"], result["models"]) == (28, 36, ["age_a2b", "gender_a2b"])
    assert result["input"] == {"width": 28, "height": 36, "resized": False} and result["faces"] is None
    np.testing.assert_array_equal(decode(base64.b64decode(result["image"])),
                                  _expected(registry, image, "age_a2b", "gender_a2b"))


def test_json_takes_a_data_url_and_format_png(client):
    data_url = "data:image/png;base64," + base64.b64encode(png_bytes(photo(20, 20))).decode()
    response = client.post("/v1/translate", json={"image": data_url, "format": "png"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"


def test_raw_image_bytes_with_options_in_the_query(client):
    response = client.post("/v1/translate?model=gender_a2b&format=json", content=jpeg_bytes(photo(24, 30)),
                           headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200, response.text
    assert response.json()["models"] == ["gender_a2b"] and (response.json()["width"], response.json()["height"]) == (30, 24)


def test_a_phone_photo_comes_back_upright(client):
    data = jpeg_bytes(photo(24, 40), orientation=6)  # stored landscape, shown portrait
    response = client.post("/v1/translate", files={"image": ("phone.jpg", data, "image/jpeg")})
    assert response.status_code == 200
    assert decode(response.content).shape == (40, 24, 3)
    assert response.headers["x-input-size"] == "24x40"


def test_an_image_longer_than_max_side_is_translated_as_a_smaller_copy(client, registry):
    image = photo(150, 300, seed=4)
    response = client.post("/v1/translate", files={"image": ("wide.png", png_bytes(image), "image/png")})
    assert response.status_code == 200
    assert (response.headers["x-input-size"], response.headers["x-output-size"]) == ("300x150", "128x64")
    assert response.headers["x-resized"] == "true"
    copy = read_image(png_bytes(image), max_side=128, shrink=True)
    np.testing.assert_array_equal(decode(response.content), _expected(registry, copy, "age_a2b"))


def test_the_page_and_its_files_are_served_from_the_package_with_nothing_from_outside(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # The browser may load nothing from elsewhere, even if a file of the page asked for it.
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        served = client.get(f"/static/{name}")
        assert served.status_code == 200 and served.content == (STATIC / name).read_bytes()
    for path in STATIC.iterdir():
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", path.read_text()), f"{path.name} names another host"
    for ref in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert ref.startswith(("/static/", "data:")), ref
        if ref.startswith("/static/"):
            assert client.get(ref).status_code == 200
    # FastAPI's /docs and /redoc load their scripts from a CDN: they are off.
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
