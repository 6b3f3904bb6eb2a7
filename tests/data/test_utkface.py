"""UTKFace names, tasks and filters, dedupe, the split, bad input, on the real sample."""

import collections
import csv
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tfcyclegan.config import DataConfig
from tfcyclegan.data import (
    DataError,
    DomainFilter,
    load_domains,
    make_train_dataset,
    parse_name,
    steps_per_epoch,
    task_filters,
    utkface,
)

REPO = Path(__file__).resolve().parents[2]

# The 8 real malformed names (../shared/data/utkface_sample/SOURCE.md) and what we do with them.
MALFORMED = {
    "14_0_0_2017011022340900.jpg.chip.jpg": (14, 0, 0),  # 16-digit timestamp: labels readable
    "24_0_1_20170116220224657 .jpg.chip.jpg": (24, 0, 1),  # space before the extension
    "28_1_2_201701161846515488.jpg.chip.jpg": (28, 1, 2),  # 18-digit timestamp
    "38_0_1_201701162330572788.jpg.chip.jpg": (38, 0, 1),
    "39_1_20170116174525125.jpg.chip.jpg": "missing_label",  # race absent
    "55_0_0_20170116232725357jpg.chip.jpg": (55, 0, 0),  # missing dot: labels readable
    "61_1_20170109142408075.jpg.chip.jpg": "missing_label",
    "61_1_20170109150557335.jpg.chip.jpg": "missing_label",
}


@pytest.fixture(scope="module")
def sample(utkface_sample):  # the shared folder, see conftest.py
    return utkface_sample


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data_cache"))


@pytest.fixture(scope="module")
def manifest(sample):
    with open(sample / "MANIFEST.csv") as f:
        return [
            {"filename": r["filename"], "labels": (int(r["age"]), int(r["gender"]), int(r["race"])), "md5": r["md5"]}
            for r in csv.DictReader(f)
        ]


def expected_labels(manifest):
    """Labels of every usable image of the sample folder: the manifest plus the accepted malformed names."""
    return [r["labels"] for r in manifest] + [v for v in MALFORMED.values() if isinstance(v, tuple)]


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name,expected", sorted(MALFORMED.items()))
def test_malformed_names_as_documented(name, expected):
    labels, reason = parse_name(name)
    if isinstance(expected, tuple):
        assert labels == expected and reason is None
    else:
        assert labels is None and reason == expected


@pytest.mark.parametrize(
    "name,expected",
    [
        ("26_1_0_20170117200604086.jpg.chip.jpg", ((26, 1, 0), None)),
        ("26_1_0_20170117200604086.jpg", ((26, 1, 0), None)),
        ("26_2_0_20170117200604086.jpg.chip.jpg", (None, "invalid_label")),  # gender 2
        ("26_1_5_20170117200604086.jpg.chip.jpg", (None, "invalid_label")),  # race 5
        ("x6_1_0_20170117200604086.jpg.chip.jpg", (None, "invalid_label")),
        ("26_1__20170117200604086.jpg.chip.jpg", (None, "invalid_label")),
        ("photo.jpg", (None, "missing_label")),
    ],
)
def test_parse_name(name, expected):
    assert parse_name(name) == expected


def test_malformed_folder_skips_and_counts(sample, cache):
    examples, stats = utkface.build_examples(sample / "malformed", cache_dir=cache)
    assert sorted((e.name, e.labels) for e in examples) == sorted(
        (k, v) for k, v in MALFORMED.items() if isinstance(v, tuple)
    )
    assert stats["skipped"] == {"missing_label": 3}
    assert stats["files"] == 8 and stats["images"] == 5


# -- filters and tasks ----------------------------------------------------------------------


def test_filter_grammar():
    f = DomainFilter.parse("age:20-29,gender:female,race:0|1")
    assert f.matches(25, 1, 0) and f.matches(20, 1, 1) and f.matches(29, 1, 1)
    assert not f.matches(30, 1, 0) and not f.matches(25, 0, 0) and not f.matches(25, 1, 2)
    assert DomainFilter.parse("age:60-").matches(99, 0, 0)
    assert not DomainFilter.parse("age:60-").matches(59, 0, 0)
    a, b = task_filters("ethnicity")
    assert a.matches(30, 0, 0) and b.matches(30, 0, 1) and not a.matches(30, 0, 1)


@pytest.mark.parametrize("text", ["age", "height:3", "age:abc", "age:30-20", "gender:robot", "age:1,age:2", ""])
def test_bad_filter_raises(text):
    with pytest.raises(DataError, match="domain_a"):
        DomainFilter.parse(text, flag="--domain_a")


@pytest.mark.parametrize(
    "task,domain_a,domain_b",
    [
        ("age", None, None),
        ("ethnicity", None, None),
        ("gender", None, None),
        ("age", "age:20-29,gender:1", "age:50-59,gender:1"),
        ("age", "race:2|3|4,age:30-39", "race:0,age:60-"),
    ],
)
def test_domain_counts_match_manifest(sample, cache, manifest, task, domain_a, domain_b):
    cfg = DataConfig(dataset="utkface", data_dir=str(sample), task=task, domain_a=domain_a, domain_b=domain_b)
    domains = load_domains(cfg, cache_dir=cache)
    fa, fb = task_filters(task, domain_a, domain_b)
    labels = expected_labels(manifest)
    for name, filt in (("a", fa), ("b", fb)):
        expected = sum(1 for lab in labels if filt.matches(*lab))
        split = getattr(domains, name)
        assert len(split.train) + len(split.test) == expected
        assert domains.stats["domains"][name] == {"train": len(split.train), "test": len(split.test)}
        assert all(filt.matches(*e.labels) for e in split.train + split.test)
    # Every file is accounted for: usable images + skipped = files seen.
    stats = domains.stats
    assert stats["images"] == len(labels)
    assert stats["skipped"] == {"missing_label": 3, "not_an_image": 2}  # MANIFEST.csv, SOURCE.md
    assert stats["files"] == stats["images"] + sum(stats["skipped"].values())
    total = sum(v for d in stats["domains"].values() for v in d.values())
    assert total + stats["unused"] == stats["images"]


def test_task_age_counts_by_hand(sample, cache):
    # SOURCE.md: 1002 in their 20s and 986 in their 50s, plus malformed 24_0_1, 28_1_2 and 55_0_0.
    domains = load_domains(DataConfig(dataset="utkface", data_dir=str(sample)), cache_dir=cache)
    assert len(domains.a.train) + len(domains.a.test) == 1004
    assert len(domains.b.train) + len(domains.b.test) == 987
    assert 0.07 < len(domains.a.test) / 1004 < 0.13


def test_examples_carry_manifest_md5(sample, cache, manifest):
    domains = load_domains(DataConfig(dataset="utkface", data_dir=str(sample), task="gender"), cache_dir=cache)
    by_name = {r["filename"]: r for r in manifest}
    seen = 0
    for e in domains.a.train + domains.a.test + domains.b.train + domains.b.test:
        if e.name in by_name:
            assert e.key == by_name[e.name]["md5"] and e.labels == by_name[e.name]["labels"]
            assert (e.height, e.width) == (200, 200)
            seen += 1
    assert seen == len(manifest)


def test_filter_matching_nothing_names_filter_and_counts(sample, cache):
    cfg = DataConfig(dataset="utkface", data_dir=str(sample), domain_a="age:120-130", domain_b="age:50-59")
    with pytest.raises(DataError) as err:
        load_domains(cfg, cache_dir=cache)
    msg = str(err.value)
    assert "--domain_a" in msg and "age:120-130" in msg and "2991 usable images" in msg


def test_overlapping_filters_refused(sample, cache):
    cfg = DataConfig(dataset="utkface", data_dir=str(sample), domain_a="age:20-39", domain_b="age:30-59")
    with pytest.raises(DataError, match="overlap"):
        load_domains(cfg, cache_dir=cache)


def test_missing_path_is_named(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="nope.*does not exist"):
        load_domains(DataConfig(dataset="utkface", data_dir=str(missing)), cache_dir=str(tmp_path))
    with pytest.raises(DataError, match="nope.tar.gz"):
        load_domains(DataConfig(dataset="utkface", data_dir=str(tmp_path / "nope.tar.gz")), cache_dir=str(tmp_path))


# -- the split ------------------------------------------------------------------------------


def test_split_is_a_function_of_content(sample, cache):
    cfg = DataConfig(dataset="utkface", data_dir=str(sample))
    domains = load_domains(cfg, cache_dir=cache)
    for e in domains.a.train:
        assert not utkface.is_test(e.key, 0.1)
    for e in domains.a.test:
        assert utkface.is_test(e.key, 0.1)
    assert list(domains.a.train) == sorted(domains.a.train)  # the stable order
    # A larger test fraction only moves images from train to test.
    bigger = load_domains(DataConfig(dataset="utkface", data_dir=str(sample), test_fraction=0.3), cache_dir=cache)
    assert set(domains.a.test) <= set(bigger.a.test)


def test_split_identical_across_processes(sample, cache, tmp_path):
    domains = load_domains(DataConfig(dataset="utkface", data_dir=str(sample)), cache_dir=cache)
    here = [e.name for e in domains.a.test + domains.b.test]
    code = (
        "import json, sys\n"
        "from tfcyclegan.config import DataConfig\n"
        "from tfcyclegan.data import load_domains\n"
        "d = load_domains(DataConfig(dataset='utkface', data_dir=sys.argv[1]), cache_dir=sys.argv[2])\n"
        "print(json.dumps([e.name for e in d.a.test + d.b.test]))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", PYTHONHASHSEED="123")
    out = subprocess.run(
        [sys.executable, "-c", code, str(sample), cache], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here


# -- duplicates, corrupt files, tarballs ----------------------------------------------------


def _copy(src: Path, dst_dir: Path, name: str | None = None) -> Path:
    dst = dst_dir / (name or src.name)
    shutil.copyfile(src, dst)
    return dst


@pytest.fixture(scope="module")
def small_folder(sample, manifest, tmp_path_factory):
    """40 sample images (20s and 50s) copied to a temporary folder (never into the repo)."""
    folder = tmp_path_factory.mktemp("utk_small")
    rows = [r for r in manifest if r["labels"][0] // 10 in (2, 5)][::40][:40]
    for r in rows:
        _copy(sample / r["filename"], folder)
    return folder, rows


def test_injected_duplicates(small_folder, tmp_path):
    folder, rows = small_folder
    work = tmp_path / "dups"
    shutil.copytree(folder, work)
    first, second = rows[0], rows[1]
    age, gender, race = first["labels"]
    # The same bytes labelled with the other gender: the whole group conflicts and is dropped.
    _copy(work / first["filename"], work, f"{age}_{1 - gender}_{race}_20170101000000001.jpg.chip.jpg")
    # The same bytes with the same labels under two more names: merged into one.
    a2, g2, r2 = second["labels"]
    _copy(work / second["filename"], work, f"{a2}_{g2}_{r2}_20170101000000002.jpg.chip.jpg")
    (work / "copies").mkdir()
    _copy(work / second["filename"], work / "copies")
    examples, stats = utkface.build_examples(work, cache_dir=str(tmp_path / "cache"))
    keys = collections.Counter(e.key for e in examples)
    assert max(keys.values()) == 1
    assert first["md5"] not in keys
    assert keys[second["md5"]] == 1
    assert stats["duplicates"] == {
        "conflicting_groups": 1, "conflicting_files_dropped": 2, "consistent_groups": 1, "copies_merged": 2,
    }
    assert len(examples) == 40 - 1
    # No image leaves without a count.
    assert stats["files"] == stats["images"] + sum(stats["skipped"].values()) + 2 + 2
    # The kept copy is the first name in sorted order, whatever the folder order.
    kept = [e for e in examples if e.key == second["md5"]][0]
    assert kept.name == min(second["filename"], f"{a2}_{g2}_{r2}_20170101000000002.jpg.chip.jpg")


def test_corrupt_and_non_image_files_skipped_and_counted(small_folder, tmp_path):
    folder, rows = small_folder
    work = tmp_path / "bad"
    shutil.copytree(folder, work)
    data = (work / rows[0]["filename"]).read_bytes()
    (work / "30_0_0_20170101000000001.jpg.chip.jpg").write_bytes(data[: len(data) // 2])  # truncated
    (work / "30_0_0_20170101000000002.jpg.chip.jpg").write_bytes(b"")  # empty
    (work / "30_0_0_20170101000000003.jpg.chip.jpg").write_bytes(b"not a jpeg at all")
    (work / "notes.txt").write_text("hello")
    (work / ".DS_Store").write_bytes(b"\0\0")
    examples, stats = utkface.build_examples(work, cache_dir=str(tmp_path / "cache"))
    assert len(examples) == 40
    assert stats["skipped"] == {"corrupt_image": 3, "not_an_image": 2}
    assert stats["files"] == 45
    # Nothing undecodable reaches the pipeline: a whole epoch runs, uncached, without error.
    cfg = DataConfig(dataset="utkface", data_dir=str(work), cache=False)
    domains = load_domains(cfg, cache_dir=str(tmp_path / "cache"))
    batches = list(make_train_dataset(domains, cfg, size=32, global_batch=4, seed=0, epoch=0))
    assert len(batches) == steps_per_epoch(domains, 4)


def test_index_cache_notices_changed_files(small_folder, tmp_path):
    folder, rows = small_folder
    work = tmp_path / "changing"
    shutil.copytree(folder, work)
    cache = str(tmp_path / "cache")
    first, _ = utkface.build_examples(work, cache_dir=cache)
    assert len(first) == 40 and list((tmp_path / "cache" / "index").glob("*.json"))
    again, _ = utkface.build_examples(work, cache_dir=cache)
    assert again == first
    target = work / rows[3]["filename"]
    target.write_bytes(target.read_bytes()[:500])  # truncated after indexing
    changed, stats = utkface.build_examples(work, cache_dir=cache)
    assert len(changed) == 39 and stats["skipped"] == {"corrupt_image": 1}


def test_tarball_reads_the_same_as_the_folder(small_folder, tmp_path):
    folder, _ = small_folder
    tar_path = tmp_path / "UTKFace.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(folder, arcname="UTKFace")
    from_folder, s1 = utkface.build_examples(folder, cache_dir=None)
    from_tar, s2 = utkface.build_examples(tar_path, cache_dir=None)
    assert from_tar == from_folder and len(from_tar) == 40
    assert all(e.data is not None for e in from_tar)
    assert s1 == s2
    # Through load_domains, with a custom split: the same domains.
    cfg = dict(dataset="utkface", task="gender")
    d1 = load_domains(DataConfig(data_dir=str(folder), **cfg), cache_dir=str(tmp_path))
    d2 = load_domains(DataConfig(data_dir=str(tar_path), **cfg), cache_dir=str(tmp_path))
    assert (d1.a, d1.b) == (d2.a, d2.b)
    assert d2.stats["source"]["kind"] == "tarball"


def test_truncated_tarball_is_a_clear_error(small_folder, tmp_path):
    folder, _ = small_folder
    tar_path = tmp_path / "crop_part1.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(folder, arcname="crop_part1")
    raw = tar_path.read_bytes()
    tar_path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="crop_part1.tar.gz.*(truncated|corrupt)"):
        utkface.build_examples(tar_path, cache_dir=None)
