"""Unpaired trainA/trainB folders and TFDS cycle_gan: layouts, decoding, counts, bad input."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from tfcyclegan.config import DataConfig
from tfcyclegan.data import DataError, load_domains, load_eval_images, make_train_dataset, steps_per_epoch


def _save(path, array, fmt):
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    path.write_bytes(buf.getvalue())
    return path


def _make_layout(root, *, n_a=9, n_b=6, tests=True, seed=0):
    """A generated trainA/trainB/testA/testB folder with a mix of formats and modes."""
    rng = np.random.default_rng(seed)
    for i in range(n_a):  # RGB JPEGs of various sizes, one smaller than 48 px
        size = (40, 30) if i == 0 else (64 + i, 80)
        _save(root / "trainA" / f"a{i:02d}.jpg", rng.integers(0, 256, size + (3,), dtype=np.uint8), "JPEG")
    for i in range(n_b):  # PNGs: grey, RGBA and RGB
        if i % 3 == 0:
            arr = rng.integers(0, 256, (70, 70), dtype=np.uint8)
        elif i % 3 == 1:
            arr = rng.integers(0, 256, (70, 70, 4), dtype=np.uint8)
        else:
            arr = rng.integers(0, 256, (70, 70, 3), dtype=np.uint8)
        _save(root / "trainB" / "nested" / f"b{i:02d}.png", arr, "PNG")
    if tests:
        for side in "AB":
            for i in range(2):
                _save(root / f"test{side}" / f"t{i}.jpg", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "JPEG")
    return root


def test_folder_layout_with_every_kind_of_file(tmp_path):
    root = _make_layout(tmp_path / "selfie2anime")
    (root / "trainA" / "broken.jpg").write_bytes((root / "trainA" / "a01.jpg").read_bytes()[:300])  # truncated
    (root / "trainA" / "README.txt").write_text("not an image")
    (root / "trainA" / "copy.jpg").write_bytes((root / "trainA" / "a02.jpg").read_bytes())  # duplicate
    (root / "trainA" / "leak.jpg").write_bytes((root / "testA" / "t0.jpg").read_bytes())  # train/test overlap
    cfg = DataConfig(dataset="folder", data_dir=str(root))
    domains = load_domains(cfg, cache_dir=str(tmp_path / "cache"))
    stats = domains.stats
    assert stats["domains"] == {"a": {"train": 9, "test": 2}, "b": {"train": 6, "test": 2}}
    assert stats["skipped"] == {"corrupt_image": 1, "not_an_image": 1}
    assert stats["duplicates"]["copies_merged"] == 1
    assert stats["duplicates"]["train_test_overlap_removed_from_train"] == 1
    # Every file is accounted for: 9 + 4 (broken, README, copy, leak) in trainA, 6 in trainB, 4 in test.
    accounted = stats["images"] + sum(stats["skipped"].values()) + stats["duplicates"]["copies_merged"]
    accounted += stats["duplicates"]["train_test_overlap_removed_from_train"]
    assert stats["files"] == 9 + 4 + 6 + 4 == accounted
    # At 32 px resize_and_crop needs 36 px: only the 40x30 image is upsampled. At 64 px it needs
    # 72: the 40x30, the 7 trainA images of 65..71 px, the 6 of 70 px in trainB and the 4 tests.
    assert stats["upsampled"]["32"] == 1 and stats["upsampled"]["64"] == 1 + 7 + 6 + 4
    json.dumps(stats)  # JSON-able for --dry_run
    ds = make_train_dataset(domains, cfg, size=32, global_batch=2, seed=0, epoch=0)
    batches = list(ds)
    assert len(batches) == steps_per_epoch(domains, 2) == 4
    assert batches[0][1].shape == (2, 32, 32, 3)


def test_grey_and_rgba_become_rgb(tmp_path):
    root = _make_layout(tmp_path / "modes", n_b=3)
    cfg = DataConfig(dataset="folder", data_dir=str(root))
    domains = load_domains(cfg, cache_dir=str(tmp_path / "cache"))
    images = load_eval_images(domains, cfg, domain="b", split="train", size=70)
    by_name = {e.name: i for i, e in enumerate(domains.b.train)}
    grey = images[by_name["b00.png"]]
    assert images.shape[-1] == 3
    np.testing.assert_array_equal(grey[..., 0], grey[..., 1])
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    rgba = np.asarray(Image.open(root / "trainB" / "nested" / "b01.png"))[..., :3]
    np.testing.assert_allclose(images[by_name["b01.png"]], rgba / 127.5 - 1.0, atol=1e-6)


def test_missing_test_folders_hold_out_by_hash(tmp_path):
    root = _make_layout(tmp_path / "notest", n_a=30, n_b=30, tests=False)
    cfg = DataConfig(dataset="folder", data_dir=str(root), test_fraction=0.3)
    domains = load_domains(cfg, cache_dir=str(tmp_path / "cache"))
    assert domains.stats["source"]["test_from_train"] == ["A", "B"]
    for split in (domains.a, domains.b):
        assert len(split.train) + len(split.test) == 30 and 0 < len(split.test) < 20
    again = load_domains(cfg, cache_dir=str(tmp_path / "other_cache"))
    assert (again.a, again.b) == (domains.a, domains.b)


def test_bad_layouts_are_named(tmp_path):
    root = tmp_path / "horse2zebra"
    (root / "trainA").mkdir(parents=True)
    (root / "horses").mkdir()
    with pytest.raises(DataError, match=r"trainA/ and trainB/.*found \['horses/', 'trainA/'\]"):
        load_domains(DataConfig(dataset="folder", data_dir=str(root)), cache_dir=str(tmp_path))
    (root / "trainB").mkdir()
    (root / "trainB" / "notes.txt").write_text("x")
    _save(root / "trainA" / "x.jpg", np.zeros((8, 8, 3), np.uint8), "JPEG")
    with pytest.raises(DataError, match=r"trainB.*no usable image \(1 files; skipped: \{'not_an_image': 1\}\)"):
        load_domains(DataConfig(dataset="folder", data_dir=str(root)), cache_dir=str(tmp_path))
    with pytest.raises(DataError, match="not a folder"):
        load_domains(DataConfig(dataset="folder", data_dir=str(tmp_path / "missing")), cache_dir=str(tmp_path))


# -- TFDS cycle_gan --------------------------------------------------------------------------


def test_tfds_cycle_gan_offline_says_how_to_prepare(tmp_path):
    cfg = DataConfig(dataset="tfds", tfds_name="cycle_gan/horse2zebra", data_dir=str(tmp_path))
    with pytest.raises(DataError, match=r"not prepared(.|\n)*tfds build cycle_gan/horse2zebra"):
        load_domains(cfg)
    with pytest.raises(DataError, match="Unknown TFDS dataset"):
        load_domains(DataConfig(dataset="tfds", tfds_name="no_such_dataset_xyz", data_dir=str(tmp_path)))


def test_tfds_cycle_gan_prepared_matches_the_folder(tmp_path, monkeypatch, request):
    import tensorflow_datasets as tfds
    from etils import epath
    from tensorflow_datasets.image_classification import cycle_gan

    # tensorflow-datasets 4.9 needs the undeclared package importlib_resources to find a
    # builder's source file when preparing; naming the file sidesteps that here.
    # (Reading the inherited property would trigger the import, so set and delete it by hand.)
    assert "code_path" not in vars(cycle_gan.CycleGAN)
    cycle_gan.CycleGAN.code_path = epath.Path(cycle_gan.__file__)
    request.addfinalizer(lambda: delattr(cycle_gan.CycleGAN, "code_path"))
    extracted = tmp_path / "download"
    root = _make_layout(extracted / "horse2zebra", n_a=5, n_b=3)
    for p in (root / "trainB" / "nested").iterdir():  # the official zips are flat
        p.rename(root / "trainB" / p.name)
    (root / "trainB" / "nested").rmdir()
    # Stand in for the network: the builder's download returns our extracted folder.
    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", lambda self, url: str(extracted))
    data_dir = str(tmp_path / "tfds")
    tfds.builder("cycle_gan/horse2zebra", data_dir=data_dir).download_and_prepare()
    cfg = DataConfig(dataset="tfds", tfds_name="cycle_gan/horse2zebra", data_dir=data_dir)
    from_tfds = load_domains(cfg)
    from_folder = load_domains(DataConfig(dataset="folder", data_dir=str(root)), cache_dir=str(tmp_path / "cache"))
    for name in ("a", "b"):
        for part in ("train", "test"):
            got = [e.key for e in getattr(getattr(from_tfds, name), part)]
            want = [e.key for e in getattr(getattr(from_folder, name), part)]
            assert got == want
    assert from_tfds.stats["domains"] == from_folder.stats["domains"]
    (a, b), = list(make_train_dataset(from_tfds, cfg, size=32, global_batch=2, seed=0, epoch=0).take(1))
    assert a.shape == b.shape == (2, 32, 32, 3)


def test_broken_links_and_link_loops_are_counted(tmp_path):
    import os

    root = _make_layout(tmp_path / "data", tests=False)
    os.symlink(root / "trainA" / "loop1.jpg", root / "trainA" / "loop2.jpg")
    os.symlink(root / "trainA" / "loop2.jpg", root / "trainA" / "loop1.jpg")
    os.symlink(root / "gone.jpg", root / "trainB" / "gone.png")
    domains = load_domains(DataConfig(dataset="folder", data_dir=str(root)), cache_dir=str(tmp_path / "cache"))
    assert domains.stats["skipped"]["unreadable_file"] == 3
    assert domains.stats["files"] == domains.stats["images"] + sum(domains.stats["skipped"].values()) + sum(
        v for k, v in domains.stats["duplicates"].items() if k in ("copies_merged",))
