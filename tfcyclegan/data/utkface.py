"""UTKFace: file names -> labels, domain filters and tasks, the split, and labelled domains.

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
import dataclasses
import hashlib
import os
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from tfcyclegan.data import index
from tfcyclegan.data.pipeline import upsampled_counts
from tfcyclegan.data.types import DataError, DomainSplit, Domains, Example

if TYPE_CHECKING:  # pragma: no cover
    from tfcyclegan.config import DataConfig

GENDERS = {"male": 0, "female": 1}
RACES = {"white": 0, "black": 1, "asian": 2, "indian": 3, "others": 4, "other": 4}
MAX_AGE = 130

# Skip reasons of a name (keys of stats["skipped"], beside index.SKIP_NOT_IMAGE and SKIP_CORRUPT).
SKIP_MISSING_LABEL = "missing_label"
SKIP_INVALID_LABEL = "invalid_label"

# Named tasks are presets of the custom filter mechanism: (domain A, domain B).
TASK_FILTERS: Mapping[str, tuple[str, str]] = {
    "age": ("age:20-29", "age:50-59"),
    "ethnicity": ("race:0", "race:1"),
    "gender": ("gender:0", "gender:1"),
}




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


def split(examples: Sequence[Example], test_fraction: float) -> DomainSplit:
    """Train/test by content hash (stable everywhere), each side sorted by (key, name)."""
    train, test = [], []
    for e in sorted(examples):
        (test if is_test(e.key, test_fraction) else train).append(e)
    return DomainSplit(train=tuple(train), test=tuple(test))


# -- examples and domains ---------------------------------------------------------------------


def build_examples(path: str | os.PathLike, *, cache_dir: str | os.PathLike | None, ignore: Iterable[str] = ()):
    """index.build_examples with labels from UTKFace file names: (examples, stats)."""
    return index.build_examples(path, cache_dir=cache_dir, parse_labels=parse_name, ignore=ignore)


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


def labelled_domains(examples: Sequence[Example], stats: dict, cfg: "DataConfig", source: dict, *,
                     single: bool = False) -> Domains:
    """UTKFace-labelled examples -> Domains by the task or custom filters and the hash split.

    single: one domain (unconditional generation): A is --domain_a when given, else the task's
    domain A; B is empty.
    """
    if single:
        filter_a = (DomainFilter.parse(cfg.domain_a, flag="--domain_a") if cfg.domain_a is not None
                    else task_filters(cfg.task)[0])
        groups = [("A", "--domain_a" if cfg.domain_a is not None else f"--task={cfg.task} (A)", filter_a)]
    else:
        filter_a, filter_b = task_filters(cfg.task, cfg.domain_a, cfg.domain_b)
        flags = ("--domain_a", "--domain_b") if cfg.domain_a is not None else (f"--task={cfg.task} (A)", f"--task={cfg.task} (B)")
        groups = [("A", flags[0], filter_a), ("B", flags[1], filter_b)]
    where = source.get("path") or source.get("name")
    found = {name: [e for e in examples if filt.matches(*e.labels)] for name, _, filt in groups}
    for name, flag, filt in groups:
        if not found[name]:
            raise DataError(
                f"{flag} filter {filt.text!r} matches no image in {where!r}. Found there: "
                f"{describe_labels(examples)}; skipped: {stats['skipped']}. Adjust the filter or --data_dir."
            )
    if not single:
        overlap = {e.key for e in found["A"]} & {e.key for e in found["B"]}
        if overlap:
            raise DataError(
                f"The domain filters {filter_a.text!r} and {filter_b.text!r} overlap: {len(overlap)} images match both "
                f"(of {len(found['A'])} in A and {len(found['B'])} in B). Make the filters disjoint."
            )
    splits = {name: split(found[name], cfg.test_fraction) for name, _, _ in groups}
    for name, flag, filt in groups:
        if not splits[name].train:
            raise DataError(
                f"Domain {name} ({flag} {filt.text!r}) has {len(found[name])} images and all fall in the test split "
                f"(test_fraction={cfg.test_fraction}). Use more images or a smaller --test_fraction."
            )
    split_a, split_b = splits["A"], splits.get("B", DomainSplit((), ()))
    used = found["A"] + found.get("B", [])
    out_stats = {
        "source": source,
        "files": stats["files"],
        "images": stats["images"],
        "domains": {"a": {"train": len(split_a.train), "test": len(split_a.test)},
                    "b": {"train": len(split_b.train), "test": len(split_b.test)}},
        "filters": {name.lower(): filt.text for name, _, filt in groups},
        "skipped": stats["skipped"],
        "duplicates": stats["duplicates"],
        "unused": len(examples) - len(used),
        "upsampled": upsampled_counts(used, cfg.preprocess),
    }
    return Domains(a=split_a, b=split_b, stats=out_stats)
