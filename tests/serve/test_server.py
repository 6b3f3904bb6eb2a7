"""A real tfcyclegan-serve on 127.0.0.1: uploads over a socket, memory under bad input, 20 requests at once."""

from __future__ import annotations

import io
import json
import socket
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from serve.helpers import decode, jpeg_bytes, photo
from PIL import Image

MB = 2**20


def test_the_server_loads_its_models_once_and_serves_page_and_api(server):
    models = server.get_json("v1/models")
    assert [m["name"] for m in models["models"]] == ["age_a2b", "age_b2a", "gender_a2b"]
    assert models["limits"] == {"max_upload_bytes": 2 * MB, "max_side": 256, "max_pixels": 4_000_000,
                                "workers": 1, "queue": 2, "upload_seconds": 60}
    page = httpx.get(server.url, timeout=30)
    assert page.status_code == 200 and "<title>tfcyclegan</title>" in page.text
    response = httpx.post(server.url + "v1/translate", files={"image": ("a.jpg", jpeg_bytes(photo(50, 70)), "image/jpeg")},
                          data={"model": "age_b2a", "chain": "gender_a2b"}, timeout=60)
    assert response.status_code == 200 and decode(response.content).shape == (50, 70, 3)


def _raw_post(url: str, length: int, first_bytes: int) -> bytes:
    """Sends the headers of a POST announcing `length` bytes and only `first_bytes` of them; returns the answer."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"POST /v1/translate HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/jpeg\r\n"
                     f"Content-Length: {length}\r\n\r\n".encode() + bytes(first_bytes))
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def test_a_50mb_upload_is_answered_413_before_it_is_sent(server):
    # The client has sent 64 KB of the 50 MB it announced: the answer comes anyway, at once.
    answer = _raw_post(server.url, 50 * MB, 64 * 1024)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert "larger than this server's limit of 2 MB" in json.loads(body)["error"]
    assert server.get_json("healthz")["status"] == "ok"


@pytest.mark.parametrize("chunked", [False, True])
def test_a_client_that_sends_its_whole_body_before_it_reads_gets_the_413(server, chunked):
    # urllib writes the whole 50 MB before it reads: the server drops the rest of the body rather than
    # closing the connection on it (which would reset it and lose the answer).
    body = bytes(50 * MB)
    data = iter([body[i:i + MB] for i in range(0, len(body), MB)]) if chunked else body
    request = urllib.request.Request(server.url + "v1/translate", data=data, method="POST",
                                     headers={"Content-Type": "image/jpeg", **({"Transfer-Encoding": "chunked"} if chunked else {})})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=60)
    assert answer.value.code == 413
    assert "larger than this server's limit of 2 MB" in json.loads(answer.value.read())["error"]


def test_memory_stays_bounded_under_a_50mb_upload_and_10000px_images(server):
    client = httpx.Client(base_url=server.url, timeout=120)
    warm = client.post("/v1/translate", files={"image": ("w.jpg", jpeg_bytes(photo(256, 256)), "image/jpeg")})
    assert warm.status_code == 200
    before = server.get_json("healthz")["peak_rss_mb"]

    big = Image.new("RGB", (10000, 10000), (150, 120, 100))
    jpeg, png = io.BytesIO(), io.BytesIO()
    big.save(jpeg, format="JPEG", quality=75)
    big.save(png, format="PNG")
    del big
    answers = [
        client.post("/v1/translate", content=bytes(50 * MB), headers={"Content-Type": "image/jpeg"}),
        client.post("/v1/translate", files={"image": ("huge.jpg", jpeg.getvalue(), "image/jpeg")}),
        client.post("/v1/translate", files={"image": ("huge.png", png.getvalue(), "image/png")}),
    ]
    assert [a.status_code for a in answers] == [413, 200, 413], [a.text[:200] for a in answers]
    assert answers[1].headers["x-output-size"] == "256x256" and answers[1].headers["x-input-size"] == "10000x10000"
    health = server.get_json("healthz")
    # Decoded whole, the 10000x10000 images are 400 MB each in PIL, and the upload 50 MB.
    assert health["status"] == "ok" and health["peak_rss_mb"] - before < 100, (before, health)
    print(json.dumps({"peak_rss_mb_before": before, "peak_rss_mb_after": health["peak_rss_mb"]}))


def test_20_requests_at_once_are_each_answered_200_or_503_and_the_server_stays_up(server):
    before = server.get_json("healthz")
    upload = jpeg_bytes(photo(256, 256, seed=7))
    start = threading.Barrier(20)

    def one(i: int) -> tuple[int, str | None]:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            start.wait(30)
            response = client.post("/v1/translate", files={"image": (f"{i}.jpg", upload, "image/jpeg")})
            if response.status_code == 200:
                assert decode(response.content).shape == (256, 256, 3)
            else:
                assert "the server is busy" in response.json()["error"]
            return response.status_code, response.headers.get("retry-after")

    with ThreadPoolExecutor(20) as threads:
        answers = list(threads.map(one, range(20)))
    statuses = [status for status, _ in answers]
    assert len(answers) == 20 and set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 3  # at least the places there are (1 worker + 2 queued)
    assert all(int(retry) >= 1 for status, retry in answers if status == 503)
    after = server.get_json("healthz")
    # None lost: every request is counted as a translation done or a refusal, and none is left running.
    assert after["completed"] - before["completed"] == statuses.count(200)
    assert after["refused"] - before["refused"] == statuses.count(503)
    assert (after["status"], after["running"], after["waiting"]) == ("ok", 0, 0)
    print(json.dumps({"ok": statuses.count(200), "busy": statuses.count(503)}))
