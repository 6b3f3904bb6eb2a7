"""Pictures people look at: sample grids, translation panels and loss curves.

numpy, PIL and matplotlib only: every picture the trainer, the evaluation report and the
translate command write is made here.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from tfcyclegan.io import to_uint8

GRID_COLUMNS = ("real_a", "fake_b", "cycled_a", None, "real_b", "fake_a", "cycled_b")
PANEL_TILE_MIN, PANEL_TILE_MAX = 64, 128  # triplet tiles: small images enlarged (nearest), big ones shrunk
PANEL_COLUMNS = 4  # triplets per panel row


GRID_LABELS = {"real_a": "A", "fake_b": "A->B", "cycled_a": "A->B->A", "real_b": "B", "fake_a": "B->A", "cycled_b": "B->A->B"}
GRID_TILE_MIN = 64  # smaller sample images are enlarged (nearest: pixels stay visible) so the grid can be read


def sample_grid(images: Mapping[str, np.ndarray], *, gap: int = 4, labels: Mapping[str, str] | None = None,
                min_tile: int = GRID_TILE_MIN) -> np.ndarray:
    """A uint8 grid under a header naming its columns: per row real_a | fake_b | cycled_a ||
    real_b | fake_a | cycled_b.

    images: {name: float32 (n, H, W, 3) in [-1, 1]} with the six names of GRID_COLUMNS.
    labels: the header's text per name (default GRID_LABELS). Images smaller than `min_tile`
    are enlarged by a whole factor, nearest neighbour.
    """
    from PIL import Image, ImageDraw

    labels = {**GRID_LABELS, **(labels or {})}
    n, h, w, _ = images["real_a"].shape
    scale = max(1, math.ceil(min_tile / h))
    th, tw = h * scale, w * scale
    header = 14
    width = 6 * tw + 6 * gap  # five gaps between six tiles, the middle one twice as wide
    canvas = Image.new("RGB", (width, header + n * th + (n - 1) * gap), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for name in GRID_COLUMNS:
        if name is None:
            x += gap  # the middle gap is two gaps wide
            continue
        label = labels[name]
        while label and draw.textlength(label) > tw - 2:  # never spill into the next column
            label = label[:-1]
        draw.text((x + 1, 1), label, fill=(60, 60, 60))
        for i in range(n):
            tile = np.repeat(np.repeat(to_uint8(images[name][i]), scale, 0), scale, 1)
            canvas.paste(Image.fromarray(tile), (x, header + i * (th + gap)))
        x += tw + gap
    return np.asarray(canvas)


def image_grid(images: np.ndarray, *, columns: int, gap: int = 2) -> np.ndarray:
    """uint8 (n, H, W, 3) -> one uint8 image, `columns` per row, white gaps; empty cells stay white."""
    n, h, w, _ = images.shape
    rows = max(1, -(-n // columns))
    grid = np.full((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, 3), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = image
    return grid


def triplet_panel(
    inputs: np.ndarray, translated: np.ndarray, reconstructed: np.ndarray, *, columns: int = PANEL_COLUMNS,
    tile: int | None = None, gap: int = 4, labels: Sequence[str] = ("input", "translated", "cycled"),
) -> np.ndarray:
    """A uint8 image of triplets (input | translated | reconstructed), `columns` triplets per row,
    under a header row naming the three columns.

    inputs, translated, reconstructed: float32 (n, H, W, 3) in [-1, 1], n >= 1. Tiles are resized
    to `tile` pixels (default H clamped to [PANEL_TILE_MIN, PANEL_TILE_MAX]): enlarged with
    nearest neighbour (pixels stay visible), shrunk with Lanczos.
    """
    from PIL import Image, ImageDraw

    n = len(inputs)
    if n == 0 or not len(inputs) == len(translated) == len(reconstructed):
        raise ValueError(f"triplet_panel needs n >= 1 images in each of the three sets. Received: {len(inputs)}, {len(translated)}, {len(reconstructed)}")
    tile = tile or int(np.clip(inputs.shape[1], PANEL_TILE_MIN, PANEL_TILE_MAX))
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    header = 14
    inner = gap // 2  # between the three tiles of a triplet
    triplet_w = 3 * tile + 2 * inner
    width = columns * triplet_w + (columns - 1) * gap * 2
    height = header + rows * tile + (rows - 1) * gap
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c in range(columns):
        x0 = c * (triplet_w + gap * 2)
        for k, label in enumerate(labels):
            while label and draw.textlength(label) > tile - 2:  # never spill into the next column
                label = label[:-1]
            draw.text((x0 + k * (tile + inner) + 1, 1), label, fill=(60, 60, 60))
    for i in range(n):
        r, c = divmod(i, columns)
        x0, y0 = c * (triplet_w + gap * 2), header + r * (tile + gap)
        for k, images in enumerate((inputs, translated, reconstructed)):
            cell = Image.fromarray(to_uint8(images[i]))
            if cell.size != (tile, tile):
                enlarge = cell.size[0] < tile
                cell = cell.resize((tile, tile), Image.Resampling.NEAREST if enlarge else Image.Resampling.LANCZOS)
            canvas.paste(cell, (x0 + k * (tile + inner), y0))
    return np.asarray(canvas)


def rows_panel(rows: Sequence[Sequence[np.ndarray]], labels: Sequence[str], *, height: int = 256) -> np.ndarray:
    """A side-by-side panel: one row per image (e.g. input, then each translation step), every
    image scaled to `height` pixels, under a header with one label per column.

    rows: sequences of uint8 (H, W, 3) images, as many per row as labels. Returns uint8 (h, w, 3).
    """
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
    return np.asarray(panel)


def plot_curves(
    series: Mapping[str, Sequence[tuple[int, float]]],
    path: str,
    *,
    panels: Sequence[tuple[str, Sequence[str]]] | None = None,
    title: str = "",
    marks: Sequence[int] = (),
) -> bool:
    """Curves into a PNG: each series raw (light) and as a moving average (dark).

    series: {name: [(step, value), ...]}; panels: [(panel title, [series names])], by default one
    panel per series (names starting with "loss/" first); marks: steps drawn as dotted vertical
    lines (stage changes). Returns False, and writes nothing, when there is nothing to plot.
    """
    series = {name: points for name, points in series.items() if points}
    if panels is None:
        names = sorted(series, key=lambda t: (not t.startswith("loss/"), t))
        panels = [(name, [name]) for name in names]
    panels = [(panel_title, [n for n in names if n in series]) for panel_title, names in panels]
    panels = [p for p in panels if p[1]]
    if not panels:
        return False
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from tfcyclegan.io import write_bytes

    columns = min(4, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4 * columns, 2.8 * rows), layout="constrained")
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    for i, (panel_title, names) in enumerate(panels):
        axis = figure.add_subplot(rows, columns, i + 1)
        for k, name in enumerate(names):
            steps, values = zip(*series[name])
            color = colors[k % len(colors)]
            axis.plot(steps, values, color=color, alpha=0.3, linewidth=0.8)
            window = max(1, len(values) // 20)
            if window > 1:
                smooth = np.convolve(values, np.ones(window) / window, mode="valid")
                axis.plot(steps[window - 1:], smooth, color=color, linewidth=1.5, label=name)
            else:
                axis.plot([], [], color=color, label=name)
        for x in marks:
            axis.axvline(x, color="grey", linestyle=":", linewidth=0.8)
        axis.set_title(panel_title, fontsize=9)
        axis.set_xlabel("step", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
        if len(names) > 1:
            axis.legend(fontsize=7)
    if title:
        figure.suptitle(title)
    import io as _io

    buffer = _io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    write_bytes(path, buffer.getvalue())
    return True
