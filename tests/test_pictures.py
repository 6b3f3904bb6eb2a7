"""The sample grid a run writes every epoch: labelled columns, small images enlarged, pixels kept."""

import numpy as np

from tfcyclegan import pictures
from tfcyclegan.io import to_uint8


def test_sample_grid_enlarges_small_images_under_labelled_columns():
    rng = np.random.default_rng(0)
    images = {name: rng.uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32) for name in pictures.GRID_LABELS}
    grid = pictures.sample_grid(images, gap=4)
    # 32 px images become 64 px tiles; six tiles, five gaps (the middle one doubled), a 14 px header.
    assert grid.shape == (14 + 3 * 64 + 2 * 4, 6 * 64 + 6 * 4, 3) and grid.dtype == np.uint8
    # Nearest enlargement: every second pixel of a tile is the source pixel.
    np.testing.assert_array_equal(grid[14:14 + 64:2, 0:64:2], to_uint8(images["real_a"][0]))
    real_b_x = 3 * (64 + 4) + 4
    np.testing.assert_array_equal(grid[14 + 68:14 + 68 + 64:2, real_b_x:real_b_x + 64:2], to_uint8(images["real_b"][1]))
    assert (grid[:14] < 128).any(), "the header has text"
    assert (grid[14:, 64:68] == 255).all(), "white gaps between tiles"


def test_sample_grid_keeps_large_images_at_their_size():
    images = {name: np.zeros((2, 96, 80, 3), np.float32) for name in pictures.GRID_LABELS}
    grid = pictures.sample_grid(images, gap=2)
    assert grid.shape == (14 + 2 * 96 + 2, 6 * 80 + 6 * 2, 3)
