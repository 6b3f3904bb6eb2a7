"""Loading what translates an image: an exported SavedModel, a TFLite file, or a training workdir.

--model (and each --chain entry) is a SavedModel version folder (exports/age_a2b/1), a TF Serving
model folder (exports/age_a2b: its highest version), a .tflite file, or a training workdir (its
latest checkpoint; `runs/age:b2a` picks the direction).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable

import numpy as np
import tensorflow as tf

from tfcyclegan.export import MANIFEST_FILE, METADATA_FILE, ExportError, TFLiteRunner
from tfcyclegan.export.manifest import describe_domains, find_tflite, read_manifest
from tfcyclegan.export import translate as export_translate
from tfcyclegan.model.workdir import restore_generators


# Datasets of aligned face crops, like UTKFace's: models trained on them translate a photo's faces.
FACE_DATASETS = ("utkface", "synthetic")


class ModelSpecError(ValueError):
    """A --model / --chain entry is not something we can load; the message names it."""


@dataclasses.dataclass
class Translator:
    """One translation step. fn: float32 (1, H, W, 3) in [-1, 1] -> the same shape.

    metadata: what the export recorded (its manifest entry: task, direction, domains,
    from_domain, to_domain, global_step, export_size, max_side, ...), or for a workdir the same
    keys from its config and checkpoint; {} when an export has none.

    What the run that trained it says, where it is known (None where an export lost its metadata):
    size, the side of its last training stage (the crop size for --faces); dataset and task, as in
    the run's config ("utkface" / "age", "folder", ...); preprocess, the run's data.preprocess.
    """

    name: str
    kind: str  # "saved_model", "tflite" or "workdir"
    path: str
    direction: str | None
    fn: Callable[[np.ndarray], np.ndarray]
    metadata: dict = dataclasses.field(default_factory=dict)
    size: int | None = None
    dataset: str | None = None
    task: str | None = None
    preprocess: str | None = None

    @property
    def trained_on_faces(self) -> bool:
        """True for runs on aligned face crops (the utkface and synthetic datasets)."""
        return self.dataset in FACE_DATASETS

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.fn(images)


# -- models ----------------------------------------------------------------------------------


def parse_model_spec(spec: str) -> tuple[str, str | None]:
    """'runs/age:b2a' -> ('runs/age', 'b2a'); 'exports/x.tflite' -> (..., None)."""
    path, sep, suffix = spec.rpartition(":")
    if sep and suffix in ("a2b", "b2a"):
        return path, suffix
    return spec, None


def _latest_version_dir(path: str) -> str | None:
    versions = [d for d in os.listdir(path) if d.isdigit() and os.path.isfile(os.path.join(path, d, "saved_model.pb"))]
    return os.path.join(path, max(versions, key=int)) if versions else None


def _export_metadata(path: str, kind: str) -> dict:
    """The manifest entry written beside an export, or {} when there is none or it is damaged
    (the model runs without it; only the direction check and the name use it)."""
    try:
        if kind == "saved_model":
            candidate = os.path.join(path, METADATA_FILE)
            if os.path.isfile(candidate):
                with open(candidate) as f:
                    entry = json.load(f)
                return entry if isinstance(entry, dict) else {}
            return {}
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isfile(os.path.join(folder, MANIFEST_FILE)):
            return {}
        return find_tflite(read_manifest(folder), os.path.basename(path)) or {}
    except (OSError, ValueError, ExportError):
        return {}


def _training(config: dict | None, metadata: dict) -> dict:
    """size, dataset, task and preprocess from a run's config (as a dict) or an export's metadata."""
    config = config or metadata.get("config") or {}
    data = config.get("data") or {}
    size = None
    if isinstance(config.get("schedule"), str):  # "48:15,64:25": the last stage's size
        last = config["schedule"].split(",")[-1].partition(":")[0].strip()
        size = int(last) if last.isdigit() else None
    # The training size, not export_size: an export at another --size does not change the scale
    # at which the model learnt faces.
    return {
        "size": size or metadata.get("export_size"),
        "dataset": data.get("dataset") or metadata.get("dataset"),
        "task": data.get("task") or metadata.get("task"),
        "preprocess": data.get("preprocess"),
    }


def _first_line(error: BaseException) -> str:
    text = (getattr(error, "message", None) or str(error)).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def _sibling_hint(path: str, direction: str) -> str:
    other = "b2a" if direction == "a2b" else "a2b"
    hint = path.replace(f"_{direction}", f"_{other}")
    return f" (try {hint})" if hint != path and os.path.exists(hint) else ""


def load_translator(spec: str, *, direction: str | None = None, num_threads: int | None = None) -> Translator:
    """Loads one step. direction: the default for workdirs ("a2b" when None)."""
    path, explicit = parse_model_spec(spec)
    wanted = explicit or direction
    if not os.path.exists(path):
        raise ModelSpecError(f"--model {spec!r}: {path} does not exist.")

    if path.endswith(".tflite") and os.path.isfile(path):
        try:
            runner = TFLiteRunner(path, num_threads=num_threads)
        except (ValueError, RuntimeError, OSError) as e:
            raise ModelSpecError(f"--model {spec!r}: {path} is not a readable TFLite file ({_first_line(e)}); "
                                 "export it again.") from e
        kind, fn = "tflite", runner
    elif os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json")):
        restored = restore_generators(path)  # CheckpointError names the path
        chosen = wanted or "a2b"
        generator = restored.gen_g if chosen == "a2b" else restored.gen_f

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def run_keras(images):
            return export_translate(generator, images)

        name = f"{os.path.basename(os.path.normpath(path))}_{chosen}"
        config = restored.config
        domains = describe_domains(config)
        source, target = (domains["a"], domains["b"]) if chosen == "a2b" else (domains["b"], domains["a"])
        metadata = {"name": name, "task": config.data.task, "dataset": config.data.dataset, "direction": chosen,
                    "domains": domains, "from_domain": source, "to_domain": target,
                    "global_step": restored.global_step, "export_size": config.schedule.stages[-1].size}
        return Translator(name, "workdir", path, chosen, lambda x: run_keras(x).numpy(), metadata,
                          size=config.schedule.stages[-1].size, dataset=config.data.dataset, task=config.data.task,
                          preprocess=config.data.preprocess)
    elif os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            version_dir = _latest_version_dir(path)
            if version_dir is None:
                raise ModelSpecError(
                    f"--model {spec!r} is not a SavedModel folder (saved_model.pb), a TF Serving model folder "
                    "(numbered versions), a .tflite file or a tfcyclegan workdir (config.json)."
                )
            path = version_dir
        try:
            loaded = tf.saved_model.load(path)
        # IndexError: TensorFlow's reader on a truncated variables file.
        except (tf.errors.OpError, ValueError, OSError, IndexError, RuntimeError) as e:
            raise ModelSpecError(f"--model {spec!r}: the SavedModel in {path} cannot be loaded ({_first_line(e)}): its "
                                 "files are damaged or incomplete; export it again.") from e
        if "translate_float" not in loaded.signatures:
            raise ModelSpecError(f"--model {spec!r}: {path} is a SavedModel without a translate_float signature.")
        signature = loaded.signatures["translate_float"]
        kind, fn = "saved_model", (lambda x: signature(images=tf.constant(x))["images"].numpy())
    else:
        raise ModelSpecError(f"--model {spec!r} is neither a .tflite file nor a folder.")

    metadata = _export_metadata(path, kind)
    known = metadata.get("direction")
    if wanted and known and wanted != known:
        raise ModelSpecError(
            f"--model {spec!r} translates {known} ({metadata.get('from_domain')} -> {metadata.get('to_domain')}), "
            f"not {wanted}{_sibling_hint(path, known)}."
        )
    if kind == "tflite":
        name = os.path.basename(path).removesuffix(".tflite")  # keeps the quantization: age_a2b.int8
    else:
        name = metadata.get("name") or os.path.basename(os.path.normpath(path))
    return Translator(name, kind, path, known, fn, metadata, **_training(None, metadata))
