"""Names, domains, versions and manifest.json of an export folder.

    <export_dir>/manifest.json                          every version of every export in this folder
    <export_dir>/<name>_a2b/<version>/                  a SavedModel in the layout TF Serving loads
        saved_model.pb, variables/, assets.extra/tfcyclegan.json (this model's manifest entry)
    <export_dir>/<name>_a2b.v<version>.<quantization>.tflite   float32, float16 or int8 (dynamic range)
    (and the same for _b2a)

Versions are immutable: an export never replaces a file of another version, and the manifest
keeps every version's entry.
"""

from __future__ import annotations

import json
import os
import re

from tfcyclegan.config import TrainConfig
from tfcyclegan.export.graph import ExportError

DIRECTIONS = ("a2b", "b2a")
MODEL_SUFFIXES = (*DIRECTIONS, "gen")  # a CycleGAN's two directions, a DCGAN's generator
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


def tflite_file(model_name: str, version: int, quantization: str) -> str:
    """The TFLite file name of one model version: age_a2b.v3.float16.tflite."""
    return f"{model_name}.v{version}.{quantization}.tflite"


def _existing_versions(path: str) -> list[int]:
    if not os.path.isdir(path):
        return []
    return sorted(int(d) for d in os.listdir(path) if d.isdigit() and os.path.isdir(os.path.join(path, d)))


def next_version(export_dir: str, name: str) -> int:
    """One more than any version of `name` in export_dir: SavedModel folders, TFLite files, manifest."""
    versions = [v for d in MODEL_SUFFIXES for v in _existing_versions(os.path.join(export_dir, f"{name}_{d}"))]
    pattern = re.compile(rf"^{re.escape(name)}_(?:{'|'.join(MODEL_SUFFIXES)})\.v(\d+)\.[a-z0-9]+\.tflite$")
    if os.path.isdir(export_dir):
        versions += [int(m.group(1)) for m in map(pattern.match, os.listdir(export_dir)) if m]
        for suffix in MODEL_SUFFIXES:
            versions += [int(v) for v in read_manifest(export_dir)["models"].get(f"{name}_{suffix}", {}).get("versions", {})]
    return max(versions, default=0) + 1


def read_manifest(export_dir: str) -> dict:
    """{"format_version": 2, "models": {model name: {"latest_version": n, "versions": {"n": entry}}}}.

    A manifest.json of format 1 (one entry per model) is read as the versions it held.
    """
    path = os.path.join(export_dir, MANIFEST_FILE)
    if not os.path.isfile(path):
        return {"format_version": 2, "models": {}}
    try:
        with open(path) as f:
            manifest = json.load(f)
        models = manifest["models"]
        if manifest.get("format_version", 1) == 1:
            models = {name: {"latest_version": entry["version"], "versions": {str(entry["version"]): entry}}
                      for name, entry in models.items()}
        return {"format_version": 2, "models": dict(models)}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ExportError(
            f"{path} is damaged ({e}). It lists every export in {export_dir}; move it away (it is not overwritten) "
            "and export again, or export into another --export_dir."
        ) from e


def add_versions(manifest: dict, entries: dict) -> dict:
    """The manifest with each entry (model name -> entry with a "version") added; other versions are kept."""
    for model_name, entry in entries.items():
        model = manifest["models"].setdefault(model_name, {"versions": {}})
        model["versions"][str(entry["version"])] = entry
        model["latest_version"] = max(int(v) for v in model["versions"])
    return manifest


def find_tflite(manifest: dict, file_name: str) -> dict | None:
    """The manifest entry of the model version that wrote `file_name` (a .tflite base name)."""
    for model in manifest["models"].values():
        for entry in model["versions"].values():
            if any(item.get("path") == file_name for item in entry.get("tflite", {}).values()):
                return entry
    return None
