"""Bad input in-process: each gets a 4xx with a message in words, and the app keeps answering."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time

import numpy as np
import pytest
from serve.helpers import decode, jpeg_bytes, photo, png_bytes
from fastapi.testclient import TestClient
from PIL import Image

from tfcyclegan.serve import UNAVAILABLE, FaceMode, Limits, create_app

MB = 2**20


@pytest.fixture(scope="module")
def app(registry):
    return create_app(registry, Limits(max_upload_bytes=2 * MB, max_side=128, max_pixels=4_000_000),
                      face_mode=FaceMode(False, UNAVAILABLE))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def _post_file(client, data: bytes, name="photo.jpg", kind="image/jpeg", **fields):
    return client.post("/v1/translate", files={"image": (name, data, kind)}, data=fields)


def _truncated_jpeg() -> bytes:
    data = jpeg_bytes(photo(128, 128))
    return data[: len(data) // 2]  # the header is whole: the damage shows only when decoding


@pytest.mark.parametrize("send, status, message", [
    (lambda c: _post_file(c, b"%PDF-1.4 not a photo at all", "cv.pdf", "application/pdf"), 415, "not an image"),
    (lambda c: _post_file(c, b"GIF89a garbage"), 415, "not an image"),
    (lambda c: c.post("/v1/translate"), 400, "empty request"),
    (lambda c: c.post("/v1/translate", content=b"", headers={"Content-Type": "image/png"}), 400, "empty request"),
    (lambda c: _post_file(c, b""), 400, "the image is empty (0 bytes)"),
    (lambda c: c.post("/v1/translate", files={"photo": ("a.png", png_bytes(photo(9, 9)), "image/png")}), 400,
     "no 'image' field"),
    (lambda c: c.post("/v1/translate", data={"image": "a text field"}, files={"x": ("x", b"x")}), 400,
     "'image' must be a file"),
    (lambda c: c.post("/v1/translate", content=b"{not json", headers={"Content-Type": "application/json"}), 400,
     "not valid JSON"),
    (lambda c: c.post("/v1/translate", json=["a list"]), 400, "must be an object"),
    (lambda c: c.post("/v1/translate", json={"model": "age_a2b"}), 400, "no 'image' key"),
    (lambda c: c.post("/v1/translate", json={"image": "@@not base64@@"}), 400, "not valid base64"),
    (lambda c: c.post("/v1/translate", content=b"hello", headers={"Content-Type": "text/plain"}), 415,
     "unsupported Content-Type 'text/plain'"),
    (lambda c: _post_file(c, _truncated_jpeg()), 422, "cannot be decoded"),
    (lambda c: _post_file(c, png_bytes(photo(5, 40)), "tiny.png", "image/png"), 422, "smaller than 8x8"),
    (lambda c: _post_file(c, png_bytes(photo(16, 16)), "a.png", "image/png", model="age_x2y"), 400,
     "unknown model 'age_x2y': this server has age_a2b, age_b2a, gender_a2b"),
    (lambda c: _post_file(c, png_bytes(photo(16, 16)), "a.png", "image/png", chain="gender_b2a"), 400,
     "unknown model 'gender_b2a'"),
    (lambda c: _post_file(c, png_bytes(photo(16, 16)), "a.png", "image/png", faces="maybe"), 400,
     "'faces' must be on or off"),
    (lambda c: _post_file(c, png_bytes(photo(16, 16)), "a.png", "image/png", format="webp"), 400,
     "'format' must be png or json"),
    (lambda c: _post_file(c, png_bytes(photo(16, 16)), "a.png", "image/png", faces="on"), 501,
     "faces mode needs the face pipeline"),
    (lambda c: c.get("/v1/nothing"), 404, "Not Found"),
], ids=["pdf", "garbage", "no_body", "empty_raw_body", "empty_file", "no_image_field", "image_as_text",
        "bad_json", "json_list", "json_without_image", "bad_base64", "text_plain", "truncated_jpeg", "too_small",
        "unknown_model", "unknown_chain", "bad_faces", "bad_format", "faces_unavailable", "unknown_path"])
def test_bad_requests_get_a_4xx_or_501_in_words(client, send, status, message):
    response = send(client)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert client.get("/healthz").json()["status"] == "ok"


def test_a_50mb_upload_is_refused_with_413(client):
    response = client.post("/v1/translate", files={"image": ("big.jpg", bytes(50 * MB), "image/jpeg")})
    assert response.status_code == 413
    assert "larger than this server's limit of 2 MB" in response.json()["error"]


def _asgi_post(app, chunks: int, chunk_bytes: int, content_length: bool, pause: float = 0.0) -> tuple[int, dict, int, int]:
    """POSTs `chunks` chunks straight into the ASGI app: (status, JSON body, chunks the app had read
    when the whole answer's body had been sent, chunks it read in all)."""
    read = 0
    sent: list[dict] = []
    read_when_answered = None
    headers = [(b"content-type", b"image/jpeg")]
    if content_length:
        headers.append((b"content-length", str(chunks * chunk_bytes).encode()))
    else:
        headers.append((b"transfer-encoding", b"chunked"))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/translate", "raw_path": b"/v1/translate", "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}

    async def receive():
        nonlocal read
        read += 1
        if read > chunks:
            return {"type": "http.disconnect"}
        if read > 1:
            await asyncio.sleep(pause)  # a slow client
        return {"type": "http.request", "body": bytes(chunk_bytes), "more_body": read < chunks}

    async def send(message):
        nonlocal read_when_answered
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body") and read_when_answered is None:
            read_when_answered = read

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body), read_when_answered, read


def test_a_50mb_upload_is_refused_before_it_is_read_whole(app):
    # With a Content-Length: the whole answer is sent before a byte of the body is read. The rest
    # is then read and dropped (a client that writes all before it reads gets the answer, not a reset).
    status, body, read_when_answered, read = _asgi_post(app, chunks=50, chunk_bytes=MB, content_length=True)
    assert (status, read_when_answered) == (413, 0) and "limit of 2 MB" in body["error"]
    assert read == 50
    # Chunked (no Content-Length): answered as soon as the count passes 2 MB, the 3rd MB of 50.
    status, body, read_when_answered, read = _asgi_post(app, chunks=50, chunk_bytes=MB, content_length=False)
    assert (status, read_when_answered) == (413, 3) and "limit of 2 MB" in body["error"]


def test_dropping_the_rest_of_a_refused_body_is_bounded_in_time(app, monkeypatch):
    from tfcyclegan.serve import UploadLimit

    monkeypatch.setattr(UploadLimit, "LINGER_SECONDS", 1.0)
    start = time.perf_counter()
    # A client that sends a chunk every 0.4 s: the answer ends after LINGER_SECONDS, not after 50 chunks.
    status, _, read_when_answered, read = _asgi_post(app, chunks=50, chunk_bytes=MB, content_length=True, pause=0.4)
    assert (status, read_when_answered) == (413, 0)
    assert time.perf_counter() - start < 3 and read < 6


def test_an_upload_slower_than_upload_seconds_gets_408_and_gives_its_place_back(registry):
    app = create_app(registry, Limits(upload_seconds=1, workers=1, queue=0), face_mode=FaceMode(False, UNAVAILABLE))
    start = time.perf_counter()
    status, body, read_when_answered, read = _asgi_post(app, chunks=4, chunk_bytes=1000, content_length=True, pause=2.0)
    assert (status, read_when_answered) == (408, 2) and "the upload took longer than 1 s" in body["error"]
    assert time.perf_counter() - start < 5
    assert app.state.pool.stats()["waiting"] == 0  # the one place is free again


@pytest.fixture(scope="module")
def huge():
    """10000x10000 images, small as files (one colour): a JPEG and a PNG."""
    image = Image.new("RGB", (10000, 10000), (150, 120, 100))
    jpeg, png = io.BytesIO(), io.BytesIO()
    image.save(jpeg, format="JPEG", quality=75)
    image.save(png, format="PNG")
    return {"jpeg": jpeg.getvalue(), "png": png.getvalue()}


def test_a_10000px_jpeg_is_translated_as_a_max_side_copy(client, huge):
    response = _post_file(client, huge["jpeg"])
    assert response.status_code == 200, response.text
    assert (response.headers["x-input-size"], response.headers["x-output-size"]) == ("10000x10000", "128x128")
    assert decode(response.content).shape == (128, 128, 3)


def test_a_10000px_png_is_refused_from_its_header_with_413(client, huge):
    # A PNG cannot be decoded at a reduced scale: its 100 megapixels are over the limit of 4.
    response = _post_file(client, huge["png"], "huge.png", "image/png")
    assert response.status_code == 413
    assert "10000x10000 is 100.0 megapixels, more than the 4 megapixels allowed" in response.json()["error"]


def test_json_errors_are_json_and_a_good_request_still_works_afterwards(client):
    assert client.post("/v1/translate", json={"image": base64.b64encode(b"nope").decode()}).status_code == 415
    response = client.post("/v1/translate", files={"image": ("a.png", png_bytes(photo(20, 20)), "image/png")})
    assert response.status_code == 200 and decode(response.content).shape == (20, 20, 3)
    assert np.isfinite(float(response.headers["x-seconds"]))
