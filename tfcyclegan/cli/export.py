"""tfcyclegan-export (and python export.py): a trained run for TF Serving (SavedModel) and phones (TFLite).

    tfcyclegan-export --workdir=runs/age --export_dir=exports
    tfcyclegan-export --workdir=runs/age --formats=tflite --tflite_quantization=float16,int8

Writes exports/<name>_a2b/<version>/ and exports/<name>_b2a/<version>/ (the layout TF Serving
loads), exports/<name>_<direction>.v<version>.<quantization>.tflite and exports/manifest.json
(every version's entry). No file of an earlier version is ever replaced. Every file is
verified before it is written (reload vs Keras, TFLite vs SavedModel). Exit status: 0 exported,
1 a check or the checkpoint failed (the message names the file and the figure), 2 bad flags.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags, logging

from tfcyclegan.cli import run_command


def define_flags() -> None:
    flags.DEFINE_string("workdir", None, "The training workdir (config.json and checkpoints/).")
    flags.DEFINE_string("export_dir", "exports", "Where to write the exports and manifest.json.")
    flags.DEFINE_list("formats", ["saved_model", "tflite"], "saved_model and/or tflite.")
    flags.DEFINE_list("tflite_quantization", ["float32", "float16", "int8"], "TFLite files: float32, float16, int8.")
    flags.DEFINE_integer("version", None, "SavedModel version folder (default: the next free number).", lower_bound=1)
    flags.DEFINE_string("name", None, "Model name prefix (default: the run's task or dataset name).")
    flags.DEFINE_integer("size", None, "Export/check size in pixels (default: the run's last stage size).", lower_bound=8)
    flags.DEFINE_list("parity_images", [], "Photos for the parity checks (default: synthetic images).")
    flags.DEFINE_integer("threads", None, "CPU threads for the TFLite checks (default: all cores).", lower_bound=1)
    flags.DEFINE_integer("max_side", 2048, "Longest image side the SavedModel's signatures accept; larger images are "
                         "refused before any large allocation (memory grows with the pixel count).", lower_bound=8)
    flags.mark_flag_as_required("workdir")


def main(argv) -> int:
    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # TensorFlow's SavedModel writer logs every step at INFO
    # Imported here so --help answers without loading TensorFlow.
    from tfcyclegan.export import ExportError, export
    from tfcyclegan.model.workdir import CheckpointError

    try:
        entries = export(
            FLAGS.workdir,
            FLAGS.export_dir,
            formats=FLAGS.formats,
            quantizations=FLAGS.tflite_quantization,
            version=FLAGS.version,
            name=FLAGS.name,
            size=FLAGS.size,
            parity_images=FLAGS.parity_images or None,
            num_threads=FLAGS.threads,
            max_side=FLAGS.max_side,
            log=lambda line: print(line, file=sys.stderr),
        )
    except (CheckpointError, ExportError) as e:
        print(f"export.py: {e}", file=sys.stderr)
        return 1
    summary = {
        name: {
            "saved_model": entry.get("saved_model", {}).get("path"),
            "tflite": {q: item["path"] for q, item in entry.get("tflite", {}).items()},
            "global_step": entry["global_step"],
        }
        for name, entry in entries.items()
    }
    print(json.dumps({"export_dir": FLAGS.export_dir, "models": summary}, indent=2))
    return 0


def run() -> None:
    """Console entry point: tfcyclegan-export, python export.py, python -m tfcyclegan.cli.export."""
    run_command(define_flags, main)


if __name__ == "__main__":
    run()
