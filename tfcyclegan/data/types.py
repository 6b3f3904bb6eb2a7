"""The values every data source produces: examples, domains and their splits, and DataError."""

from __future__ import annotations

import dataclasses
from pathlib import Path


class DataError(ValueError):
    """Bad input data: the message names the path, flag or filter, the counts found, and what to do."""


@dataclasses.dataclass(frozen=True, order=True)
class Example:
    """One image. Sorted by content hash, then name: the stable order of every split.

    key: md5 of the encoded bytes (hex), the identity used for dedupe and the split.
    name: the file name (base name; for archives the member's base name).
    age, gender, race: UTKFace labels, or None for unlabelled folder images.
    height, width: the decoded size in pixels.
    source: where the bytes live: a file path, or "<archive>::<member>" (display only).
    data: the encoded bytes when the image lives in memory (tarballs, TFDS); None for files.
    """

    key: str
    name: str
    age: int | None = None
    gender: int | None = None
    race: int | None = None
    height: int = 0
    width: int = 0
    source: str = dataclasses.field(default="", compare=False)
    data: bytes | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def labels(self) -> tuple[int | None, int | None, int | None]:
        return (self.age, self.gender, self.race)

    @property
    def path(self) -> str | None:
        """The file on disk, or None when the bytes are held in memory."""
        return None if self.data is not None else self.source

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        return Path(self.source).read_bytes()


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
    "unused": n, "upsampled": {size: n}}. See docs/data.md.
    """

    a: DomainSplit
    b: DomainSplit
    stats: dict
    # Decoded images kept between epochs by the pipeline (not part of the value).
    _memo: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)
