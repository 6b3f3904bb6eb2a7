"""Unpaired image folders (trainA/ trainB/ testA/ testB/) and TFDS cycle_gan/<name>.

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
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from tfcyclegan.data import utkface
from tfcyclegan.data.domains import DomainSplit, Domains, split, upsampled_counts
from tfcyclegan.data.utkface import DataError, Example

if TYPE_CHECKING:  # pragma: no cover
    from tfcyclegan.config import DataConfig

LAYOUT = ("trainA", "trainB", "testA", "testB")


def _train_test(train, test, cfg, dup) -> DomainSplit:
    """testX/ as the test split when there is one (train images also in it are removed and
    counted in dup), else the content-hash split of trainX/."""
    if test is None:
        return split(train, cfg.test_fraction)
    test_keys = {e.key for e in test}
    dup["train_test_overlap_removed_from_train"] += sum(e.key in test_keys for e in train)
    return DomainSplit(tuple(sorted(e for e in train if e.key not in test_keys)), tuple(sorted(test)))


def load_folder_domains(cfg: "DataConfig", *, cache_dir: str | Path | None) -> Domains:
    root = Path(cfg.data_dir)
    if not root.is_dir():
        raise DataError(
            f"data_dir={str(root)!r} is not a folder. --dataset=folder expects trainA/ trainB/ (and "
            "optionally testA/ testB/) inside it, as in selfie2anime or horse2zebra."
        )
    present = {name: (root / name).is_dir() for name in LAYOUT}
    if not (present["trainA"] and present["trainB"]):
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
        examples, st = utkface.build_examples(root / name, cache_dir=cache_dir, labelled=False)
        parts[name] = examples
        skipped.update(st["skipped"])
        dup.update(st["duplicates"])
        files += st["files"]
        if name.startswith("train") and not examples:
            raise DataError(
                f"{str(root / name)!r} holds no usable image ({st['files']} files; skipped: {st['skipped']}). "
                "Put JPEG or PNG images there."
            )
    splits = {}
    for side in ("A", "B"):
        test = parts[f"test{side}"] if present[f"test{side}"] else None
        splits[side] = _train_test(parts[f"train{side}"], test, cfg, dup)
        if not splits[side].train:
            raise DataError(f"train{side}/ in {str(root)!r} has no training image left after the test split and overlap removal.")
    a, b = splits["A"], splits["B"]
    dup["in_both_domains"] = len({e.key for e in a.train + a.test} & {e.key for e in b.train + b.test})
    source = {
        "dataset": "folder", "path": str(root),
        "test_from_train": [s for s in ("A", "B") if not present[f"test{s}"]],
    }
    return _domains(a, b, source, files, skipped, dup, cfg)


def _domains(a: DomainSplit, b: DomainSplit, source: dict, files: int, skipped, dup, cfg) -> Domains:
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


# -- TFDS cycle_gan/<name> --------------------------------------------------------------------


def prepare_hint(name: str, data_dir: str | None) -> str:
    where = data_dir or "~/tensorflow_datasets"
    if name.split("/")[0].split(":")[0] == "utk_face":
        return (
            "Prepare it once from your own UTKFace copy (the tarballs or the folder of images):\n"
            f"    tfds build utk_face --imports=tfcyclegan.data.tfds_utkface --data_dir={where} --manual_dir=<UTKFace dir>\n"
            "or in Python:\n"
            "    import tensorflow_datasets as tfds, tfcyclegan.data.tfds_utkface\n"
            f"    tfds.builder('utk_face', data_dir={where!r}).download_and_prepare(\n"
            "        download_config=tfds.download.DownloadConfig(manual_dir='<UTKFace dir>'))\n"
            "or skip TFDS: --dataset=utkface --data_dir=<UTKFace dir> reads the same examples directly."
        )
    return (
        f"Prepare it once on a machine with network access:\n"
        f"    tfds build {name} --data_dir={where}\n"
        f"or in Python:\n"
        f"    import tensorflow_datasets as tfds; tfds.builder({name!r}, data_dir={where!r}).download_and_prepare()\n"
        f"then pass --data_dir={where} (copy the folder to this machine if needed). Training never downloads.\n"
        "(tensorflow-datasets 4.9 needs `pip install importlib_resources` to prepare datasets.)"
    )


def tfds_builder(name: str, data_dir: str | None):
    """The TFDS builder for `name`, refusing with a clear message if it is unknown or not prepared."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except (tfds.core.registered.DatasetNotFoundError, ValueError) as err:
        raise DataError(f"Unknown TFDS dataset --tfds_name={name!r}: {str(err).splitlines()[0]}") from err
    if not builder.is_prepared():
        raise DataError(
            f"The TFDS dataset {name!r} is not prepared in data_dir={data_dir or '~/tensorflow_datasets'!r}.\n"
            + prepare_hint(name, data_dir)
        )
    return builder


def read_split(builder, split_name: str, *, name_prefix: str) -> tuple[list[Example], collections.Counter]:
    """The examples of one TFDS split with encoded image bytes (not decoded), probed like files."""
    import tensorflow_datasets as tfds

    ds = builder.as_dataset(split=split_name, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    out, skipped = [], collections.Counter()
    for i, ex in enumerate(ds.as_numpy_iterator()):
        data = bytes(ex["image"])
        hw = utkface._probe(data)  # noqa: SLF001 - the same decodability test as files
        if hw is None:
            skipped[utkface.SKIP_CORRUPT] += 1
            continue
        out.append(Example(key=hashlib.md5(data).hexdigest(), name=f"{name_prefix}{i:06d}", height=hw[0], width=hw[1],
                           source=f"tfds:{builder.name}/{split_name}[{i}]", data=data))
    return out, skipped


def load_tfds_domains(cfg: "DataConfig") -> Domains:
    """TFDS cycle_gan/<name> (splits trainA, trainB, testA, testB), already prepared in cfg.data_dir."""
    name = cfg.tfds_name
    builder = tfds_builder(name, cfg.data_dir)
    splits = set(builder.info.splits.keys())
    if not {"trainA", "trainB"} <= splits:
        raise DataError(
            f"TFDS dataset {name!r} has splits {sorted(splits)}; --dataset=tfds with an unpaired dataset needs "
            "trainA and trainB (testA, testB optional), like cycle_gan/<name>. For UTKFace use --tfds_name=utk_face."
        )
    skipped: collections.Counter = collections.Counter()
    dup: collections.Counter = collections.Counter()
    parts = {}
    files = 0
    for split_name in LAYOUT:
        if split_name not in splits:
            continue
        examples, sk = read_split(builder, split_name, name_prefix=f"{split_name}/")
        files += len(examples) + sum(sk.values())
        skipped.update(sk)
        groups: dict[str, list[Example]] = collections.defaultdict(list)
        for e in examples:
            groups[e.key].append(e)
        kept, d = utkface.dedupe(groups)
        dup.update(d)
        parts[split_name] = kept
    result = {}
    for side in ("A", "B"):
        result[side] = _train_test(parts[f"train{side}"], parts.get(f"test{side}"), cfg, dup)
        if not result[side].train:
            raise DataError(f"TFDS dataset {name!r}: split train{side} has no usable image.")
    a, b = result["A"], result["B"]
    dup["in_both_domains"] = len({e.key for e in a.train + a.test} & {e.key for e in b.train + b.test})
    source = {"dataset": "tfds", "name": name, "data_dir": cfg.data_dir}
    return _domains(a, b, source, files, skipped, dup, cfg)
