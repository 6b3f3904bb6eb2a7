"""export(): both generators of a trained run as SavedModels (TF Serving) and TFLite files.

Every export is verified before it is put in place: the SavedModel is reloaded and compared with
the Keras generator at two sizes (one not divisible by 4), and every TFLite file is run with
LiteRT's interpreter at the export size and after resize_tensor_input to the second size and
compared with the SavedModel (verify.PARITY). A failure raises ExportError and leaves no file.
Layout of the export folder: manifest.py.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from tfcyclegan.export import dcgan as dcgan_export
from tfcyclegan.export import saved_model
from tfcyclegan.export.graph import MIN_SIDE, ExportError, mobile_generator
from tfcyclegan.export.manifest import (
    DIRECTIONS, MANIFEST_FILE, METADATA_FILE, add_versions, default_name, describe_domains, next_version, read_manifest,
    tflite_file,
)
from tfcyclegan.export.saved_model import DEFAULT_MAX_SIDE, ServingModule
from tfcyclegan.export.tflite import (
    QUANTIZATIONS, TFLITE_WEIGHTS, TFLiteRunner, check_builtin_only, convert_concrete, convert_tflite,
)
from tfcyclegan.export.verify import (
    KERAS_TOLERANCE, check_sizes, keras_reference, load_parity_images, measure_parity, synthetic_images,
)
from tfcyclegan.io import write_json
from tfcyclegan.model.workdir import read_config, restore_dcgan, restore_generators

FORMATS = ("saved_model", "tflite")


def _parse_list(value: str | Sequence[str], valid: tuple[str, ...], flag: str) -> list[str]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    items = [v for v in items if v]
    bad = [v for v in items if v not in valid]
    if bad or not items:
        raise ExportError(f"--{flag} takes a comma-separated list of {', '.join(valid)}. Received: {value!r}")
    return list(dict.fromkeys(items))


def export(
    workdir: str,
    export_dir: str,
    *,
    formats: str | Sequence[str] = FORMATS,
    quantizations: str | Sequence[str] = QUANTIZATIONS,
    version: int | None = None,
    name: str | None = None,
    size: int | None = None,
    parity_images: Sequence[str] | None = None,
    num_threads: int | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
    log: Callable[[str], None] = print,
) -> dict:
    """Exports both generators of the run in `workdir`; returns this export's manifest entries.

    size: the export size (default: the last stage of the run's schedule).
    max_side: the longest image side the SavedModel's signatures accept.
    parity_images: photos for the parity checks (default: synthetic_images).
    Raises CheckpointError (no/corrupt checkpoint) or ExportError (bad arguments, failed
    verification); nothing that failed verification is left in export_dir.
    """
    formats = _parse_list(formats, FORMATS, "formats")
    quantizations = _parse_list(quantizations, QUANTIZATIONS, "tflite_quantization") if "tflite" in formats else []
    if read_config(workdir).kind == "dcgan":
        return _export_dcgan(workdir, export_dir, formats=formats, quantizations=quantizations, version=version,
                             name=name, num_threads=num_threads, log=log)
    restored = restore_generators(workdir)
    config = restored.config
    name = name or default_name(config)
    size = size or config.schedule.stages[-1].size
    if size < MIN_SIDE:
        raise ExportError(f"--size must be at least {MIN_SIDE}. Received: {size}")
    version = _prepare(export_dir, name, version, formats, quantizations, [f"{name}_{d}" for d in DIRECTIONS])

    sizes = check_sizes(size)
    inputs = [
        load_parity_images(parity_images, h, w) if parity_images else synthetic_images(2, h, w, seed=h * 1000 + w)
        for h, w in sizes
    ]
    common = {
        "task": config.data.task, "dataset": config.data.dataset, "domains": describe_domains(config),
        "global_step": restored.global_step, "checkpoint": os.path.abspath(restored.checkpoint_path),
        "workdir": os.path.abspath(workdir), "config": config.to_dict(), "export_size": size,
        "check_sizes": [list(s) for s in sizes], "version": version, "max_side": max_side,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "parity_inputs": "files" if parity_images else "synthetic",
    }
    # Both directions are built and verified in a scratch folder first, then put in place: a
    # failed check leaves nothing behind, not even the other direction.
    with tempfile.TemporaryDirectory(dir=export_dir, prefix=".tmp-export-") as tmp:
        entries = {}
        for direction, generator in (("a2b", restored.gen_g), ("b2a", restored.gen_f)):
            entry = _direction_entry(common, name, direction)
            _verified_saved_model(entry, generator, inputs, tmp, max_side=max_side, log=log)
            if quantizations:
                _verified_tflite(entry, mobile_generator(generator, config.model), inputs, quantizations, tmp,
                                 num_threads=num_threads, log=log)
            entries[entry["name"]] = entry
        for entry in entries.values():
            _put_in_place(entry, tmp, export_dir, saved=("saved_model" in formats))
    write_json(os.path.join(export_dir, MANIFEST_FILE), add_versions(read_manifest(export_dir), entries))
    return entries


def _prepare(export_dir: str, name: str, version: int | None, formats, quantizations, model_names) -> int:
    """Checks the name, the export folder and the version (the next free one when None), and
    that no file of that version exists; creates the folder. Returns the version."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ExportError(f"--name may only use letters, digits, '_', '.', '-'. Received: {name!r}")
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise ExportError(f"--export_dir={export_dir} is a file, not a folder. Give a folder (it is created if needed).")
    manifest = read_manifest(export_dir)  # a damaged manifest is refused before any work
    if version is None:
        version = next_version(export_dir, name)
    if not isinstance(version, int) or version < 1:
        raise ExportError(f"--version must be an integer >= 1. Received: {version!r}")
    for model_name in model_names:
        targets = [os.path.join(export_dir, model_name, str(version))] if "saved_model" in formats else []
        targets += [os.path.join(export_dir, tflite_file(model_name, version, q)) for q in quantizations]
        existing = [t for t in targets if os.path.exists(t)]
        if existing or str(version) in manifest["models"].get(model_name, {}).get("versions", {}):
            raise ExportError(
                f"Version {version} of {model_name} exists already ({existing[0] if existing else 'manifest.json'}); "
                f"versions are immutable (TF Serving and apps cache them): pass another --version (next free: "
                f"{next_version(export_dir, name)}), or leave --version out."
            )
    try:
        os.makedirs(export_dir, exist_ok=True)
    except OSError as e:
        raise ExportError(f"Cannot create --export_dir={export_dir} ({e.strerror or e}).") from e
    return version


def _export_dcgan(workdir: str, export_dir: str, *, formats, quantizations, version, name, num_threads, log) -> dict:
    """A DCGAN run: one generator, SavedModel (generate from seeds or z) and TFLite (z -> image)."""
    restored = restore_dcgan(workdir)
    config, generator = restored.config, restored.generator
    name = name or default_name(config)
    model_name = f"{name}_gen"
    version = _prepare(export_dir, name, version, formats, quantizations, [model_name])
    z = dcgan_export.parity_z(4, config.model.z_dim)
    entry = {
        "name": model_name, "kind": "dcgan", "task": config.data.task, "dataset": config.data.dataset,
        "domain": describe_domains(config)["a"], "global_step": restored.global_step,
        "checkpoint": os.path.abspath(restored.checkpoint_path), "workdir": os.path.abspath(workdir),
        "config": config.to_dict(), "export_size": restored.size, "z_dim": config.model.z_dim, "version": version,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "parity_inputs": "normal noise (4 z)",
        "parameters": generator.count_params(),
    }
    with tempfile.TemporaryDirectory(dir=export_dir, prefix=".tmp-export-") as tmp:
        path = os.path.join(tmp, model_name, "saved_model")
        saved_model.save(dcgan_export.GeneratorModule(generator, name=model_name), path)
        loaded = tf.saved_model.load(path)
        served = loaded.signatures["generate_float"](z=tf.constant(z))["images"].numpy()
        keras_max_abs = float(np.max(np.abs(served - generator(z, training=False).numpy())))
        if not keras_max_abs <= KERAS_TOLERANCE:
            raise ExportError(f"{model_name}: the reloaded SavedModel differs from the Keras generator by "
                              f"{keras_max_abs:.3g} (max abs, tolerance {KERAS_TOLERANCE}).")
        dcgan_export.check_seeds_signature(loaded, config.model.z_dim, model_name)
        log(f"{model_name}: SavedModel matches Keras (max abs {keras_max_abs:.2g})")
        entry["saved_model"] = {"keras_max_abs": keras_max_abs, "signatures": dcgan_export.SIGNATURES}
        entry["_served"] = [served]
        tflite_entries = {}
        concrete = dcgan_export.mobile_function(generator).get_concrete_function()
        for quantization in quantizations:
            content = convert_concrete(concrete, generator, quantization)
            filename = tflite_file(model_name, version, quantization)
            ops = check_builtin_only(content, filename)
            runner = TFLiteRunner(model_content=content, num_threads=num_threads)
            outputs = np.concatenate([runner(z[i:i + 1]) for i in range(len(z))])
            parity = _write_if_parity(content, filename, [served], [outputs], quantization, tmp, log=log)
            tflite_entries[quantization] = {
                "path": filename, "bytes": len(content), "operators": ops, "parity": parity,
                "weights": quantization if quantization != "int8" else "int8 per output channel (dynamic range)",
                "input": {"name": runner.input_name, "dtype": "float32", "shape": [1, config.model.z_dim]},
                "output": {"name": runner.output_name, "dtype": "float32", "shape": [1, restored.size, restored.size, 3],
                           "range": [-1, 1]},
            }
        entry["tflite"] = tflite_entries
        _put_in_place(entry, tmp, export_dir, saved=("saved_model" in formats))
    entries = {model_name: entry}
    write_json(os.path.join(export_dir, MANIFEST_FILE), add_versions(read_manifest(export_dir), entries))
    return entries


def _direction_entry(common: dict, name: str, direction: str) -> dict:
    domains = common["domains"]
    source, target = (domains["a"], domains["b"]) if direction == "a2b" else (domains["b"], domains["a"])
    return {**common, "name": f"{name}_{direction}", "direction": direction,
            "generator": "gen_g" if direction == "a2b" else "gen_f", "from_domain": source, "to_domain": target}


def _verified_saved_model(entry: dict, generator, inputs, tmp: str, *, max_side: int, log) -> None:
    """Saves the SavedModel into tmp/<model name>/saved_model and checks it against Keras; fills entry."""
    model_name, sizes = entry["name"], [tuple(s) for s in entry["check_sizes"]]
    path = os.path.join(tmp, model_name, "saved_model")
    saved_model.save(ServingModule(generator, name=model_name, max_side=max_side), path)
    loaded = tf.saved_model.load(path)
    run_saved = saved_model.float_translator(loaded)
    entry["_served"] = [run_saved(x) for x in inputs]  # the TFLite files' reference
    expected = [keras_reference(generator, x) for x in inputs]
    keras_max_abs = max(float(np.max(np.abs(s - e))) for s, e in zip(entry["_served"], expected))
    if not keras_max_abs <= KERAS_TOLERANCE:
        raise ExportError(
            f"{model_name}: the reloaded SavedModel differs from the Keras generator by {keras_max_abs:.3g} "
            f"(max abs, tolerance {KERAS_TOLERANCE}) at sizes {sizes}."
        )
    saved_model.check_other_signatures(loaded, inputs[1], model_name)
    log(f"{model_name}: SavedModel matches Keras (max abs {keras_max_abs:.2g} at sizes {sizes})")
    entry["parameters"] = generator.count_params()
    entry["saved_model"] = {"keras_max_abs": keras_max_abs, "signatures": saved_model.SIGNATURES}


def _verified_tflite(entry: dict, mobile, inputs, quantizations, tmp: str, *, num_threads, log) -> None:
    """Converts each quantization into tmp/ and checks it against the SavedModel; fills entry["tflite"]."""
    model_name, sizes, version = entry["name"], [tuple(s) for s in entry["check_sizes"]], entry["version"]
    tflite_entries, contents = {}, {}
    for quantization in quantizations:
        content = contents[quantization] = convert_tflite(mobile, quantization, float32_content=contents.get("float32"))
        filename = tflite_file(model_name, version, quantization)
        ops = check_builtin_only(content, filename)
        runner = TFLiteRunner(model_content=content, num_threads=num_threads)
        outputs = [runner(x) for x in inputs]  # export size first, then a resize
        parity = _write_if_parity(
            content, filename, entry["_served"], outputs, quantization, tmp, log=log, where=f" at sizes {sizes}",
            advice=" or check the weights." + (
                " This model loses too much in 8 bits: ship the float16 file (same accuracy as "
                "float32, half its size). Weights that are barely trained quantize worse than "
                "trained ones; --parity_images checks on your own photos." if quantization == "int8" else ""))
        tflite_entries[quantization] = {
            "path": filename, "bytes": len(content), "operators": ops, "parity": parity,
            "weights": TFLITE_WEIGHTS[quantization],
            "input": {"name": runner.input_name, "dtype": "float32", "shape": [-1, -1, -1, 3], "range": [-1, 1]},
            "output": {"name": runner.output_name, "dtype": "float32", "shape": [-1, -1, -1, 3], "range": [-1, 1]},
        }
    entry["tflite"] = tflite_entries


def _write_if_parity(content: bytes, filename: str, served, outputs, quantization: str, tmp: str, *, log,
                     where: str = "", advice: str = ".") -> dict:
    """The parity gate of a TFLite file: measured against the SavedModel's outputs, refused in words
    (nothing written) below its bound, else written into tmp. Returns the parity figures."""
    parity = measure_parity(served, outputs, quantization)
    figure = f"max abs {parity['max_abs']:.3g}" if parity["metric"] == "max_abs" else f"PSNR {parity['psnr_db']} dB"
    if not parity["passed"]:
        raise ExportError(
            f"{filename} failed its parity check against the SavedModel: {figure}{where}, bound "
            f"{'<=' if parity['metric'] == 'max_abs' else '>='} {parity['bound']}. Nothing was written; export "
            f"without this quantization (--tflite_quantization){advice}"
        )
    log(f"{filename}: {len(content) / 1e6:.2f} MB, builtin ops only, {figure} vs SavedModel")
    with open(os.path.join(tmp, filename), "wb") as f:
        f.write(content)
    return parity


def _put_in_place(entry: dict, tmp: str, export_dir: str, *, saved: bool) -> None:
    """Moves a verified model version from tmp/ into export_dir (the SavedModel last, by rename)."""
    entry.pop("_served")
    model_name = entry["name"]
    for item in entry.get("tflite", {}).values():
        os.replace(os.path.join(tmp, item["path"]), os.path.join(export_dir, item["path"]))
    saved_path = os.path.join(tmp, model_name, "saved_model")
    if saved:
        relative = os.path.join(model_name, str(entry["version"]))
        entry["saved_model"].update({"path": relative,
                                     "variables_bytes": saved_model.directory_bytes(os.path.join(saved_path, "variables"))})
        write_json(os.path.join(saved_path, METADATA_FILE), entry)
        os.makedirs(os.path.join(export_dir, model_name), exist_ok=True)
        os.rename(saved_path, os.path.join(export_dir, relative))
    else:
        entry["reference"] = {"keras_max_abs": entry.pop("saved_model")["keras_max_abs"]}
