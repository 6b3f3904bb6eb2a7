"""Translating files: one image through a chain of translators, a batch of files, a panel.

A file that cannot be translated gets an error line naming it and the rest are still processed.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import sys
from typing import Callable, Sequence

import numpy as np

from tfcyclegan.faces import NoFaceError, debug_picture, training_view, translate_faces
from tfcyclegan.faces.photos import describe_skipped
from tfcyclegan.io import MAX_SIDE, ImageError, read_image, save_png, to_uint8
from tfcyclegan.model.networks import MIN_SIDE
from tfcyclegan.pictures import rows_panel
from tfcyclegan.translate.models import Translator

FACES_MODES = ("off", "on", "auto")

PANEL_HEIGHT = 256
PANEL_MAX_ROWS = 16


class OutputError(ValueError):
    """--output cannot be used at all (a file where a folder is needed, no permission)."""


def translate_image(image: np.ndarray, translators: Sequence[Translator]) -> list[np.ndarray]:
    """uint8 (H, W, 3) -> [step 1 output, step 2 output, ...], each uint8 (H, W, 3)."""
    x = image.astype(np.float32)[None] / 127.5 - 1.0
    steps = []
    for translator in translators:
        x = np.clip(translator(x), -1.0, 1.0)
        steps.append(to_uint8(x[0]))
    return steps


@dataclasses.dataclass
class FaceOptions:
    """--faces and its options. mode: "on" (a photo without a usable face fails), "auto" (it is
    translated whole instead); crop_size: the first model's training size; view: the part of a
    UTKFace crop it saw (tfcyclegan.faces.training_view); debug: write the detections and the
    aligned crops beside each output."""

    mode: str
    crop_size: int
    view: float
    min_face: int = 40
    max_faces: int = 10
    debug: bool = False
    detector: object = None  # default: tfcyclegan.faces.get_detector()

    @classmethod
    def for_model(cls, translator: Translator, mode: str, **kwargs) -> "FaceOptions":
        """Options with the crop size and view of the run that trained `translator`; ValueError
        when its training size is unknown (an export without its metadata)."""
        if not translator.size:
            raise ValueError(f"--faces={mode}: the training size of {translator.path} is unknown (its export metadata is "
                             "missing), so faces cannot be cropped like its training images; pass --faces=off.")
        return cls(mode, translator.size, training_view(translator.preprocess or "resize_and_crop", translator.size), **kwargs)


class _Chain:
    """The chain as one function, float32 (1, S, S, 3) in [-1, 1] -> the same, that keeps each call's
    steps as uint8 crops (for the panel)."""

    def __init__(self, translators: Sequence[Translator]):
        self.translators = translators
        self.steps: list[list[np.ndarray]] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        steps = []
        for translator in self.translators:
            x = np.clip(translator(x), -1.0, 1.0)
            steps.append(to_uint8(x[0]))
        self.steps.append(steps)
        return x


def list_inputs(pattern: str) -> tuple[list[str], list[str]]:
    """(files, skipped): a file, every non-hidden file of a folder (sorted), or the files a glob
    matches; skipped are the entries that look like files but cannot be opened (broken links,
    link loops). Sub-folders are not inputs and are not counted."""
    if os.path.isdir(pattern):
        candidates = [os.path.join(pattern, n) for n in sorted(os.listdir(pattern)) if not n.startswith(".")]
    elif os.path.isfile(pattern):
        return [pattern], []
    else:
        candidates = sorted(glob.glob(pattern))
    files = [p for p in candidates if os.path.isfile(p)]
    skipped = [p for p in candidates if os.path.islink(p) and not os.path.exists(p)]
    return files, skipped


def is_single_file_request(pattern: str, output: str) -> bool:
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
    """written: output files; failed: (input, reason); panel: the panel's path when written.
    With --faces: faces, the faces translated; skipped, {reason: count} over all inputs;
    no_face, the inputs without a usable face (failed with --faces=on, translated whole with auto)."""

    written: list[str]
    failed: list[tuple[str, str]]
    panel: str | None = None
    faces: int = 0
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)
    no_face: list[str] = dataclasses.field(default_factory=list)


def _debug_files(destination: str, image: np.ndarray, result, say, rejected=()) -> None:
    """<stem>.faces.png (the detections drawn on the photo) and <stem>.face<i>.png (each aligned
    crop, then its translation) beside the output; a file that cannot be written is a warning."""
    stem = os.path.splitext(destination)[0]
    try:
        save_png(debug_picture(image, result, rejected), f"{stem}.faces.png")
        for i, face in enumerate(result.faces if result is not None else []):
            save_png(np.concatenate([face.before, face.after], axis=1), f"{stem}.face{i}.png")
    except OSError as e:
        say(f"warning: --faces_debug: cannot write beside {destination} ({e.strerror or e})")


def _translate_photo(source, destination, image, translators, faces: FaceOptions, summary: Summary, say):
    """(output image, panel rows) for one photo with --faces; raises NoFaceError under --faces=on."""
    chain = _Chain(translators)
    try:
        result = translate_faces(image, chain, crop_size=faces.crop_size, min_face=faces.min_face,
                                 max_faces=faces.max_faces, detector=faces.detector, view=faces.view)
    except NoFaceError as e:
        summary.no_face.append(source)
        for reason, count in e.skipped.items():
            summary.skipped[reason] = summary.skipped.get(reason, 0) + count
        if faces.debug:
            _debug_files(destination, image, None, say, e.rejected)
        if faces.mode != "auto":
            raise NoFaceError(f"{e}; no output written (--faces=auto translates such photos whole, --faces=off "
                              "always does)", skipped=e.skipped, rejected=e.rejected) from None
        say(f"warning: {source}: {e}; translated the whole image instead (--faces=auto)")
        steps = translate_image(image, translators)
        return steps[-1], [[image, *steps]]
    summary.faces += len(result.faces)
    for reason, count in result.skipped.items():
        summary.skipped[reason] = summary.skipped.get(reason, 0) + count
    left = sum(result.skipped.values())
    if left:
        words = describe_skipped(result.skipped, min_face=faces.min_face)
        say(f"note: {source}: {len(result.faces)} face{'s' if len(result.faces) != 1 else ''} translated, "
            f"{left} left as {'they are' if left > 1 else 'it is'} ({words})")
    if faces.debug:
        _debug_files(destination, image, result, say)
    return result.image, [[face.before, *steps] for face, steps in zip(result.faces, chain.steps)]


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
    faces: FaceOptions | None = None,
) -> Summary:
    """Translates each input through the chain; one bad file does not stop the others.

    faces: translate the faces of each photo (tfcyclegan.faces.translate_faces) instead of the
    whole image; the panel then shows each face's aligned crop and its translation per step.
    """
    from tqdm import tqdm

    destinations = output_paths(inputs, output, single_file=single_file)
    folder = os.path.dirname(os.path.abspath(destinations[0])) if single_file else output
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        what = "is a file, not a folder" if os.path.exists(folder) and not os.path.isdir(folder) else f"cannot be created ({e.strerror or e})"
        raise OutputError(f"--output={output}: {folder} {what}. Give a folder for several inputs, or a .png file for one.") from e
    summary = Summary([], [])
    rows = []
    bar = tqdm(list(zip(inputs, destinations)), unit="img", disable=not progress or len(inputs) < 2, file=sys.stderr)
    say = report_error or (lambda line: tqdm.write(line, file=sys.stderr))
    for source, destination in bar:
        try:
            image = read_image(source, size=size, max_side=max_side, min_side=MIN_SIDE)
            if faces is not None:
                output, new_rows = _translate_photo(source, destination, image, translators, faces, summary, say)
            else:
                steps = translate_image(image, translators)
                output, new_rows = steps[-1], [[image, *steps]]
        except ImageError as e:  # NoFaceError is one
            summary.failed.append((source, str(e)))
            say(f"error: {source}: {e}")
            continue
        try:
            save_png(output, destination)
        except OSError as e:  # a folder of that name, no permission, a full disk
            reason = "a folder has that name" if os.path.isdir(destination) else (e.strerror or str(e))
            summary.failed.append((source, f"cannot write {destination} ({reason})"))
            say(f"error: {source}: cannot write {destination} ({reason})")
            continue
        summary.written.append(destination)
        if panel:
            rows.extend(r for r in new_rows if len(r) == len(translators) + 1)
            del rows[PANEL_MAX_ROWS:]
    if panel and rows:
        first = "face" if faces is not None else "input"
        try:
            save_png(rows_panel(rows, [first, *(t.name for t in translators)], height=PANEL_HEIGHT), panel)
            summary.panel = panel
        except OSError as e:
            summary.failed.append((panel, f"cannot write the panel ({e.strerror or e})"))
            say(f"error: --panel={panel}: cannot write it ({e.strerror or e})")
    return summary
