"""TFDS: a builder `utk_face` that reads the user's own UTKFace copy, and TFDS cycle_gan/<name>.

    import tensorflow_datasets as tfds
    import tfcyclegan.data.tfds  # registers "utk_face"

    builder = tfds.builder("utk_face", data_dir="~/tensorflow_datasets")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir="/path/to/UTKFace-or-tarballs"))
    ds = builder.as_dataset(split="train")

The manual directory holds the official tarballs (UTKFace.tar.gz, crop_part1.tar.gz) or the
extracted images. Examples are produced by the same code as the folder reader
(`tfcyclegan.data.utkface.build_examples`): malformed names and undecodable files are skipped,
byte-identical duplicates merged or (with conflicting labels) dropped, and the split is the
content-hash split with 10% test. The image bytes are stored unchanged. The skip and duplicate
counts are kept in `builder.info.metadata`.

Then train with `--dataset=tfds --tfds_name=utk_face --data_dir=~/tensorflow_datasets`.
"""

from __future__ import annotations

import collections
import hashlib
from typing import TYPE_CHECKING

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from tfcyclegan.data import folders, index, utkface
from tfcyclegan.data.types import DataError, Domains, DomainSplit, Example

if TYPE_CHECKING:  # pragma: no cover
    from tfcyclegan.config import DataConfig

TEST_FRACTION = 0.1


class UtkFace(tfds.core.GeneratorBasedBuilder):
    """UTKFace "Aligned & Cropped Faces" from a manual directory, deduplicated, hash-split."""

    # TFDS finds a builder's source file through importlib_resources, a package it does not
    # declare as a dependency (tensorflow-datasets 4.9.x); naming the file here avoids that.
    code_path = epath.Path(__file__)
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release (tfcyclegan)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download UTKFace ("Aligned & Cropped Faces": UTKFace.tar.gz, and/or crop_part1.tar.gz) from
    the authors' page (https://susanqq.github.io/UTKFace/; non-commercial research use only) and
    place the tarballs, or the extracted folder of images, in the manual directory
    (`download_config=tfds.download.DownloadConfig(manual_dir=...)`, default
    <data_dir>/downloads/manual/).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="UTKFace faces with age, gender and race labels parsed from the file names.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "age": tfds.features.Scalar(dtype=np.int32),
                "gender": tfds.features.ClassLabel(names=["male", "female"]),
                "race": tfds.features.ClassLabel(names=["white", "black", "asian", "indian", "others"]),
                "filename": tfds.features.Text(),
                "md5": tfds.features.Text(),
                "height": tfds.features.Scalar(dtype=np.int32),
                "width": tfds.features.Scalar(dtype=np.int32),
            }),
            supervised_keys=None,
            homepage="https://susanqq.github.io/UTKFace/",
            metadata=tfds.core.MetadataDict(),
            citation="""@inproceedings{zhifei2017cvpr,
  title={Age Progression/Regression by Conditional Adversarial Autoencoder},
  author={Zhang, Zhifei and Song, Yang and Qi, Hairong},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2017}}""",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        examples, stats = utkface.build_examples(dl_manager.manual_dir, cache_dir=None)
        if not examples:
            raise DataError(
                f"No usable UTKFace image in the manual dir {str(dl_manager.manual_dir)!r} "
                f"({stats['files']} files; skipped: {stats['skipped']})."
            )
        self.info.metadata.update({"files": stats["files"], "images": stats["images"],
                                   "skipped": stats["skipped"], "duplicates": stats["duplicates"]})
        train = [e for e in examples if not utkface.is_test(e.key, TEST_FRACTION)]
        test = [e for e in examples if utkface.is_test(e.key, TEST_FRACTION)]
        return {"train": self._generate_examples(train), "test": self._generate_examples(test)}

    def _generate_examples(self, examples):
        for e in examples:
            yield e.key, {
                "image": e.read_bytes(),
                "age": e.age,
                "gender": e.gender,
                "race": e.race,
                "filename": e.name,
                "md5": e.key,
                "height": e.height,
                "width": e.width,
            }


def load_examples(name: str, *, data_dir: str | None) -> tuple[list[Example], dict]:
    """All examples of the prepared `utk_face` dataset (both splits), as the folder reader gives them.

    Returns (examples sorted by (key, name), stats) like `utkface.build_examples`.
    """
    builder = tfds_builder(name, data_dir)
    ds = builder.as_dataset(split="train+test", shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    examples = []
    for batch in ds.batch(1024).as_numpy_iterator():  # batched: per-element iteration is slow
        for i in range(len(batch["md5"])):
            data = bytes(batch["image"][i])
            key = batch["md5"][i].decode()
            if hashlib.md5(data).hexdigest() != key:
                raise DataError(f"The TFDS dataset {name!r} in {data_dir!r} is corrupt (md5 mismatch); prepare it again.")
            examples.append(Example(
                key=key, name=batch["filename"][i].decode(), age=int(batch["age"][i]), gender=int(batch["gender"][i]),
                race=int(batch["race"][i]), height=int(batch["height"][i]), width=int(batch["width"][i]), source=f"tfds:{name}[{key}]", data=data,
            ))
    meta = dict(builder.info.metadata or {})
    stats = {
        "files": meta.get("files", len(examples)),
        "images": len(examples),
        "skipped": dict(meta.get("skipped", {})),
        "duplicates": dict(meta.get("duplicates", {})),
    }
    return sorted(examples), stats


# -- TFDS cycle_gan/<name> --------------------------------------------------------------------


def prepare_hint(name: str, data_dir: str | None) -> str:
    where = data_dir or "~/tensorflow_datasets"
    if name.split("/")[0].split(":")[0] == "utk_face":
        return (
            "Prepare it once from your own UTKFace copy (the tarballs or the folder of images):\n"
            f"    tfds build utk_face --imports=tfcyclegan.data.tfds --data_dir={where} --manual_dir=<UTKFace dir>\n"
            "or in Python:\n"
            "    import tensorflow_datasets as tfds, tfcyclegan.data.tfds\n"
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
    ds = builder.as_dataset(split=split_name, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    out, skipped = [], collections.Counter()
    for i, ex in enumerate(ds.as_numpy_iterator()):
        data = bytes(ex["image"])
        hw = index.probe(data)  # the same decodability test as files
        if hw is None:
            skipped[index.SKIP_CORRUPT] += 1
            continue
        out.append(Example(key=hashlib.md5(data).hexdigest(), name=f"{name_prefix}{i:06d}", height=hw[0], width=hw[1],
                           source=f"tfds:{builder.name}/{split_name}[{i}]", data=data))
    return out, skipped


def load_tfds_domains(cfg: "DataConfig", *, single: bool = False) -> Domains:
    """TFDS cycle_gan/<name> (splits trainA, trainB, testA, testB), already prepared in cfg.data_dir;
    with single=True only trainA (testA)."""
    name = cfg.tfds_name
    builder = tfds_builder(name, cfg.data_dir)
    sides = ("A",) if single else ("A", "B")
    splits = {s for s in builder.info.splits.keys() if s[-1] in sides}
    if not {f"train{side}" for side in sides} <= splits:
        raise DataError(
            f"TFDS dataset {name!r} has splits {sorted(splits)}; --dataset=tfds with an unpaired dataset needs "
            "trainA and trainB (testA, testB optional), like cycle_gan/<name>. For UTKFace use --tfds_name=utk_face."
        )
    skipped: collections.Counter = collections.Counter()
    dup: collections.Counter = collections.Counter()
    parts = {}
    files = 0
    for split_name in folders.LAYOUT:
        if split_name not in splits:
            continue
        examples, sk = read_split(builder, split_name, name_prefix=f"{split_name}/")
        files += len(examples) + sum(sk.values())
        skipped.update(sk)
        groups: dict[str, list[Example]] = collections.defaultdict(list)
        for e in examples:
            groups[e.key].append(e)
        kept, d = index.dedupe(groups)
        dup.update(d)
        parts[split_name] = kept
    result = {"B": DomainSplit((), ())}
    for side in sides:
        result[side] = folders.train_test(parts[f"train{side}"], parts.get(f"test{side}"), cfg, dup)
        if not result[side].train:
            raise DataError(f"TFDS dataset {name!r}: split train{side} has no usable image.")
    a, b = result["A"], result["B"]
    dup["in_both_domains"] = len({e.key for e in a.train + a.test} & {e.key for e in b.train + b.test})
    source = {"dataset": "tfds", "name": name, "data_dir": cfg.data_dir}
    return folders.make_domains(a, b, source, files, skipped, dup, cfg)
