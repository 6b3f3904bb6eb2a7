"""The bounded pool and its queue: a full server answers 503 with Retry-After, and gives places back."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from serve.helpers import png_bytes, photo
from fastapi.testclient import TestClient

from tfcyclegan.serve import UNAVAILABLE, FaceMode, Limits, ModelRegistry, QueueFull, WorkerPool, create_app
from tfcyclegan.translate.models import Translator


def test_the_pool_admits_workers_plus_queue_then_refuses():
    pool = WorkerPool(workers=1, queue=2)
    tickets = [pool.admit() for _ in range(3)]
    with pytest.raises(QueueFull, match=r"the server is busy: 0 running and 3 waiting") as refused:
        pool.admit()
    assert refused.value.retry_after >= 1
    tickets[0].close()  # a request that ends without a job gives its place back
    tickets[0].close()  # once
    pool.admit()
    with pytest.raises(QueueFull):
        pool.admit()
    assert pool.stats()["refused"] == 2
    pool.shutdown()


def test_a_place_is_held_until_its_job_ends_even_when_the_request_is_gone():
    pool = WorkerPool(workers=1, queue=0)
    release = threading.Event()

    async def scenario():
        ticket = pool.admit()
        task = asyncio.ensure_future(ticket.run(release.wait))
        await asyncio.sleep(0.05)
        task.cancel()  # the client hung up; its job still runs in the thread
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull):
            pool.admit()
        ticket.close()  # closing a ticket whose job runs does not give the place back twice
        with pytest.raises(QueueFull):
            pool.admit()
        release.set()
        for _ in range(100):
            await asyncio.sleep(0.02)
            if pool.stats()["completed"]:
                break
        pool.admit()  # the job ended: its place is free

    asyncio.run(scenario())
    pool.shutdown()


def test_a_full_server_answers_503_with_retry_after_and_then_serves_the_admitted_requests():
    release = threading.Event()

    def slow(images: np.ndarray) -> np.ndarray:
        release.wait(60)
        return -images

    registry = ModelRegistry([Translator("slow_a2b", "saved_model", "-", "a2b", slow, {"export_size": 32})])
    app = create_app(registry, Limits(workers=1, queue=1), face_mode=FaceMode(False, UNAVAILABLE))
    upload = {"image": ("a.png", png_bytes(photo(16, 16)), "image/png")}
    with TestClient(app) as client, ThreadPoolExecutor(2) as threads:
        admitted = [threads.submit(client.post, "/v1/translate", files=upload) for _ in range(2)]
        deadline = time.time() + 30
        while (client.get("/healthz").json()["running"], client.get("/healthz").json()["waiting"]) != (1, 1):
            assert time.time() < deadline, client.get("/healthz").json()
            time.sleep(0.02)
        refused = client.post("/v1/translate", files=upload)
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert "the server is busy: 1 running and 1 waiting" in refused.json()["error"]
        assert client.get("/healthz").json()["status"] == "ok"  # health and the page do not queue
        release.set()
        assert [f.result(timeout=60).status_code for f in admitted] == [200, 200]
        health = client.get("/healthz").json()
        assert (health["completed"], health["refused"], health["running"], health["waiting"]) == (2, 1, 0, 0)
