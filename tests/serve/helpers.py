"""What the web app's tests share: tiny trained-looking workdirs, images as bytes, a real server."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from tfcyclegan.config import DataConfig, ModelConfig, TrainConfig
from tfcyclegan.model.networks import build_generator

ROOT = Path(__file__).resolve().parents[2]
TINY = ModelConfig(gen_filters=8, gen_blocks=1, disc_filters=8)


def make_workdir(path: Path, *, task: str, seed: int, step: int) -> str:
    """A trained-looking workdir (config.json + one checkpoint of random tiny generators), no training."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(TrainConfig(model=TINY, data=DataConfig(task=task)).to_json())
    keras.utils.set_random_seed(seed)
    gen_g, gen_f = build_generator(TINY, name="gen_g"), build_generator(TINY, name="gen_f")
    progress = tf.train.Checkpoint(global_step=tf.Variable(step, dtype=tf.int64))
    tf.train.CheckpointManager(tf.train.Checkpoint(gen_g=gen_g, gen_f=gen_f, progress=progress),
                               str(path / "checkpoints"), max_to_keep=1).save()
    return str(path)


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(image: np.ndarray, *, orientation: int | None = None) -> bytes:
    buffer = io.BytesIO()
    extra = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        extra["exif"] = exif.tobytes()
    Image.fromarray(image).save(buffer, format="JPEG", quality=92, **extra)
    return buffer.getvalue()


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like uint8 (H, W, 3) image: smooth colour ramps, noise, and a bright corner that shows which way is up."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 / max(1, width - 1), y * 255 / max(1, height - 1), np.full_like(x, 128)], -1)
    image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    image[: height // 4, : width // 4] = 255
    return image


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


# -- a real server, for the browser, load and socket tests -----------------------------------------------


class Server:
    """tfcyclegan-serve in a child process on 127.0.0.1 (a free port); its log goes to a file."""

    def __init__(self, args: list[str], log_dir: Path):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.stdout, self.stderr = log_dir / "server.out", log_dir / "server.err"
        # Files, not pipes: a pipe nobody reads fills and stops the server mid-test.
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.process = subprocess.Popen([sys.executable, "-m", "tfcyclegan.cli.serve", "--host=127.0.0.1", "--port=0",
                                             *args], stdout=out, stderr=err, env=env, cwd=ROOT)
        self.url = self._wait_for_url()

    def _wait_for_url(self, timeout: float = 180) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = self.stdout.read_text()
            if " at http://" in text:
                url = text.split(" at ", 1)[1].split()[0]
                self.get_json("healthz", base=url)
                return url
            if self.process.poll() is not None:
                raise RuntimeError(f"tfcyclegan-serve exited with {self.process.returncode}: {self.stderr.read_text()[-3000:]}")
            time.sleep(0.2)
        raise RuntimeError(f"tfcyclegan-serve did not start in {timeout} s: {self.stderr.read_text()[-3000:]}")

    def get_json(self, path: str, base: str | None = None) -> dict:
        with urllib.request.urlopen((base or self.url) + path, timeout=30) as response:
            return json.loads(response.read())

    def stop(self) -> int | None:
        """SIGTERM, as a service manager stops it; its exit status, or None if it had to be killed."""
        self.process.terminate()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None
