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

from tfcyclegan.io import MAX_SIDE, ImageError, read_image, save_png, to_uint8
from tfcyclegan.model.networks import MIN_SIDE
from tfcyclegan.pictures import rows_panel
from tfcyclegan.translate.models import Translator

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
            steps = translate_image(image, translators)
        except ImageError as e:
            summary.failed.append((source, str(e)))
            say(f"error: {source}: {e}")
            continue
        try:
            save_png(steps[-1], destination)
        except OSError as e:  # a folder of that name, no permission, a full disk
            reason = "a folder has that name" if os.path.isdir(destination) else (e.strerror or str(e))
            summary.failed.append((source, f"cannot write {destination} ({reason})"))
            say(f"error: {source}: cannot write {destination} ({reason})")
            continue
        summary.written.append(destination)
        if panel and len(rows) < PANEL_MAX_ROWS:
            rows.append([image, *steps])
    if panel and rows:
        try:
            save_png(rows_panel(rows, ["input", *(t.name for t in translators)], height=PANEL_HEIGHT), panel)
            summary.panel = panel
        except OSError as e:
            summary.failed.append((panel, f"cannot write the panel ({e.strerror or e})"))
            say(f"error: --panel={panel}: cannot write it ({e.strerror or e})")
    return summary
