"""Names, domains, versions and manifest.json of an export folder.

    <export_dir>/manifest.json                      every export in this folder, with parity figures
    <export_dir>/<name>_a2b/<version>/              a SavedModel in the layout TF Serving loads
        saved_model.pb, variables/, assets.extra/tfcyclegan.json (this model's manifest entry)
    <export_dir>/<name>_a2b.<quantization>.tflite   float32, float16 or int8 (dynamic range)
    (and the same for _b2a)
"""

from __future__ import annotations

import json
import os
import re

from tfcyclegan.config import TrainConfig

DIRECTIONS = ("a2b", "b2a")
MANIFEST_FILE = "manifest.json"
METADATA_FILE = os.path.join("assets.extra", "tfcyclegan.json")

_UTKFACE_DOMAINS = {
    "age": ("age 20-29", "age 50-59"),
    "ethnicity": ("White", "Black"),
    "gender": ("male", "female"),
}


def default_name(config: TrainConfig) -> str:
    """The task for UTKFace-style runs, else the dataset's name (folder name, TFDS name)."""
    data = config.data
    if data.dataset == "folder" and data.data_dir:
        name = os.path.basename(os.path.normpath(data.data_dir))
    elif data.dataset == "tfds" and data.tfds_name:
        name = data.tfds_name.split("/")[-1].split(":")[0]
    else:
        name = data.task
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "model"


def describe_domains(config: TrainConfig) -> dict:
    data = config.data
    if data.domain_a is not None:
        return {"a": data.domain_a, "b": data.domain_b}
    if data.dataset in ("utkface", "synthetic"):
        a, b = _UTKFACE_DOMAINS[data.task]
        return {"a": a, "b": b}
    if data.dataset == "tfds" and data.tfds_name and "2" in data.tfds_name.split("/")[-1]:
        a, _, b = data.tfds_name.split("/")[-1].split(":")[0].partition("2")
        return {"a": a, "b": b}
    return {"a": "trainA", "b": "trainB"}


def _existing_versions(path: str) -> list[int]:
    if not os.path.isdir(path):
        return []
    return sorted(int(d) for d in os.listdir(path) if d.isdigit() and os.path.isdir(os.path.join(path, d)))


def next_version(export_dir: str, name: str) -> int:
    versions = [v for d in DIRECTIONS for v in _existing_versions(os.path.join(export_dir, f"{name}_{d}"))]
    return max(versions, default=0) + 1


def read_manifest(export_dir: str) -> dict:
    path = os.path.join(export_dir, MANIFEST_FILE)
    if not os.path.isfile(path):
        return {"format_version": 1, "models": {}}
    with open(path) as f:
        return json.load(f)
