"""The evaluation report: report.json, index.html, translation panels and loss curves (PNG).

    <output>/report.json       every figure, the config, the checkpoint step, software versions
    <output>/index.html        metrics table (translated beside the untranslated baseline),
                               warnings, the panels and the loss curves; opens from disk
    <output>/panel_a2b.png     input | translated | reconstructed ("cycled") triplets, A -> B -> A
    <output>/panel_b2a.png     the same for B -> A -> B
    <output>/loss_curves.png   every scalar in <workdir>/logs (TensorBoard), one plot per tag
    <output>/spectra.png       mean log power spectra: real B | translated A->B | real A | translated B->A

Nothing here computes a metric; tfcyclegan.eval.evaluate builds the report dict.
"""

from __future__ import annotations

import html
import math
import os
import platform
import sys
from typing import Any, Mapping, Sequence

import numpy as np

from tfcyclegan import pictures
from tfcyclegan.eval import artefacts as artefacts_lib
from tfcyclegan.io import save_png, write_json, write_text

REPORT_FILE = "report.json"
INDEX_FILE = "index.html"
LOSS_CURVES_FILE = "loss_curves.png"
SPECTRA_FILE = "spectra.png"
DIRECTION_TITLES = {"a2b": "A \u2192 B", "b2a": "B \u2192 A"}


def panel_file(direction: str) -> str:
    return f"panel_{direction}.png"


def software_versions() -> dict[str, str]:
    """Versions of Python and of the libraries that shape the numbers."""
    import importlib.metadata

    import tfcyclegan

    out = {"python": sys.version.split()[0], "platform": platform.platform(), "tfcyclegan": tfcyclegan.__version__}
    for name, dist in (
        ("tensorflow", ("tensorflow-cpu", "tensorflow")), ("keras", ("keras",)), ("numpy", ("numpy",)),
        ("scipy", ("scipy",)), ("pillow", ("pillow",)), ("matplotlib", ("matplotlib",)),
    ):
        for candidate in dist:
            try:
                out[name] = importlib.metadata.version(candidate)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return out


# -- TensorBoard scalars ----------------------------------------------------------------------------


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the TensorBoard event files under `logdir` (recursively).

    Returns {tag: [(step, value), ...] sorted by step}; tags from a subdirectory are prefixed
    with it ("eval/fid"). Both TF2 tensor summaries and TF1 simple values are read; a truncated
    last record (training still writing) ends that file quietly. A missing logdir gives {}.
    """
    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2

    scalars: dict[str, dict[int, float]] = {}
    if not os.path.isdir(logdir):
        return {}
    for root, _, files in sorted(os.walk(logdir)):
        prefix = os.path.relpath(root, logdir)
        prefix = "" if prefix == "." else prefix.replace(os.sep, "/") + "/"
        for name in sorted(files):
            if "tfevents" not in name:
                continue
            records = tf.data.TFRecordDataset(os.path.join(root, name)).as_numpy_iterator()
            while True:
                try:
                    record = next(records)
                except StopIteration:
                    break
                except tf.errors.DataLossError:
                    break
                event = event_pb2.Event.FromString(record)
                for value in event.summary.value:
                    number = _scalar_value(value)
                    if number is not None:
                        scalars.setdefault(prefix + value.tag, {})[int(event.step)] = number
    return {tag: sorted(points.items()) for tag, points in sorted(scalars.items())}


def _scalar_value(value) -> float | None:
    if value.HasField("simple_value"):
        return float(value.simple_value)
    if value.HasField("tensor"):
        from tensorboard.util import tensor_util

        array = tensor_util.make_ndarray(value.tensor)
        if array.size == 1 and np.issubdtype(array.dtype, np.number):
            return float(array.reshape(()))
    return None


# -- report files --------------------------------------------------------------------------------


def write_report(
    output_dir: str,
    report: dict[str, Any],
    panels: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    scalars: Mapping[str, Sequence[tuple[int, float]]],
    *,
    spectra: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, str]:
    """Writes the panels, loss curves, report.json and index.html into output_dir.

    report: the dict from `tfcyclegan.evaluate` (see `render_html` for the keys it reads);
      report["files"] is filled in here with the relative names of what was written.
    panels: {"a2b" | "b2a": (inputs, translated, reconstructed)} float32 in [-1, 1].
    spectra: {"a2b" | "b2a": (real target, translated) mean power spectra}, drawn side by side.
    Returns {kind: absolute path}.
    """
    os.makedirs(output_dir, exist_ok=True)
    files: dict[str, str] = {}
    for direction, (inputs, translated, reconstructed) in panels.items():
        name = panel_file(direction)
        save_png(pictures.triplet_panel(inputs, translated, reconstructed), os.path.join(output_dir, name), optimize=True)
        files[f"panel_{direction}"] = name
    if spectra:
        save_png(artefacts_lib.log_spectrum_image([s for pair in spectra.values() for s in pair]),
                 os.path.join(output_dir, SPECTRA_FILE), optimize=True)
        files["spectra"] = SPECTRA_FILE
    title = f"{report.get('workdir', '')} (step {report.get('checkpoint', {}).get('global_step', '?')})"
    if pictures.plot_curves(scalars, os.path.join(output_dir, LOSS_CURVES_FILE), title=title):
        files["loss_curves"] = LOSS_CURVES_FILE
    files["report"] = REPORT_FILE
    files["index"] = INDEX_FILE
    report["files"] = files
    write_json(os.path.join(output_dir, REPORT_FILE), jsonable(report))
    write_text(os.path.join(output_dir, INDEX_FILE), render_html(report))
    return {kind: os.path.join(output_dir, name) for kind, name in files.items()}


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)  # paths and other objects from data stats


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "\u2014"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.1f}"
    return html.escape(str(value))


def _kid_text(kid: Mapping[str, Any] | None) -> str:
    if not kid:
        return "\u2014"
    text = f"{kid['mean'] * 1000:.3g}"
    if kid.get("subsets", 1) > 1:
        text += f" \u00b1 {kid['std'] * 1000:.2g}"
    return text


def _percent(value) -> str:
    return "\u2014" if value is None else f"{100 * value:.1f} %"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f2f2f2; }
.warn { background: #fff4e0; border: 1px solid #e0a040; padding: 0.6em 1em; margin: 1em 0; }
.danger { background: #ffe6e6; border: 1px solid #d04040; padding: 0.6em 1em; margin: 1em 0; font-weight: bold; }
.muted { color: #666; font-size: 0.9em; }
img { max-width: 100%; border: 1px solid #ddd; }
"""


def _group_tables(directions: Mapping[str, Any]) -> list[str]:
    """Flip rates per race / gender, one table per label and direction."""
    parts = []
    for direction, m in directions.items():
        for key in ("by_race", "by_gender"):
            groups = (m.get("flip_rate") or {}).get(key)
            if not groups:
                continue
            title = f"{DIRECTION_TITLES.get(direction, direction)} flip rate by {key[3:]}"
            parts.append(f"<h3>{html.escape(title)}</h3><table><thead><tr><th>group</th><th>images</th>"
                         "<th>translated</th><th>untranslated</th><th>oracle on real target</th></tr></thead><tbody>")
            for name, g in groups.items():
                parts.append(f"<tr><td>{html.escape(name)}</td><td>{g['count']}</td><td>{_percent(g['translated'])}</td>"
                             f"<td>{_percent(g['untranslated'])}</td><td>{_percent(g['oracle_on_real_target'])} "
                             f"({g['target_count']})</td></tr>")
            parts.append("</tbody></table>")
    return parts


def render_html(report: Mapping[str, Any]) -> str:
    """index.html for a report dict (keys: workdir, checkpoint, data, feature_extractor, oracle,
    directions, warnings, files, created)."""
    esc = html.escape
    directions = report.get("directions", {})
    data = report.get("data", {})
    checkpoint = report.get("checkpoint", {})
    files = report.get("files", {})
    features = report.get("feature_extractor") or {}
    oracle = report.get("oracle")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>tfcyclegan evaluation: {esc(str(report.get('workdir', '')))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Evaluation of {esc(str(report.get('workdir', '')))}</h1>",
        '<p class="muted">'
        f"checkpoint {esc(str(checkpoint.get('path', '')))} (global step {esc(str(checkpoint.get('global_step', '?')))}); "
        f"dataset {esc(str(data.get('dataset', '')))}, task {esc(str(data.get('task', '')))}, "
        f"split {esc(str(data.get('split', '')))}, {esc(str(data.get('size', '')))} px, "
        f"{esc(str(data.get('count_a', '')))} A / {esc(str(data.get('count_b', '')))} B images; "
        f"created {esc(str(report.get('created', '')))}</p>",
    ]
    if features.get("random_weights"):
        parts.append(f'<div class="danger">Inception weights: {esc(str(features.get("weights")))}</div>')
    warnings = report.get("warnings", [])
    if warnings:
        parts.append('<div class="warn"><b>Warnings</b><ul>' + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul></div>")

    parts.append("<h2>Metrics</h2>")
    header = "".join(
        f"<th>{esc(DIRECTION_TITLES.get(d, d))} translated</th><th>{esc(DIRECTION_TITLES.get(d, d))} untranslated</th>"
        for d in directions
    )
    parts.append(f"<table><thead><tr><th>metric</th>{header}</tr></thead><tbody>")
    flip = lambda m: m.get("flip_rate") or {}
    art = lambda m: m.get("artefacts") or {}
    only_translated = lambda value: lambda m, k: value(m) if k == "translated" else "\u2014"
    rows = []
    if any(m.get("fid") for m in directions.values()):
        rows += [
            ("FID \u2193 (vs real target)", lambda m, k: _fmt((m.get("fid") or {}).get(k), 4)),
            ("KID \u00d7 1000 \u2193 (vs real target)", lambda m, k: _kid_text((m.get("kid") or {}).get(k))),
        ]
    rows += [
        ("flip rate \u2191 (oracle calls it the target domain)", lambda m, k: _percent(flip(m).get(k))),
        ("oracle on real target images (the ceiling)", only_translated(lambda m: _percent(flip(m).get("oracle_on_real_target")))),
        ("flip rate / ceiling \u2191", only_translated(lambda m: _fmt(flip(m).get("relative"), 3))),
        ("cycle L1 \u2193 (source \u2192 target \u2192 source)", only_translated(lambda m: _fmt(m.get("cycle_l1")))),
        ("identity L1 \u2193 (generator on target images)", only_translated(lambda m: _fmt(m.get("identity_l1")))),
        ("artefact ratio \u2193 (checkerboard power / real target's; aim \u2264 "
         f"{artefacts_lib.ARTEFACT_RATIO_AIM:.2f})", only_translated(lambda m: _fmt(art(m).get("artefact_ratio"), 3))),
        ("sharpness ratio (detail / real target's; below 1 is blurrier)", only_translated(lambda m: _fmt(art(m).get("sharpness_ratio"), 3))),
    ]
    for label, cell in rows:
        cells = "".join(f"<td>{cell(m, 'translated')}</td><td>{cell(m, 'untranslated')}</td>" for m in directions.values())
        parts.append(f"<tr><td>{esc(label)}</td>{cells}</tr>")
    parts.append("</tbody></table>")
    note = ('"Untranslated" compares the source images themselves with the target domain: '
            "the distance translation has to close. L1 errors are on the [-1, 1] scale.")
    if features:
        note += (f" Features: {esc(str(features.get('model', '')))}, weights {esc(str(features.get('weights', '')))}; "
                 f"{esc(str(features.get('resize', '')))}.")
    else:
        note += " No FID or KID (--inception_weights=none)."
    parts.append(f'<p class="muted">{note}</p>')
    if oracle:
        parts.append(
            '<p class="muted">Oracle '
            f"{esc(str(oracle.get('path', '')))}: test accuracy {_percent(oracle.get('test_accuracy'))} "
            f"(A {_percent(oracle.get('test_accuracy_a'))}, B {_percent(oracle.get('test_accuracy_b'))}) "
            "on its own test split; a flip rate is only as trustworthy as this.</p>"
        )
        parts.extend(_group_tables(directions))
    else:
        parts.append('<p class="muted">No oracle given (--oracle): no flip rates.</p>')
    if files.get("spectra"):
        parts.append("<h2>Mean power spectra</h2>")
        parts.append(f'<img src="{esc(files["spectra"])}" alt="mean log power spectra">')
        parts.append('<p class="muted">Left to right: real B, translated A \u2192 B, real A, translated B \u2192 A '
                     "(zero frequency in the centre). A checkerboard shows as bright dots at the corners and edge "
                     "centres that the real spectra do not have.</p>")

    for direction in directions:
        name = files.get(f"panel_{direction}")
        if name:
            title = DIRECTION_TITLES.get(direction, direction)
            parts.append(f"<h2>{esc(title)}: input / translated / reconstructed</h2>")
            parts.append(f'<img src="{esc(name)}" alt="{esc(title)} translation panel">')
    parts.append("<h2>Loss curves</h2>")
    if files.get("loss_curves"):
        parts.append(f'<img src="{esc(files["loss_curves"])}" alt="loss curves from TensorBoard logs">')
    else:
        parts.append('<p class="muted">No TensorBoard scalars found in the workdir\'s logs.</p>')
    parts.append(f'<p class="muted">All figures: <a href="{esc(files.get("report", REPORT_FILE))}">{esc(REPORT_FILE)}</a></p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
