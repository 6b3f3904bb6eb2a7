"""The web app's throughput and latency on loopback, and its memory under bad uploads. Prints JSON.

    python -m benchmarks.serve                                  # full-size generator, random weights
    python -m benchmarks.serve --model=exports/age_a2b          # a real export
    python -m benchmarks.serve --clients=1,4 --workers=1,2 --requests=8 --no_memory

Starts tfcyclegan-serve (a child process, on 127.0.0.1) for each --workers value and sends it
--size px JPEGs from N client threads at once (--clients), each sending --requests requests one
after another (a closed loop: a client sends its next request when the previous one is
answered). Per row: requests per second over the row's wall time, and the p50 / p95 latency of
a request as the client sees it (upload, queue, decode, translate, PNG, download). The queue is
large enough that no request is refused (a 503 would be counted in `errors`).

--memory (on by default) reads the server's peak resident memory (/healthz) after a warm-up
translation at the server's --max_side, then after a 50 MB upload, a 10000x10000 JPEG and a
10000x10000 PNG, with the server's default limits: what the bad input adds to the peak.
Other processes may share the CPU: `load_average` says how busy the machine was.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def log(**fields) -> None:
    print(json.dumps(fields), file=sys.stderr, flush=True)


def full_size_export(folder: str, max_side: int) -> str:
    """The full-size generator (the paper's ResNet-9) with random weights, as a SavedModel."""
    import keras

    from tfcyclegan.config import ModelConfig
    from tfcyclegan.export import ServingModule, saved_model
    from tfcyclegan.model.networks import build_generator

    keras.utils.set_random_seed(0)
    path = os.path.join(folder, "random_a2b", "1")
    saved_model.save(ServingModule(build_generator(ModelConfig(), name="gen_g"), name="random_a2b", max_side=max_side), path)
    return os.path.dirname(path)


def jpeg(height: int, width: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), np.full_like(x, 128)], -1)
    image = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


class Server:
    def __init__(self, args: list[str], folder: str):
        self.out, self.err = os.path.join(folder, "server.out"), os.path.join(folder, "server.err")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.process = subprocess.Popen([sys.executable, "-m", "tfcyclegan.cli.serve", "--host=127.0.0.1", "--port=0",
                                             "--log_level=warning", *args], stdout=out, stderr=err, env=env)
        deadline = time.time() + 300
        while time.time() < deadline:
            text = Path(self.out).read_text()
            if " at http://" in text:
                self.url = text.split(" at ", 1)[1].split()[0]
                return
            if self.process.poll() is not None:
                raise SystemExit(f"tfcyclegan-serve exited: {Path(self.err).read_text()[-2000:]}")
            time.sleep(0.2)
        raise SystemExit("tfcyclegan-serve did not start in 300 s")

    def health(self) -> dict:
        with urllib.request.urlopen(self.url + "healthz", timeout=60) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def post(url: str, body: bytes, content_type: str = "image/jpeg") -> tuple[int, float]:
    """(status, seconds) of one POST /v1/translate with the image as the body."""
    request = urllib.request.Request(url + "v1/translate", data=body, method="POST", headers={"Content-Type": content_type})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as e:
        e.read()
        status = e.code
    return status, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def load_row(url: str, clients: int, requests: int, body: bytes) -> dict:
    latencies, statuses = [], []
    lock, start_line = threading.Lock(), threading.Barrier(clients)

    def client():
        start_line.wait()
        for _ in range(requests):
            status, seconds = post(url, body)
            with lock:
                statuses.append(status)
                latencies.append(seconds)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ok = [s for s, st in zip(latencies, statuses) if st == 200]
    return {"clients": clients, "requests": len(statuses), "errors": len(statuses) - len(ok),
            "requests_per_s": round(len(ok) / wall, 3), "p50_ms": round(1000 * statistics.median(ok), 1) if ok else None,
            "p95_ms": round(1000 * percentile(ok, 95), 1) if ok else None, "wall_s": round(wall, 2)}


def memory_under_bad_input(model: str, folder: str) -> dict:
    """Peak RSS of a server with the default limits, before and after each bad upload."""
    server = Server([f"--model={model}"], folder)
    try:
        limits = json.loads(urllib.request.urlopen(server.url + "v1/models", timeout=60).read())["limits"]
        side = limits["max_side"]
        status, seconds = post(server.url, jpeg(side, side))  # the largest image a request translates
        peaks = {"after_warm_up_at_max_side": server.health()["peak_rss_mb"]}
        big = Image.new("RGB", (10000, 10000), (150, 120, 100))
        cases = {"upload_50mb": (bytes(50 * 2**20), "image/jpeg")}
        for fmt in ("JPEG", "PNG"):
            buffer = io.BytesIO()
            big.save(buffer, format=fmt)
            cases[f"{fmt.lower()}_10000px"] = (buffer.getvalue(), f"image/{fmt.lower()}")
        del big
        answers = {}
        for name, (body, kind) in cases.items():
            answers[name] = {"status": post(server.url, body, kind)[0], "upload_mb": round(len(body) / 2**20, 2)}
            peaks[f"after_{name}"] = server.health()["peak_rss_mb"]
        return {"limits": limits, "warm_up": {"status": status, "seconds": round(seconds, 2)}, "answers": answers,
                "peak_rss_mb": peaks, "growth_mb": round(peaks[f"after_{list(cases)[-1]}"] - peaks["after_warm_up_at_max_side"], 1)}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="what tfcyclegan-serve --model takes (default: the full-size generator, random weights)")
    parser.add_argument("--size", type=int, default=256, help="side of the square JPEGs sent")
    parser.add_argument("--clients", default="1,4", help="concurrent clients, one row each")
    parser.add_argument("--workers", default="1", help="the server's --workers, one server each")
    parser.add_argument("--requests", type=int, default=8, help="requests per client per row")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    result = {"size": args.size, "requests_per_client": args.requests, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or full_size_export(tmp, max_side=2048)
        result["model"] = args.model or "full-size generator (ResNet-9, 64 filters), random weights, SavedModel"
        body = jpeg(args.size, args.size)
        rows = []
        for workers in (int(w) for w in args.workers.split(",")):
            server = Server([f"--model={model}", f"--workers={workers}", f"--queue={max(clients) * 2}"], tmp)
            try:
                for _ in range(2):  # warm-up: the first calls set up the graph and oneDNN's kernels
                    post(server.url, body)
                for c in clients:
                    row = {"workers": workers, **load_row(server.url, c, args.requests, body)}
                    log(**row)
                    rows.append(row)
            finally:
                server.stop()
        result["rows"] = rows
        if args.memory:
            result["memory"] = memory_under_bad_input(model, tmp)
            log(memory=result["memory"])
    result["load_average"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
