"""Translate your own photos with a trained or exported generator, or a chain of them.

    python -m tfcyclegan.translate --model=exports/age_a2b/1 --input=me.jpg --output=me_50s.png
    python -m tfcyclegan.translate --model=runs/age --direction=b2a --input=photos/ --output=out/
    python -m tfcyclegan.translate --model=exports/age_a2b.int8.tflite \\
        --chain=exports/gender_a2b --input='photos/*.jpg' --output=out/ --panel=panel.png

--model (and each --chain entry) is a SavedModel version folder (exports/age_a2b/1), a TF Serving
model folder (exports/age_a2b: its highest version), a .tflite file, or a training workdir (its
latest checkpoint; `runs/age:b2a` picks the direction of one chain entry, --direction the default).
The models run in order: --model, then each --chain entry.

Any image size works (the graphs pad to a multiple of 4 and crop back); --size=N resizes each
image so its longer side is N first. Grey, palette and RGBA images are converted to RGB
(transparency over white); EXIF rotation is applied. Outputs are PNGs. A file that cannot be
translated gets an error line naming it, the rest are still processed, and the exit status is 1.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import sys
from typing import Callable, Sequence

import numpy as np

from tfcyclegan.visualize import to_uint8

MAX_SIDE = 1024
PANEL_HEIGHT = 256
PANEL_MAX_ROWS = 16
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ImageError(ValueError):
    """One input cannot be translated (not an image, too large, too small)."""


class ModelSpecError(ValueError):
    """A --model / --chain entry is not something we can load; the message names it."""


@dataclasses.dataclass
class Translator:
    """One translation step. fn: float32 (1, H, W, 3) in [-1, 1] -> the same shape."""

    name: str
    kind: str  # "saved_model", "tflite" or "workdir"
    path: str
    direction: str | None
    fn: Callable[[np.ndarray], np.ndarray]

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
    """The manifest entry written beside an export, or {} when there is none."""
    from tfcyclegan import export_lib

    if kind == "saved_model":
        candidate = os.path.join(path, export_lib.METADATA_FILE)
        if os.path.isfile(candidate):
            with open(candidate) as f:
                return json.load(f)
        return {}
    manifest = os.path.join(os.path.dirname(os.path.abspath(path)), export_lib.MANIFEST_FILE)
    if os.path.isfile(manifest):
        with open(manifest) as f:
            for entry in json.load(f).get("models", {}).values():
                if any(item.get("path") == os.path.basename(path) for item in entry.get("tflite", {}).values()):
                    return entry
    return {}


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
        from tfcyclegan.export_lib import TFLiteRunner

        runner = TFLiteRunner(path, num_threads=num_threads)
        kind, fn = "tflite", runner
    elif os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json")):
        import tensorflow as tf

        from tfcyclegan import export_lib

        restored = export_lib.restore(path)  # CheckpointError names the path
        chosen = wanted or "a2b"
        generator = restored.gen_g if chosen == "a2b" else restored.gen_f

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def run_keras(images):
            padded, height, width = export_lib.pad_to_multiple(images)
            return generator(padded, training=False)[:, :height, :width, :]

        name = f"{os.path.basename(os.path.normpath(path))}_{chosen}"
        return Translator(name, "workdir", path, chosen, lambda x: run_keras(x).numpy())
    elif os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            version_dir = _latest_version_dir(path)
            if version_dir is None:
                raise ModelSpecError(
                    f"--model {spec!r} is not a SavedModel folder (saved_model.pb), a TF Serving model folder "
                    "(numbered versions), a .tflite file or a tfcyclegan workdir (config.json)."
                )
            path = version_dir
        import tensorflow as tf

        loaded = tf.saved_model.load(path)
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
    return Translator(name, kind, path, known, fn)


# -- images ----------------------------------------------------------------------------------


def load_image(path: str, *, size: int | None = None, max_side: int = MAX_SIDE) -> np.ndarray:
    """Reads an image as uint8 (H, W, 3) RGB; --size resizes its longer side to `size`.

    Raises ImageError for files that are not images, and for images whose longer side exceeds
    max_side (checked on the header, before decoding) when no size is given.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    from tfcyclegan.export_lib import MIN_SIDE

    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError("not an image (unknown or unsupported format)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"refused, far too many pixels ({e})") from None
    except OSError as e:
        raise ImageError(f"cannot be read ({e})") from None
    with image:
        width, height = image.size
        if size is None and max(width, height) > max_side:
            raise ImageError(
                f"{width}x{height} is larger than --max_side={max_side}: pass --size=N to translate a copy whose "
                "longer side is N pixels, or raise --max_side (memory grows with the pixel count)"
            )
        try:
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            image = image.convert("RGB")
            if size is not None:
                scale = size / max(image.size)
                target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                image = image.resize(target, Image.Resampling.LANCZOS)
            pixels = np.asarray(image, dtype=np.uint8)
        except OSError as e:  # truncated or corrupt data shows up only when decoding
            raise ImageError(f"cannot be decoded ({e})") from None
    if min(pixels.shape[:2]) < MIN_SIDE:
        raise ImageError(f"{pixels.shape[1]}x{pixels.shape[0]} is smaller than {MIN_SIDE}x{MIN_SIDE} pixels")
    return pixels


def translate_image(image: np.ndarray, translators: Sequence[Translator]) -> list[np.ndarray]:
    """uint8 (H, W, 3) -> [step 1 output, step 2 output, ...], each uint8 (H, W, 3)."""
    x = image.astype(np.float32)[None] / 127.5 - 1.0
    steps = []
    for translator in translators:
        x = np.clip(translator(x), -1.0, 1.0)
        steps.append(to_uint8(x[0]))
    return steps


def make_panel(rows: Sequence[Sequence[np.ndarray]], labels: Sequence[str], height: int = PANEL_HEIGHT):
    """A side-by-side panel: one row per image (input, then each step), a header with labels."""
    from PIL import Image, ImageDraw

    header, gap = 16, 4
    scaled = []
    for row in rows:
        h, w = row[0].shape[:2]
        width = max(1, round(w * height / h))
        scaled.append([Image.fromarray(img).resize((width, height), Image.Resampling.LANCZOS) for img in row])
    column_width = max(img.width for row in scaled for img in row)
    columns = len(labels)
    panel = Image.new("RGB", (columns * column_width + (columns - 1) * gap, header + len(scaled) * (height + gap)), "white")
    draw = ImageDraw.Draw(panel)
    for c, label in enumerate(labels):
        draw.text((c * (column_width + gap) + 2, 2), label, fill="black")
    for r, row in enumerate(scaled):
        for c, img in enumerate(row):
            panel.paste(img, (c * (column_width + gap), header + r * (height + gap)))
    return panel


# -- files -----------------------------------------------------------------------------------


def list_inputs(pattern: str) -> list[str]:
    """A file, every non-hidden file of a folder (sorted), or the files a glob matches."""
    if os.path.isdir(pattern):
        names = sorted(n for n in os.listdir(pattern) if not n.startswith("."))
        return [os.path.join(pattern, n) for n in names if os.path.isfile(os.path.join(pattern, n))]
    if os.path.isfile(pattern):
        return [pattern]
    return sorted(p for p in glob.glob(pattern) if os.path.isfile(p))


def _is_single_file_request(pattern: str, output: str) -> bool:
    return os.path.isfile(pattern) and not os.path.isdir(output) and not output.endswith(os.sep) and bool(os.path.splitext(output)[1])


def output_paths(inputs: Sequence[str], output: str, *, single_file: bool) -> list[str]:
    if single_file:
        return [output]
    taken, out = set(), []
    for path in inputs:
        stem, suffix = os.path.splitext(os.path.basename(path))
        name = f"{stem}.png"
        if name in taken:
            name = f"{stem}_{suffix.lstrip('.') or 'file'}.png"
        counter = 2
        while name in taken:
            name, counter = f"{stem}_{counter}.png", counter + 1
        taken.add(name)
        out.append(os.path.join(output, name))
    return out


@dataclasses.dataclass
class Summary:
    written: list[str]
    failed: list[tuple[str, str]]
    panel: str | None = None


def translate_files(
    inputs: Sequence[str],
    output: str,
    translators: Sequence[Translator],
    *,
    single_file: bool = False,
    size: int | None = None,
    max_side: int = MAX_SIDE,
    panel: str | None = None,
    progress: bool = True,
    report_error: Callable[[str], None] | None = None,
) -> Summary:
    """Translates each input through the chain; one bad file does not stop the others."""
    from PIL import Image
    from tqdm import tqdm

    destinations = output_paths(inputs, output, single_file=single_file)
    os.makedirs(os.path.dirname(os.path.abspath(destinations[0])) if single_file else output, exist_ok=True)
    summary = Summary([], [])
    rows = []
    bar = tqdm(list(zip(inputs, destinations)), unit="img", disable=not progress or len(inputs) < 2, file=sys.stderr)
    say = report_error or (lambda line: tqdm.write(line, file=sys.stderr))
    for source, destination in bar:
        try:
            image = load_image(source, size=size, max_side=max_side)
            steps = translate_image(image, translators)
            Image.fromarray(steps[-1]).save(destination, format="PNG")
        except ImageError as e:
            summary.failed.append((source, str(e)))
            say(f"error: {source}: {e}")
            continue
        summary.written.append(destination)
        if panel and len(rows) < PANEL_MAX_ROWS:
            rows.append([image, *steps])
    if panel and rows:
        make_panel(rows, ["input", *(t.name for t in translators)]).save(panel, format="PNG")
        summary.panel = panel
    return summary


# -- command line ----------------------------------------------------------------------------


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
    flags.mark_flags_as_required(["model", "input", "output"], flag_values=fv)
    return fv


def main(argv: Sequence[str], flag_values=None) -> int:
    """Returns the exit status: 0 all translated, 1 some inputs failed, 2 nothing could run."""
    from absl import flags

    from tfcyclegan.checkpoint import CheckpointError

    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    FLAGS = flag_values if flag_values is not None else flags.FLAGS
    if FLAGS.size is not None and FLAGS.size > FLAGS.max_side:
        print(f"error: --size={FLAGS.size} is larger than --max_side={FLAGS.max_side}.", file=sys.stderr)
        return 2
    inputs = list_inputs(FLAGS.input)
    if not inputs:
        print(f"error: --input={FLAGS.input!r} matches no file.", file=sys.stderr)
        return 2
    single_file = _is_single_file_request(FLAGS.input, FLAGS.output)
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
    summary = translate_files(
        inputs, FLAGS.output, translators, single_file=single_file, size=FLAGS.size,
        max_side=FLAGS.max_side, panel=FLAGS.panel,
    )
    steps = " -> ".join(t.name for t in translators)
    target = summary.written[0] if single_file and summary.written else FLAGS.output
    line = f"translated {len(summary.written)} of {len(inputs)} images ({steps}) into {target}"
    if summary.failed:
        line += f"; {len(summary.failed)} failed: " + ", ".join(os.path.basename(p) for p, _ in summary.failed)
    if summary.panel:
        line += f"; panel: {summary.panel}"
    print(line)
    return 1 if summary.failed else 0


def run() -> None:
    """Console entry point (tfcyclegan-translate and python -m tfcyclegan.translate)."""
    from absl import app, logging

    define_flags()
    logging.set_verbosity(logging.WARNING)
    app.run(main)


if __name__ == "__main__":
    run()
