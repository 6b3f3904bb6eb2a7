"""The checkerboard measure on real UTKFace faces: near 1 for real against real, far above for a
faint grid-locked pattern and for a transposed convolution's uneven overlap, below 1 for blur."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfcyclegan.eval import artefacts
from tfcyclegan.model.layers import Upsample2x


@pytest.fixture(scope="module")
def faces(utkface_sample):
    """600 real faces at 64 px in [-1, 1], in file-name order (which is by age)."""
    files = sorted(utkface_sample.glob("*.jpg"))[:600]
    assert len(files) == 600, f"expected 600 faces in {utkface_sample}"
    images = []
    for path in files:
        with Image.open(path) as image:
            images.append(np.asarray(image.convert("RGB").resize((64, 64), Image.BILINEAR), np.float32))
    return np.stack(images) / 127.5 - 1.0


def test_real_faces_against_other_real_faces_are_near_one(faces):
    figures = artefacts.artefact_figures(faces[::2], faces[1::2])
    # Two halves of 300 faces differ by sampling alone; measured 1.10 and 1.00.
    assert 0.8 < figures["artefact_ratio"] < 1.25
    assert 0.9 < figures["sharpness_ratio"] < 1.1


def test_a_faint_grid_locked_pattern_is_caught(faces):
    y, x = np.mgrid[0:64, 0:64]
    pattern = ((y % 2 == 0).astype(np.float32) + (x % 2 == 0)) / 2
    pattern -= pattern.mean()
    # 0.01 on the [-1, 1] scale is about one grey level of 255: invisible in one image.
    faint = np.clip(faces[::2] + 0.01 * pattern[None, :, :, None], -1, 1)
    figures = artefacts.artefact_figures(faint, faces[1::2])
    assert figures["artefact_ratio"] > 3.0  # measured 6.0
    assert figures["ratio_period2"] == figures["artefact_ratio"]
    assert figures["fixed_pattern_ratio"] > 1.3  # it survives averaging over faces: measured 1.5


def test_upsampling_by_transposed_convolution_makes_the_pattern_nearest_some_bilinear_none(faces):
    """The root cause, with every kernel tap equal (no learning to hide it): a stride-2 3x3
    transposed convolution gives the output pixels 1, 2 or 4 taps, a pattern with the period of
    the stride however smooth the input; nearest 2x blocks keep part of theirs through a 3x3
    convolution; bilinear resizing has none to keep."""
    small = tf.image.resize(faces[:200], (32, 32), antialias=True)
    kernel = tf.eye(3, batch_shape=(3, 3)) / 9.0  # (3, 3, out, in): channels kept apart
    transposed = tf.nn.conv2d_transpose(small, kernel, output_shape=(200, 64, 64, 3), strides=2, padding="SAME")
    convolve = lambda upsampled: tf.nn.conv2d(upsampled, kernel, strides=1, padding="SAME").numpy()
    real = faces[200:]
    ratio = {
        "transpose": artefacts.artefact_figures(transposed.numpy(), real)["artefact_ratio"],
        "nearest": artefacts.artefact_figures(convolve(Upsample2x("nearest")(small)), real)["artefact_ratio"],
        "bilinear": artefacts.artefact_figures(convolve(Upsample2x("bilinear")(small)), real)["artefact_ratio"],
    }
    # Measured: 962, 4.3 and 0.003.
    assert ratio["transpose"] > 100
    assert 1.5 < ratio["nearest"] < 0.1 * ratio["transpose"]
    assert ratio["bilinear"] < 0.1


def test_blur_is_low_sharpness_not_an_artefact(faces):
    blurred = tf.nn.avg_pool2d(tf.pad(faces[::2], [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC"), 3, 1, "VALID")
    figures = artefacts.artefact_figures(blurred.numpy(), faces[1::2])
    assert figures["artefact_ratio"] < 0.5
    assert figures["sharpness_ratio"] < 0.6  # measured 0.42


def test_batches_add_up_to_the_whole_set(faces):
    stats = artefacts.SpectrumStats()
    for start in range(0, 100, 7):
        stats.add(faces[start : min(start + 7, 100)])
    whole = artefacts.SpectrumStats()
    whole.add(faces[:100])
    assert stats.count == whole.count == 100
    for key, value in whole.bands().items():
        assert stats.bands()[key] == pytest.approx(value, rel=1e-9), key
    # The spectrum's sum is the images' variance summed over channels (windowed).
    assert whole.bands()["total"] > 0


def test_bad_shapes_are_refused(faces):
    with pytest.raises(ValueError, match="divisible by 4"):
        artefacts.artefact_figures(faces[:4, :62, :62], faces[4:8, :62, :62])
    stats = artefacts.SpectrumStats()
    stats.add(faces[:2])
    with pytest.raises(ValueError, match="one size"):
        stats.add(faces[:2, :32, :32])
    with pytest.raises(ValueError, match="No images"):
        artefacts.SpectrumStats().bands()


def test_the_spectrum_picture_has_one_panel_per_spectrum(faces):
    stats = artefacts.SpectrumStats()
    stats.add(faces[:8])
    image = artefacts.log_spectrum_image([stats.mean_spectrum] * 4, scale=2)
    assert image.dtype == np.uint8 and image.shape == (128, 4 * 128 + 3 * 8, 3)
