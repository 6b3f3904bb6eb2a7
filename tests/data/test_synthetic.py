"""The synthetic faces: deterministic, UTKFace-named, attributes visible, read like UTKFace."""

import collections
import time

import numpy as np
import pytest
from PIL import Image

from tfcyclegan.config import DataConfig
from tfcyclegan.data import hair_masks, load_domains, parse_name, synthetic


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    out = tmp_path_factory.mktemp("faces")
    start = time.perf_counter()
    synthetic.generate(out, count=100, seed=3)
    return out, time.perf_counter() - start


def _images(folder):
    return sorted(p for p in folder.iterdir() if p.name.endswith(".jpg.chip.jpg"))


def test_names_follow_utkface_and_spread_labels(faces):
    folder, _ = faces
    files = _images(folder)
    assert len(files) == 100
    labels = [parse_name(p.name)[0] for p in files]
    assert all(lab is not None for lab in labels)
    decades = collections.Counter(age // 10 for age, _, _ in labels)
    assert decades[2] == 40 and decades[5] == 40  # 40% 20s, 40% 50s, 20% other ages
    assert {g for _, g, _ in labels} == {0, 1}
    assert {r for _, _, r in labels} == {0, 1, 2, 3, 4}
    with Image.open(files[0]) as im:
        assert im.format == "JPEG" and im.size == (128, 128) and im.mode == "RGB"


def test_deterministic_by_seed(faces, tmp_path):
    folder, _ = faces
    again = synthetic.generate(tmp_path / "again", count=100, seed=3)
    for a, b in zip(_images(folder), _images(again)):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()
    other = synthetic.generate(tmp_path / "other", count=100, seed=4)
    assert [p.read_bytes() for p in _images(other)] != [p.read_bytes() for p in _images(folder)]


def test_generation_is_fast(faces):
    _, seconds = faces
    assert seconds < 4.0  # 100 faces; 600 take about 4 s on 2 cores


def test_hair_brightness_separates_age_groups(faces):
    folder, _ = faces
    masks = hair_masks(folder)
    young, old = [], []
    for path in _images(folder):
        age = parse_name(path.name)[0][0]
        mask = masks[path.name]
        assert mask.dtype == bool and mask.shape == (128, 128) and mask.mean() > 0.04
        grey = np.asarray(Image.open(path).convert("L"), np.float32)
        brightness = grey[mask].mean()
        if 20 <= age < 30:
            young.append(brightness)
        elif 50 <= age < 60:
            old.append(brightness)
    # Consistent within a group, far apart between groups.
    assert max(young) < 75 and min(old) > 165
    assert np.mean(old) - np.mean(young) > 140


def test_resized_masks(faces):
    folder, _ = faces
    small = hair_masks(folder, size=32)
    big = hair_masks(folder)
    name = next(iter(big))
    assert small[name].shape == (32, 32) and small[name].dtype == bool
    assert abs(small[name].mean() - big[name].mean()) < 0.05


def test_load_domains_generates_once_and_reads_like_utkface(tmp_path):
    cfg = DataConfig(dataset="synthetic", synthetic_count=60, synthetic_seed=1)
    domains = load_domains(cfg, cache_dir=str(tmp_path))
    folder = tmp_path / "synthetic_v1_seed1_n60_128px"
    assert domains.stats["source"]["path"] == str(folder)
    files = _images(folder)
    expected_a = sum(1 for p in files if 20 <= parse_name(p.name)[0][0] <= 29)
    expected_b = sum(1 for p in files if 50 <= parse_name(p.name)[0][0] <= 59)
    assert sum(domains.stats["domains"]["a"].values()) == expected_a == 24
    assert sum(domains.stats["domains"]["b"].values()) == expected_b == 24
    assert domains.stats["skipped"] == {} and domains.stats["images"] == 60
    mtime = files[0].stat().st_mtime_ns
    again = load_domains(cfg, cache_dir=str(tmp_path))
    assert files[0].stat().st_mtime_ns == mtime  # not generated again
    assert (again.a, again.b) == (domains.a, domains.b)
    # Other tasks come from the same labels.
    gender = load_domains(DataConfig(dataset="synthetic", synthetic_count=60, synthetic_seed=1, task="gender"), cache_dir=str(tmp_path))
    assert sum(gender.stats["domains"]["a"].values()) + sum(gender.stats["domains"]["b"].values()) == 60


def test_command_line(tmp_path, capsys):
    synthetic.main([f"--out={tmp_path}", "--count=6", "--seed=0"])
    assert len(_images(tmp_path)) == 6 and (tmp_path / "masks.npz").exists()
    assert "Wrote 6 faces" in capsys.readouterr().out


def test_unwritable_cache_is_a_clear_error(tmp_path):
    from tfcyclegan.data import DataError

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(DataError, match="TFCYCLEGAN_CACHE"):
        load_domains(DataConfig(dataset="synthetic", synthetic_count=10), cache_dir=str(blocker))


def test_a_damaged_cache_is_generated_again_with_a_message(tmp_path, capsys):
    cfg = DataConfig(dataset="synthetic", synthetic_count=60, synthetic_seed=2)
    first = load_domains(cfg, cache_dir=str(tmp_path))
    folder = tmp_path / "synthetic_v1_seed2_n60_128px"
    files = _images(folder)
    for path in files[:20]:
        path.unlink()
    for path in files[20:25]:
        path.write_bytes(bytes(path.stat().st_size))  # zeroed, same size
    again = load_domains(cfg, cache_dir=str(tmp_path))
    assert "are damaged (20 files missing, 5 changed); generating them again" in capsys.readouterr().err
    assert (again.a, again.b) == (first.a, first.b) and again.stats["images"] == 60
    assert synthetic.damage(folder) is None
    load_domains(cfg, cache_dir=str(tmp_path))
    assert "damaged" not in capsys.readouterr().err  # intact now: used as it is
