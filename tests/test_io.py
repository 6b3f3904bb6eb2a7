"""read_image on bytes as on files: the web app's uploads, shrunk or refused before a large allocation."""

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfcyclegan.io import ImageError, ImageTooLargeError, NotAnImageError, read_image

ROOT = Path(__file__).resolve().parents[1]


def _encoded(image: np.ndarray, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _image(h, w):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_bytes_read_as_the_same_file(tmp_path):
    data = _encoded(_image(30, 50), "PNG")
    (tmp_path / "a.png").write_bytes(data)
    from_file = read_image(str(tmp_path / "a.png"))
    assert from_file.shape == (30, 50, 3)
    np.testing.assert_array_equal(read_image(data), from_file)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), from_file)  # a PathLike too


def test_exif_orientation_applies_to_bytes():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    data = _encoded(_image(20, 40), "JPEG", exif=exif.tobytes())
    assert read_image(data).shape == (40, 20, 3)


@pytest.mark.parametrize("data, message", [(b"", r"empty \(0 bytes\)"), (b"just some text", "not an image")])
def test_empty_and_non_image_bytes_are_not_images(data, message):
    with pytest.raises(NotAnImageError, match=message):
        read_image(data)
    assert issubclass(NotAnImageError, ImageError) and issubclass(ImageTooLargeError, ImageError)


def test_without_shrink_an_oversized_image_is_refused_as_before():
    with pytest.raises(ImageTooLargeError, match=r"300x120 is larger than --max_side=256: pass --size=N"):
        read_image(_encoded(_image(120, 300), "PNG"), max_side=256)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_shrink_makes_the_longer_side_max_side(fmt):
    image = read_image(_encoded(_image(300, 1000), fmt), max_side=200, shrink=True)
    assert image.shape == (60, 200, 3)
    small = read_image(_encoded(_image(30, 100), fmt), max_side=200, shrink=True)
    assert small.shape == (30, 100, 3)  # smaller images are not enlarged


def test_max_pixels_refuses_from_the_header_and_counts_a_jpeg_after_its_reduced_decoding():
    png = _encoded(np.zeros((1200, 1000, 3), np.uint8), "PNG")
    with pytest.raises(ImageTooLargeError, match=r"1000x1200 is 1.2 megapixels, more than the 1 megapixels allowed"):
        read_image(png, max_side=4000, shrink=True, max_pixels=1_000_000)
    # The same pixels as a JPEG shrunk to 200 px decode at 1/4 scale (250x300): within the limit.
    jpeg = _encoded(np.zeros((1200, 1000, 3), np.uint8), "JPEG")
    assert read_image(jpeg, max_side=200, shrink=True, max_pixels=1_000_000).shape == (200, 167, 3)


def test_a_shrunk_jpeg_looks_like_the_full_decode_shrunk():
    y, x = np.mgrid[0:800, 0:1200]
    smooth = np.stack([x * 255 // 1199, y * 255 // 799, (x + y) * 255 // 1998], -1).astype(np.uint8)
    data = _encoded(smooth, "JPEG", quality=95)
    shrunk = read_image(data, max_side=300, shrink=True).astype(int)
    full = read_image(data, size=300).astype(int)  # the full decode, then LANCZOS
    assert shrunk.shape == full.shape == (200, 300, 3)
    assert np.abs(shrunk - full).mean() < 1.5


def test_a_10000px_jpeg_is_shrunk_in_bounded_memory(tmp_path):
    """A 10000x10000 JPEG decoded whole is 400 MB in PIL (4 bytes a pixel); shrunk to 1024 px it is
    decoded at 1/4 scale (2500x2500, 25 MB) and shrunk before it is copied: the process grows by a
    small fraction of the full decode (which made it grow by more than 1 GB with the copies)."""
    path = tmp_path / "big.jpg"
    Image.new("RGB", (10000, 10000), (120, 130, 140)).save(path, quality=80)
    script = textwrap.dedent(f"""
        import json, resource
        from tfcyclegan.io import read_image
        data = open({str(path)!r}, "rb").read()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        image = read_image(data, max_side=1024, shrink=True, max_pixels=25_000_000)
        grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(json.dumps({{"shape": list(image.shape), "grew_mb": grew}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["shape"] == [1024, 1024, 3]
    assert result["grew_mb"] < 60, result
