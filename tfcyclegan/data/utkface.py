"""UTKFace: file names -> labels, domain filters and tasks, indexing, dedupe and the split.

UTKFace names carry the labels: `[age]_[gender]_[race]_[date&time].jpg.chip.jpg` (also plain
`.jpg`); gender 0 male, 1 female; race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others.

The policy, applied identically to a folder, the official tarballs, the TFDS builder and the
synthetic faces (they all go through `build_examples`):

- A name whose three labels are readable is accepted even if the rest is malformed (a
  timestamp with 16 or 18 digits, a space or a missing dot before the extension). A name whose
  label is missing or invalid is skipped and counted under its reason.
- Files that are not images (by extension) are ignored and counted; images that TensorFlow
  cannot decode (truncated, corrupt, empty) are skipped and counted at indexing time, so the
  training pipeline never meets them.
- Byte-identical files are grouped by content hash (md5). A group whose labels disagree is
  dropped entirely; a consistent group keeps one copy (the first name in sorted order). Both
  are counted.
- The train/test split is a function of the content hash alone, so it is the same on every
  run and machine, and two copies of one image can never sit on both sides.
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
from typing import Iterable, Iterator, Mapping, Sequence

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
GENDERS = {"male": 0, "female": 1}
RACES = {"white": 0, "black": 1, "asian": 2, "indian": 3, "others": 4, "other": 4}
MAX_AGE = 130

# Named tasks are presets of the custom filter mechanism: (domain A, domain B).
TASK_FILTERS: Mapping[str, tuple[str, str]] = {
    "age": ("age:20-29", "age:50-59"),
    "ethnicity": ("race:0", "race:1"),
    "gender": ("gender:0", "gender:1"),
}

# Skip reasons (keys of stats["skipped"]).
SKIP_NOT_IMAGE = "not_an_image"
SKIP_MISSING_LABEL = "missing_label"
SKIP_INVALID_LABEL = "invalid_label"
SKIP_CORRUPT = "corrupt_image"

_INDEX_VERSION = 1


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


# -- names ----------------------------------------------------------------------------------


def parse_name(name: str) -> tuple[tuple[int, int, int] | None, str | None]:
    """Labels from a UTKFace file name.

    Returns ((age, gender, race), None) when the three labels are readable, else
    (None, reason) with reason "missing_label" (fewer than three labels before the timestamp)
    or "invalid_label" (a label that is not a number in range).
    """
    fields = name.split("_")
    if len(fields) < 4:
        return None, SKIP_MISSING_LABEL
    values = [f.strip() for f in fields[:3]]
    if not all(v.isdigit() and v.isascii() for v in values):
        return None, SKIP_INVALID_LABEL
    age, gender, race = (int(v) for v in values)
    if not (0 <= age <= MAX_AGE and gender in (0, 1) and 0 <= race <= 4):
        return None, SKIP_INVALID_LABEL
    return (age, gender, race), None


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def is_tar_name(name: str) -> bool:
    return name.lower().endswith(TAR_SUFFIXES)


# -- domain filters ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DomainFilter:
    """A conjunction of label constraints, parsed from text like "age:20-29,gender:1".

    Terms are `key:value` joined by commas; keys are age, gender, race; a value is a number,
    an inclusive range `lo-hi` (`60-` is open-ended), or alternatives joined by `|`
    (`race:2|3|4`); gender and race also accept names (`gender:female`, `race:black`).
    """

    text: str
    allowed: tuple[tuple[str, tuple[tuple[int, int], ...]], ...]

    @classmethod
    def parse(cls, text: str, *, flag: str = "domain filter") -> "DomainFilter":
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{flag} is empty. Use e.g. 'age:20-29,gender:1'. Received: {text!r}")
        terms: dict[str, list[tuple[int, int]]] = {}
        for term in text.split(","):
            key, sep, value = term.strip().partition(":")
            key = key.strip().lower()
            if not sep or key not in ("age", "gender", "race") or not value.strip():
                raise DataError(
                    f"{flag}={text!r}: cannot read the term {term.strip()!r}. Terms are key:value with key "
                    "age, gender or race, e.g. 'age:20-29,gender:1' or 'race:2|3|4'."
                )
            ranges = []
            for alt in value.split("|"):
                ranges.append(_parse_range(key, alt.strip(), flag=flag, whole=text))
            if key in terms:  # the same key twice: both must hold
                raise DataError(f"{flag}={text!r}: the key {key!r} appears twice; use '|' for alternatives.")
            terms[key] = ranges
        allowed = tuple((k, tuple(v)) for k, v in sorted(terms.items()))
        return cls(text=text, allowed=allowed)

    def matches(self, age: int | None, gender: int | None, race: int | None) -> bool:
        values = {"age": age, "gender": gender, "race": race}
        for key, ranges in self.allowed:
            v = values[key]
            if v is None or not any(lo <= v <= hi for lo, hi in ranges):
                return False
        return True

    def __str__(self) -> str:
        return self.text


def _parse_range(key: str, text: str, *, flag: str, whole: str) -> tuple[int, int]:
    names = GENDERS if key == "gender" else RACES if key == "race" else {}
    if text.lower() in names:
        v = names[text.lower()]
        return (v, v)
    lo, sep, hi = text.partition("-")
    try:
        lo_v = int(lo)
        hi_v = (int(hi) if hi.strip() else MAX_AGE) if sep else lo_v
    except ValueError:
        valid = f" or one of {', '.join(sorted(names))}" if names else ""
        raise DataError(
            f"{flag}={whole!r}: {key} value {text!r} is not a number or range lo-hi{valid}."
        ) from None
    if lo_v > hi_v:
        raise DataError(f"{flag}={whole!r}: {key} range {text!r} is empty (lo > hi).")
    return (lo_v, hi_v)


def task_filters(task: str, domain_a: str | None = None, domain_b: str | None = None) -> tuple[DomainFilter, DomainFilter]:
    """The two domain filters: the custom ones when given, else the named task's."""
    if domain_a is not None or domain_b is not None:
        if domain_a is None or domain_b is None:
            raise DataError("--domain_a and --domain_b go together: give both or neither.")
        return DomainFilter.parse(domain_a, flag="--domain_a"), DomainFilter.parse(domain_b, flag="--domain_b")
    if task not in TASK_FILTERS:
        raise DataError(f"Unknown task {task!r}. Valid tasks: {', '.join(TASK_FILTERS)}")
    a, b = TASK_FILTERS[task]
    return DomainFilter.parse(a, flag=f"task {task} (A)"), DomainFilter.parse(b, flag=f"task {task} (B)")


# -- the split --------------------------------------------------------------------------------


def split_fraction(key: str) -> float:
    """A number in [0, 1) that depends only on the content hash (stable everywhere)."""
    digest = hashlib.sha256(("tfcyclegan-split:" + key).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def is_test(key: str, test_fraction: float) -> bool:
    return split_fraction(key) < test_fraction


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


def _probe(data: bytes) -> tuple[int, int] | None:
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


def default_cache_dir() -> Path:
    env = os.environ.get("TFCYCLEGAN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "tfcyclegan"


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
            st = full.stat()
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
        data = c.data if c.data is not None else Path(c.source).read_bytes()
        return i, hashlib.md5(data).hexdigest(), _probe(data)

    if todo:
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            for i, md5, hw in pool.map(work, todo):
                c = candidates[i]
                out[i] = (c, md5, hw)
                if c.data is None:
                    cache.put(c, md5, hw)
    return out


# -- examples: skip, dedupe --------------------------------------------------------------------


def build_examples(
    path: str | os.PathLike, *, cache_dir: str | os.PathLike | None, labelled: bool = True, ignore: Iterable[str] = ()
) -> tuple[list[Example], dict]:
    """All usable examples under `path` (folder or tarball) after the skip and dedupe policy.

    Returns (examples sorted by (key, name), stats) with stats = {"files": n, "skipped":
    {reason: n}, "duplicates": {...}, "images": n_usable}. labelled=False reads any image names
    (unpaired folders) and leaves the labels None.
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
        if labelled:
            lab, reason = parse_name(c.name)
            if lab is None:
                counts[reason] += 1
                continue
        else:
            lab = (None, None, None)
        candidates.append(c)
        labels.append(lab)
    source_id = f"{path.resolve()}"
    cache = IndexCache(Path(cache_dir) if cache_dir else None, source_id)
    indexed = index_files(candidates, cache)
    cache.save(source_id, (c.relpath for c in candidates if c.data is None))

    groups: dict[str, list[Example]] = collections.defaultdict(list)
    for (c, md5, hw), lab in zip(indexed, labels):
        if hw is None:
            counts[SKIP_CORRUPT] += 1
            continue
        groups[md5].append(
            Example(key=md5, name=c.name, age=lab[0], gender=lab[1], race=lab[2], height=hw[0], width=hw[1],
                    source=c.source, data=c.data)
        )
    examples, dup = dedupe(groups)
    stats = {
        "files": len(candidates) + counts[SKIP_NOT_IMAGE] + counts[SKIP_MISSING_LABEL] + counts[SKIP_INVALID_LABEL],
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


def describe_labels(examples: Sequence[Example]) -> str:
    """A short summary of what is there, for error messages."""
    if not examples:
        return "no usable images"
    ages = [e.age for e in examples if e.age is not None]
    g = collections.Counter(e.gender for e in examples)
    r = collections.Counter(e.race for e in examples)
    decades = collections.Counter(min(a // 10 * 10, 90) for a in ages)
    dec = ", ".join(f"{d}s: {n}" for d, n in sorted(decades.items()))
    return (
        f"{len(examples)} usable images; ages {min(ages)}-{max(ages)} ({dec}); "
        f"gender {dict(sorted(g.items()))}; race {dict(sorted(r.items()))}"
    )
