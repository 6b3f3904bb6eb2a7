"""load_domains: any source -> two domains (A, B), each split into train and test, plus statistics."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from tfcyclegan.data import synthetic, utkface
from tfcyclegan.data.pipeline import load_size
from tfcyclegan.data.utkface import DataError, Example

if TYPE_CHECKING:  # pragma: no cover
    from tfcyclegan.config import DataConfig

# Stage sizes reported in stats["upsampled"].
REPORTED_SIZES = (32, 48, 64, 96, 128, 256)


@dataclasses.dataclass(frozen=True)
class DomainSplit:
    """The examples of one domain, each split in its stable order (sorted by content hash)."""

    train: tuple[Example, ...]
    test: tuple[Example, ...]


@dataclasses.dataclass(frozen=True)
class Domains:
    """Domain A and domain B, and JSON-able statistics of how they were built.

    stats: {"source": {...}, "files": n, "images": n, "domains": {"a": {"train": n, "test": n},
    "b": {...}}, "filters": {"a": str, "b": str}, "skipped": {reason: n}, "duplicates": {...},
    "unused": n, "upsampled": {size: n}}. See README, "Data".
    """

    a: DomainSplit
    b: DomainSplit
    stats: dict
    # Decoded images kept between epochs by the pipeline (not part of the value).
    _memo: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)


def load_domains(cfg: "DataConfig", *, cache_dir: str | None = None) -> Domains:
    """Reads the configured source and returns the two domains.

    dataset="synthetic": generated on first use into cache_dir (default $TFCYCLEGAN_CACHE or
      ~/.cache/tfcyclegan), then read like a UTKFace folder.
    dataset="utkface": cfg.data_dir is a folder of UTKFace images (searched recursively; .tar.gz
      archives inside are read too) or one of the official tarballs.
    dataset="folder": trainA/ trainB/ (testA/ testB/) in cfg.data_dir.
    dataset="tfds": cfg.tfds_name ("utk_face" or "cycle_gan/<name>") prepared in cfg.data_dir.

    Raises DataError for a missing path, an empty domain or a filter that matches nothing.
    """
    cache_root = Path(cache_dir) if cache_dir else utkface.default_cache_dir()
    if cfg.dataset == "synthetic":
        try:
            folder = synthetic.ensure(cache_root, count=cfg.synthetic_count, seed=cfg.synthetic_seed)
        except OSError as err:
            raise DataError(
                f"Cannot write the synthetic faces to the cache folder {str(cache_root)!r} ({err}). "
                "Set $TFCYCLEGAN_CACHE to a writable folder."
            ) from err
        examples, stats = utkface.build_examples(folder, cache_dir=cache_root, ignore=synthetic.BOOKKEEPING)
        source = {"dataset": "synthetic", "path": str(folder), "seed": cfg.synthetic_seed,
                  "count": cfg.synthetic_count, "version": synthetic.VERSION}
        return labelled_domains(examples, stats, cfg, source)
    if cfg.dataset == "utkface":
        examples, stats = utkface.build_examples(cfg.data_dir, cache_dir=cache_root)
        kind = "tarball" if Path(cfg.data_dir).is_file() else "folder"
        return labelled_domains(examples, stats, cfg, {"dataset": "utkface", "path": str(cfg.data_dir), "kind": kind})
    if cfg.dataset == "folder":
        from tfcyclegan.data import folders

        return folders.load_folder_domains(cfg, cache_dir=cache_root)
    if cfg.dataset == "tfds":
        name = cfg.tfds_name or ""
        if name.split("/")[0].split(":")[0] == "utk_face":
            from tfcyclegan.data import tfds_utkface

            examples, stats = tfds_utkface.load_examples(name, data_dir=cfg.data_dir)
            return labelled_domains(examples, stats, cfg, {"dataset": "tfds", "name": name, "data_dir": cfg.data_dir})
        from tfcyclegan.data import folders

        return folders.load_tfds_domains(cfg)
    raise DataError(f"Unknown dataset {cfg.dataset!r}. Valid: synthetic, utkface, folder, tfds")


def labelled_domains(examples: Sequence[Example], stats: dict, cfg: "DataConfig", source: dict) -> Domains:
    """UTKFace-labelled examples -> Domains by the task or custom filters and the hash split."""
    filter_a, filter_b = utkface.task_filters(cfg.task, cfg.domain_a, cfg.domain_b)
    flags = ("--domain_a", "--domain_b") if cfg.domain_a is not None else (f"--task={cfg.task} (A)", f"--task={cfg.task} (B)")
    a = [e for e in examples if filter_a.matches(*e.labels)]
    b = [e for e in examples if filter_b.matches(*e.labels)]
    where = source.get("path") or source.get("name")
    for flag, filt, found in ((flags[0], filter_a, a), (flags[1], filter_b, b)):
        if not found:
            raise DataError(
                f"{flag} filter {filt.text!r} matches no image in {where!r}. Found there: "
                f"{utkface.describe_labels(examples)}; skipped: {stats['skipped']}. Adjust the filter or --data_dir."
            )
    overlap = {e.key for e in a} & {e.key for e in b}
    if overlap:
        raise DataError(
            f"The domain filters {filter_a.text!r} and {filter_b.text!r} overlap: {len(overlap)} images match both "
            f"(of {len(a)} in A and {len(b)} in B). Make the filters disjoint."
        )
    split_a, split_b = split(a, cfg.test_fraction), split(b, cfg.test_fraction)
    for name, flag, filt, part, found in (("A", flags[0], filter_a, split_a, a), ("B", flags[1], filter_b, split_b, b)):
        if not part.train:
            raise DataError(
                f"Domain {name} ({flag} {filt.text!r}) has {len(found)} images and all fall in the test split "
                f"(test_fraction={cfg.test_fraction}). Use more images or a smaller --test_fraction."
            )
    out_stats = {
        "source": source,
        "files": stats["files"],
        "images": stats["images"],
        "domains": _counts(split_a, split_b),
        "filters": {"a": filter_a.text, "b": filter_b.text},
        "skipped": stats["skipped"],
        "duplicates": stats["duplicates"],
        "unused": len(examples) - len(a) - len(b),
        "upsampled": upsampled_counts(a + b, cfg.preprocess),
    }
    return Domains(a=split_a, b=split_b, stats=out_stats)


def split(examples: Sequence[Example], test_fraction: float) -> DomainSplit:
    """Train/test by content hash (stable everywhere), each side sorted by (key, name)."""
    train, test = [], []
    for e in sorted(examples):
        (test if utkface.is_test(e.key, test_fraction) else train).append(e)
    return DomainSplit(train=tuple(train), test=tuple(test))


def _counts(a: DomainSplit, b: DomainSplit) -> dict:
    return {
        "a": {"train": len(a.train), "test": len(a.test)},
        "b": {"train": len(b.train), "test": len(b.test)},
    }


def count_upsampled(examples: Sequence[Example], size: int, preprocess: str) -> int:
    """How many images are smaller than what a stage of `size` px resizes or crops them to."""
    need = load_size(size, preprocess)
    return sum(1 for e in examples if min(e.height, e.width) < need)


def upsampled_counts(examples: Sequence[Example], preprocess: str) -> dict:
    """{"<size>": n} for the usual stage sizes: images that will be upsampled at that size."""
    return {str(s): count_upsampled(examples, s, preprocess) for s in REPORTED_SIZES}
