"""Unpaired image folders (trainA/ trainB/ testA/ testB/).

The layout of selfie2anime, face2anime, grumpifycat, summer2winter_yosemite, horse2zebra and
the official CycleGAN downloads:

    data_dir/trainA/*.jpg|png   data_dir/trainB/...   data_dir/testA/...   data_dir/testB/...

Sub-folders are searched recursively; the same skip and dedupe rules as for UTKFace apply
(non-images and undecodable files are counted and skipped; byte-identical copies within a
folder are merged). When testA/ or testB/ is absent, a stable content-hash `test_fraction` of
the train folder is held out instead. An image that sits in both trainX/ and testX/ is kept in
test only (so evaluation never sees a training image), and counted.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import TYPE_CHECKING

from tfcyclegan.data import index
from tfcyclegan.data.pipeline import upsampled_counts
from tfcyclegan.data.types import DataError, DomainSplit, Domains, Example
from tfcyclegan.data.utkface import split

if TYPE_CHECKING:  # pragma: no cover
    from tfcyclegan.config import DataConfig

LAYOUT = ("trainA", "trainB", "testA", "testB")


def train_test(train, test, cfg, dup) -> DomainSplit:
    """testX/ as the test split when there is one (train images also in it are removed and
    counted in dup), else the content-hash split of trainX/."""
    if test is None:
        return split(train, cfg.test_fraction)
    test_keys = {e.key for e in test}
    dup["train_test_overlap_removed_from_train"] += sum(e.key in test_keys for e in train)
    return DomainSplit(tuple(sorted(e for e in train if e.key not in test_keys)), tuple(sorted(test)))


def load_folder_domains(cfg: "DataConfig", *, cache_dir: str | Path | None, single: bool = False) -> Domains:
    """trainA/ trainB/ (testA/ testB/) in cfg.data_dir; with single=True only trainA/ (testA/)."""
    root = Path(cfg.data_dir)
    if not root.is_dir():
        raise DataError(
            f"data_dir={str(root)!r} is not a folder. --dataset=folder expects trainA/ trainB/ (and "
            "optionally testA/ testB/) inside it, as in selfie2anime or horse2zebra."
        )
    sides = ("A",) if single else ("A", "B")
    present = {name: (root / name).is_dir() and name[-1] in sides for name in LAYOUT}
    if not all(present[f"train{side}"] for side in sides):
        found = sorted(p.name + "/" for p in root.iterdir() if p.is_dir())
        raise DataError(
            f"data_dir={str(root)!r} needs the sub-folders trainA/ and trainB/ (testA/ testB/ optional); "
            f"found {found or 'no sub-folders'}. Arrange the two domains as trainA/ and trainB/."
        )
    parts: dict[str, list[Example]] = {}
    skipped: collections.Counter = collections.Counter()
    dup: collections.Counter = collections.Counter()
    files = 0
    for name in LAYOUT:
        if not present[name]:
            continue
        examples, st = index.build_examples(root / name, cache_dir=cache_dir)
        parts[name] = examples
        skipped.update(st["skipped"])
        dup.update(st["duplicates"])
        files += st["files"]
        if name.startswith("train") and not examples:
            raise DataError(
                f"{str(root / name)!r} holds no usable image ({st['files']} files; skipped: {st['skipped']}). "
                "Put JPEG or PNG images there."
            )
    splits = {"B": DomainSplit((), ())}
    for side in sides:
        test = parts[f"test{side}"] if present[f"test{side}"] else None
        splits[side] = train_test(parts[f"train{side}"], test, cfg, dup)
        if not splits[side].train:
            raise DataError(f"train{side}/ in {str(root)!r} has no training image left after the test split and overlap removal.")
    a, b = splits["A"], splits["B"]
    dup["in_both_domains"] = len({e.key for e in a.train + a.test} & {e.key for e in b.train + b.test})
    source = {
        "dataset": "folder", "path": str(root),
        "test_from_train": [s for s in sides if not present[f"test{s}"]],
    }
    return make_domains(a, b, source, files, skipped, dup, cfg)


def load_image_folder(cfg: "DataConfig", *, cache_dir: str | Path | None) -> Domains:
    """One domain: every image under cfg.data_dir (searched recursively), split by content hash.
    For unconditional generation (a DCGAN on a folder of cat faces, say); B is empty."""
    root = Path(cfg.data_dir)
    if not root.is_dir():
        raise DataError(f"data_dir={str(root)!r} is not a folder. Pass a folder of JPEG or PNG images.")
    examples, st = index.build_examples(root, cache_dir=cache_dir)
    if not examples:
        raise DataError(f"{str(root)!r} holds no usable image ({st['files']} files; skipped: {st['skipped']}). "
                        "Put JPEG or PNG images there.")
    a = split(examples, cfg.test_fraction)
    if not a.train:
        raise DataError(f"All {len(examples)} images of {str(root)!r} fall in the test split: use more images "
                        "or a smaller --test_fraction.")
    source = {"dataset": "folder", "path": str(root), "test_from_train": ["A"]}
    return make_domains(a, DomainSplit((), ()), source, st["files"], collections.Counter(st["skipped"]),
                        collections.Counter(st["duplicates"]), cfg)


def make_domains(a: DomainSplit, b: DomainSplit, source: dict, files: int, skipped, dup, cfg) -> Domains:
    used = list(a.train + a.test + b.train + b.test)
    stats = {
        "source": source,
        "files": files,
        "images": len(used),
        "domains": {"a": {"train": len(a.train), "test": len(a.test)}, "b": {"train": len(b.train), "test": len(b.test)}},
        "filters": {"a": "trainA/testA", "b": "trainB/testB"},
        "skipped": {k: skipped[k] for k in sorted(skipped)},
        "duplicates": {k: dup[k] for k in sorted(dup)},
        "unused": 0,
        "upsampled": upsampled_counts(used, cfg.preprocess),
    }
    return Domains(a=a, b=b, stats=stats)
