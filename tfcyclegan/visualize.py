"""Pictures people look at: sample grids and loss curves."""

from __future__ import annotations

import csv
import os
from collections import OrderedDict

import numpy as np
from PIL import Image

GRID_COLUMNS = ("real_a", "fake_b", "cycled_a", None, "real_b", "fake_a", "cycled_b")


def to_uint8(images: np.ndarray) -> np.ndarray:
    """float (..., 3) in [-1, 1] -> uint8 in [0, 255]."""
    return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def sample_grid(images: dict[str, np.ndarray], *, gap: int = 4) -> np.ndarray:
    """A uint8 (rows*H, W', 3) grid: per row real_a | fake_b | cycled_a || real_b | fake_a | cycled_b.

    images: {name: float32 (n, H, W, 3) in [-1, 1]} with the six names of GRID_COLUMNS.
    """
    n, h, w, _ = images["real_a"].shape
    rows = []
    for i in range(n):
        cells = []
        for name in GRID_COLUMNS:
            if name is None:
                cells.append(np.full((h, gap * 2, 3), 255, np.uint8))
            else:
                cells.append(to_uint8(images[name][i]))
                cells.append(np.full((h, gap, 3), 255, np.uint8))
        rows.append(np.concatenate(cells[:-1], axis=1))
        rows.append(np.full((gap, rows[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(rows[:-1], axis=0)


def save_png(image: np.ndarray, path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp.png"
    Image.fromarray(image).save(tmp)
    os.replace(tmp, path)


def read_loss_csv(path: str) -> OrderedDict[int, dict[str, float]]:
    """Rows of losses.csv by global step; a step logged twice (a resumed run redoes the steps
    after its last checkpoint) keeps its latest row."""
    rows: OrderedDict[int, dict[str, float]] = OrderedDict()
    if not os.path.exists(path):
        return rows
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows[int(row["global_step"])] = {k: float(v) for k, v in row.items() if k != "global_step"}
    return OrderedDict(sorted(rows.items()))


def loss_curves(csv_path: str, png_path: str) -> str | None:
    """Plots generator, cycle, identity and discriminator losses against the global step."""
    rows = read_loss_csv(csv_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array(list(rows))
    series = lambda name: np.array([r[name] for r in rows.values()])
    panels = (
        ("Adversarial (generators)", ("gen_g_gan", "gen_f_gan")),
        ("Cycle L1", ("cycle_a", "cycle_b")),
        ("Identity L1", ("identity_a", "identity_b")),
        ("Discriminators", ("disc_a", "disc_b")),
    )
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    sizes = series("size")
    changes = steps[1:][np.diff(sizes) != 0]
    for ax, (title, names) in zip(axes, panels):
        for name in names:
            ax.plot(steps, series(name), label=name, linewidth=1)
        for x in changes:
            ax.axvline(x, color="grey", linestyle=":", linewidth=0.8)
        ax.set_title(title)
        ax.set_xlabel("global step")
        ax.legend(fontsize=8)
    fig.suptitle("Losses (dotted lines: stage changes)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(png_path) or ".", exist_ok=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
