"""tfcyclegan-translate: your own photos through a trained or exported generator, or a chain.

    tfcyclegan-translate --model=exports/age_a2b/1 --input=me.jpg --output=me_50s.png
    tfcyclegan-translate --model=runs/age --direction=b2a --input=photos/ --output=out/
    tfcyclegan-translate --model=exports/age_a2b.int8.tflite \
        --chain=exports/gender_a2b --input='photos/*.jpg' --output=out/ --panel=panel.png

--model (and each --chain entry) is a SavedModel version folder, a TF Serving model folder (its
highest version), a .tflite file, or a training workdir (`runs/age:b2a` picks the direction of one
chain entry, --direction the default). The models run in order: --model, then each --chain entry.

Any image size works (the graphs pad to a multiple of 4 and crop back); --size=N resizes each
image so its longer side is N first. Grey, palette and RGBA images are converted to RGB
(transparency over white); EXIF rotation is applied. Outputs are PNGs.

Real photos (--faces, docs/faces.md): every face is found, aligned like the training crops,
translated at the model's training size and blended back; the rest of the photo is untouched.
It is on by default for models trained on face crops (UTKFace, synthetic) and off for folder
datasets. --faces=auto translates a photo without a usable face whole; with --faces=on such a
photo fails (named, with how many faces were seen and why each was skipped) and the others go on.

Exit status: 0 all translated, 1 some inputs failed (each named on its own line, the rest still
translated; a photo without a usable face under --faces=on is one of them), 2 nothing could run
(bad flags, no input, a model that cannot be loaded).
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from tfcyclegan.cli import run_command
from tfcyclegan.io import MAX_SIDE


def define_flags(flag_values=None):
    """Defines this command's flags on `flag_values` (absl's global FLAGS by default)."""
    from absl import flags

    fv = flag_values if flag_values is not None else flags.FLAGS
    flags.DEFINE_string("model", None, "SavedModel folder, TF Serving model folder, .tflite file or workdir[:a2b|:b2a].", flag_values=fv)
    flags.DEFINE_string("input", None, "An image file, a folder of images, or a glob such as 'photos/*.jpg'.", flag_values=fv)
    flags.DEFINE_string("output", None, "A .png file (for one input file) or a folder.", flag_values=fv)
    flags.DEFINE_enum("direction", None, ["a2b", "b2a"], "Direction for workdirs (default a2b); checked against exports.", flag_values=fv)
    flags.DEFINE_list("chain", [], "More models applied after --model, in order (same forms as --model).", flag_values=fv)
    flags.DEFINE_integer("size", None, "Resize each image so its longer side is this many pixels first.", lower_bound=8, flag_values=fv)
    flags.DEFINE_string("panel", None, "Also write a side-by-side panel PNG (input, then each step).", flag_values=fv)
    flags.DEFINE_integer("max_side", MAX_SIDE, "Refuse images whose longer side is larger (unless --size is given).", lower_bound=8, flag_values=fv)
    flags.DEFINE_integer("threads", None, "CPU threads for TFLite models (default: all cores).", lower_bound=1, flag_values=fv)
    flags.DEFINE_enum("faces", None, ["off", "on", "auto"],
                      "Translate each face (found, aligned like the training crops, blended back) instead of the whole "
                      "image. Default: on for models trained on face crops (UTKFace, synthetic), off for folder "
                      "datasets. auto: a photo without a usable face is translated whole.", flag_values=fv)
    flags.DEFINE_integer("min_face", 40, "--faces: skip faces smaller than this (the detector box's longer side, pixels).",
                         lower_bound=12, flag_values=fv)
    flags.DEFINE_integer("max_faces", 10, "--faces: translate at most this many faces per photo (the largest).",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_boolean("faces_debug", False, "--faces: also write <output>.faces.png (the detections) and "
                         "<output>.face<i>.png (each aligned crop and its translation) beside each output.", flag_values=fv)
    flags.mark_flags_as_required(["model", "input", "output"], flag_values=fv)
    return fv


def main(argv: Sequence[str], flag_values=None) -> int:
    """Returns the exit status: 0 all translated, 1 some inputs failed, 2 nothing could run."""
    from absl import flags

    # Imported here so --help and flag errors answer without loading TensorFlow.
    from tfcyclegan.model.workdir import CheckpointError
    from tfcyclegan.translate.files import (
        FaceOptions,
        OutputError,
        is_single_file_request,
        list_inputs,
        translate_files,
    )
    from tfcyclegan.translate.models import ModelSpecError, load_translator

    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    FLAGS = flag_values if flag_values is not None else flags.FLAGS
    if FLAGS.size is not None and FLAGS.size > FLAGS.max_side:
        print(f"error: --size={FLAGS.size} is larger than --max_side={FLAGS.max_side}.", file=sys.stderr)
        return 2
    inputs, skipped = list_inputs(FLAGS.input)
    for path in skipped:
        print(f"warning: {path}: skipped, a broken link or a link loop", file=sys.stderr)
    if not inputs:
        print(f"error: --input={FLAGS.input!r} matches no file.", file=sys.stderr)
        return 2
    single_file = is_single_file_request(FLAGS.input, FLAGS.output)
    if single_file and not FLAGS.output.lower().endswith(".png"):
        print(f"error: --output={FLAGS.output!r}: outputs are PNGs; give a .png file or a folder.", file=sys.stderr)
        return 2
    try:
        translators = [
            load_translator(spec, direction=FLAGS.direction, num_threads=FLAGS.threads)
            for spec in [FLAGS.model, *FLAGS.chain]
        ]
    except (ModelSpecError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mode = FLAGS.faces or ("on" if translators[0].trained_on_faces else "off")
    if mode == "off" and FLAGS.faces_debug:
        print(f"warning: --faces_debug does nothing with --faces=off ({translators[0].name} was trained on "
              f"{translators[0].dataset or 'an unknown dataset'}; pass --faces=on or auto)", file=sys.stderr)
    faces = None
    if mode != "off":
        try:
            faces = FaceOptions.for_model(translators[0], mode, min_face=FLAGS.min_face, max_faces=FLAGS.max_faces,
                                          debug=FLAGS.faces_debug)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    try:
        summary = translate_files(
            inputs, FLAGS.output, translators, single_file=single_file, size=FLAGS.size,
            max_side=FLAGS.max_side, panel=FLAGS.panel, faces=faces,
        )
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    steps = " -> ".join(t.name for t in translators)
    target = summary.written[0] if single_file and summary.written else FLAGS.output
    line = f"translated {len(summary.written)} of {len(inputs)} images ({steps}) into {target}"
    if faces is not None:
        line += f"; --faces={mode}: {summary.faces} face{'s' if summary.faces != 1 else ''} translated"
        from tfcyclegan.faces.photos import describe_skipped

        left = sum(summary.skipped.values())
        if left:
            line += f", {left} left as they are ({describe_skipped(summary.skipped, min_face=FLAGS.min_face)})"
        if summary.no_face:
            line += f", {len(summary.no_face)} photo{'s' if len(summary.no_face) != 1 else ''} without a usable face"
            line += " (translated whole)" if mode == "auto" else ""
    if summary.failed:
        line += f"; {len(summary.failed)} failed: " + ", ".join(os.path.basename(p) for p, _ in summary.failed)
    if skipped:
        line += f"; {len(skipped)} skipped (broken links or link loops)"
    if summary.panel:
        line += f"; panel: {summary.panel}"
    print(line)
    return 1 if summary.failed else 0


def run() -> None:
    """Console entry point: tfcyclegan-translate, python -m tfcyclegan.cli.translate."""
    run_command(define_flags, main, absl_warnings_only=True)


if __name__ == "__main__":
    run()
