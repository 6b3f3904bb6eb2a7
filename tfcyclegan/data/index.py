"""Indexing a folder or tarball of images: what is there, what decodes, what is a duplicate.

Every source goes through `build_examples`: files that are not images (by extension) are
ignored and counted; images that TensorFlow cannot decode (truncated, corrupt, empty) are
skipped and counted at indexing time, so the training pipeline never meets them; byte-identical
files are grouped by content hash (md5): a group whose labels disagree is dropped entirely, a
consistent group keeps one copy (the first name in sorted order). Both are counted. The md5
and decoded size of each file are cached by (relative path, size, mtime), so re-opening a large
folder reads only new or changed files.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import tarfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from tfcyclegan.data.types import DataError, Example

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")

# Skip reasons (keys of stats["skipped"]).
SKIP_NOT_IMAGE = "not_an_image"
SKIP_UNREADABLE = "unreadable_file"  # a broken link, a link loop
SKIP_CORRUPT = "corrupt_image"

# A label parser: file name -> ((age, gender, race), None), or (None, skip reason).
ParseLabels = Callable[[str], "tuple[tuple[int, int, int] | None, str | None]"]

_INDEX_VERSION = 1


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def is_tar_name(name: str) -> bool:
    return name.lower().endswith(TAR_SUFFIXES)


# -- indexing ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Candidate:
    """A file seen while indexing, before decoding/dedupe (internal)."""

    name: str
    relpath: str
    source: str
    size: int
    mtime_ns: int
    data: bytes | None = None


def probe(data: bytes) -> tuple[int, int] | None:
    """(height, width) if TensorFlow decodes the bytes, like the training pipeline will; else None."""
    import tensorflow as tf  # local: indexing names needs no TF

    if not data:
        return None
    try:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError, ValueError):
        return None
    h, w = int(image.shape[0]), int(image.shape[1])
    if h < 1 or w < 1:
        return None
    return h, w


class IndexCache:
    """Per-file md5 and decoded size, keyed by (relative path, size, mtime): JSON in the cache dir.

    Re-indexing a 23k-file folder reads and decodes every file (tens of seconds); with this
    cache only new or changed files are read again.
    """

    def __init__(self, root: Path | None, source_id: str):
        self.path = None
        self.entries: dict[str, list] = {}
        self.dirty = False
        if root is None:
            return
        digest = hashlib.sha1(source_id.encode()).hexdigest()[:16]
        self.path = Path(root) / "index" / f"{digest}.json"
        try:
            raw = json.loads(self.path.read_text())
            if raw.get("version") == _INDEX_VERSION and raw.get("source") == source_id:
                self.entries = raw["entries"]
        except (OSError, ValueError, KeyError):
            pass

    def get(self, c: Candidate):
        e = self.entries.get(c.relpath)
        if e and e[0] == c.size and e[1] == c.mtime_ns:
            return e[2], e[3]  # md5, [h, w] or None
        return None

    def put(self, c: Candidate, md5: str, hw):
        self.entries[c.relpath] = [c.size, c.mtime_ns, md5, list(hw) if hw else None]
        self.dirty = True

    def save(self, source_id: str, keep: Iterable[str]):
        if self.path is None:
            return
        keep = set(keep)
        if set(self.entries) - keep:
            self.entries = {k: v for k, v in self.entries.items() if k in keep}
            self.dirty = True
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"version": _INDEX_VERSION, "source": source_id, "entries": self.entries}))
            os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only cache only costs time


def scan(path: str | os.PathLike, counts: collections.Counter, ignore: Iterable[str] = ()) -> Iterator[Candidate]:
    """Every regular file under `path` (a folder, walked recursively in sorted order, or a
    tarball); tarballs inside a folder are read too. Non-image files are counted and skipped,
    except names in `ignore` (our own bookkeeping files)."""
    ignore = set(ignore)
    path = Path(path)
    if path.is_file():
        if not is_tar_name(path.name):
            raise DataError(
                f"data_dir={str(path)!r} is a file but not a .tar.gz/.tgz/.tar archive. "
                "Pass a folder of UTKFace images or the official tarball (UTKFace.tar.gz, crop_part1.tar.gz)."
            )
        yield from _scan_tar(path, counts)
        return
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for fname in sorted(files):
            full = Path(root) / fname
            if fname in ignore:
                continue
            if is_tar_name(fname):
                yield from _scan_tar(full, counts)
                continue
            if not is_image_name(fname):
                counts[SKIP_NOT_IMAGE] += 1
                continue
            try:
                st = full.stat()
                if not full.is_file():
                    raise IsADirectoryError(str(full))
            except OSError:  # a broken link, a link loop, a file gone since the walk
                counts[SKIP_UNREADABLE] += 1
                continue
            yield Candidate(fname, str(full.relative_to(path)), str(full), st.st_size, st.st_mtime_ns)


def _scan_tar(path: Path, counts: collections.Counter) -> Iterator[Candidate]:
    try:
        archive = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as err:
        raise DataError(f"Cannot read the archive {str(path)!r}: {err}. Is it a complete .tar.gz download?") from err
    with archive:
        try:
            for member in archive:
                if not member.isfile():
                    continue
                fname = member.name.rsplit("/", 1)[-1]
                if not is_image_name(fname):
                    counts[SKIP_NOT_IMAGE] += 1
                    continue
                data = archive.extractfile(member).read()
                yield Candidate(fname, member.name, f"{path}::{member.name}", member.size, int(member.mtime), data)
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DataError(
                f"The archive {str(path)!r} is truncated or corrupt ({err}). Download it again."
            ) from err


def index_files(candidates: Sequence[Candidate], cache: IndexCache, *, workers: int = 4) -> list[tuple[Candidate, str, tuple[int, int] | None]]:
    """(candidate, md5, (h, w) or None if undecodable) for each candidate, using the cache."""
    out: list = [None] * len(candidates)
    todo = []
    for i, c in enumerate(candidates):
        hit = cache.get(c) if c.data is None else None
        if hit is not None:
            out[i] = (c, hit[0], tuple(hit[1]) if hit[1] else None)
        else:
            todo.append(i)

    def work(i):
        c = candidates[i]
        try:
            data = c.data if c.data is not None else Path(c.source).read_bytes()
        except OSError:  # no permission, gone since the scan
            return i, None, None
        return i, hashlib.md5(data).hexdigest(), probe(data)

    if todo:
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            for i, md5, hw in pool.map(work, todo):
                c = candidates[i]
                out[i] = (c, md5, hw)
                if c.data is None and md5 is not None:
                    cache.put(c, md5, hw)
    return out


# -- examples: skip, dedupe --------------------------------------------------------------------


def build_examples(
    path: str | os.PathLike, *, cache_dir: str | os.PathLike | None, parse_labels: ParseLabels | None = None,
    ignore: Iterable[str] = (),
) -> tuple[list[Example], dict]:
    """All usable examples under `path` (folder or tarball) after the skip and dedupe policy.

    parse_labels: reads the labels from a file name (a name it cannot read is skipped and
    counted under the reason it gives); None reads any image name and leaves the labels None
    (unpaired folders). ignore: file names that are not data (our own bookkeeping files).
    Returns (examples sorted by (key, name), stats) with stats = {"files": n, "skipped":
    {reason: n}, "duplicates": {...}, "images": n_usable}.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"data_dir={str(path)!r} does not exist. Pass a folder of UTKFace images or the official "
            "tarball (UTKFace.tar.gz or crop_part1.tar.gz)."
        )
    counts: collections.Counter = collections.Counter()
    candidates, labels = [], []
    for c in scan(path, counts, ignore):
        if parse_labels is not None:
            lab, reason = parse_labels(c.name)
            if lab is None:
                counts[reason] += 1
                continue
        else:
            lab = (None, None, None)
        candidates.append(c)
        labels.append(lab)
    skipped_before_reading = sum(counts.values())
    source_id = f"{path.resolve()}"
    cache = IndexCache(Path(cache_dir) if cache_dir else None, source_id)
    indexed = index_files(candidates, cache)
    cache.save(source_id, (c.relpath for c in candidates if c.data is None))

    groups: dict[str, list[Example]] = collections.defaultdict(list)
    for (c, md5, hw), lab in zip(indexed, labels):
        if md5 is None:
            counts[SKIP_UNREADABLE] += 1
            continue
        if hw is None:
            counts[SKIP_CORRUPT] += 1
            continue
        groups[md5].append(
            Example(key=md5, name=c.name, age=lab[0], gender=lab[1], race=lab[2], height=hw[0], width=hw[1],
                    source=c.source, data=c.data)
        )
    examples, dup = dedupe(groups)
    stats = {
        # Every file seen: the candidates (read, whatever came of it) and those skipped before reading.
        "files": len(candidates) + skipped_before_reading,
        "images": len(examples),
        "skipped": {k: counts[k] for k in sorted(counts)},
        "duplicates": dup,
    }
    return examples, stats


def dedupe(groups: Mapping[str, list[Example]]) -> tuple[list[Example], dict]:
    """One example per content hash; groups with conflicting labels are dropped whole."""
    kept: list[Example] = []
    dup = {"conflicting_groups": 0, "conflicting_files_dropped": 0, "consistent_groups": 0, "copies_merged": 0}
    for key in sorted(groups):
        group = sorted(groups[key])
        if len(group) == 1:
            kept.append(group[0])
            continue
        if len({e.labels for e in group}) > 1:
            dup["conflicting_groups"] += 1
            dup["conflicting_files_dropped"] += len(group)
            continue
        dup["consistent_groups"] += 1
        dup["copies_merged"] += len(group) - 1
        kept.append(group[0])
    return kept, dup
