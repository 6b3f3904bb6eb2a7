"""The models a server holds: loaded once at start, described for GET /v1/models, picked by name.

A model's name is its Translator's name (age_a2b for a SavedModel, age_a2b.v1.int8 for a TFLite
file, age_b2a for a workdir loaded as `runs/age:b2a`). Its group is the name without the
direction (age, age.v1.int8): the page offers a group, then a direction within it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import numpy as np

from tfcyclegan.translate.models import Translator

DEFAULT_CROP_SIZE = 256  # the faces crop when an export recorded no training size: the last stage of the default schedules


class UnknownModelError(ValueError):
    """A request names a model the server did not load; the message lists the ones it did."""


@dataclasses.dataclass(frozen=True)
class ServedModel:
    translator: Translator

    @property
    def name(self) -> str:
        return self.translator.name

    @property
    def metadata(self) -> dict:
        return self.translator.metadata

    @property
    def group(self) -> str:
        return re.sub(r"_(a2b|b2a)(?=\.|$)", "", self.name) or self.name

    @property
    def crop_size(self) -> int:
        """The size the model was trained (and exported) at: the faces mode's crop size."""
        return int(self.metadata.get("export_size") or DEFAULT_CROP_SIZE)

    @property
    def max_side(self) -> int | None:
        """The longest side the model accepts (a SavedModel's signatures refuse more), or None."""
        value = self.metadata.get("max_side") if self.translator.kind == "saved_model" else None
        return int(value) if value else None

    def describe(self) -> dict:
        meta = self.metadata
        return {
            "name": self.name, "group": self.group, "kind": self.translator.kind,
            "task": meta.get("task"), "direction": self.translator.direction or meta.get("direction"),
            "domains": meta.get("domains"), "from_domain": meta.get("from_domain"), "to_domain": meta.get("to_domain"),
            "global_step": meta.get("global_step"), "version": meta.get("version"),
            "export_size": meta.get("export_size"), "max_side": self.max_side,
        }


class ModelRegistry:
    """The loaded models, in the order given; the first is the default."""

    def __init__(self, translators: Sequence[Translator]):
        if not translators:
            raise ValueError("a server needs at least one model")
        names = [t.name for t in translators]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two --model entries are both named {', '.join(twice)}: give each model once")
        self._models = {t.name: ServedModel(t) for t in translators}

    def __len__(self) -> int:
        return len(self._models)

    @property
    def names(self) -> list[str]:
        return list(self._models)

    def describe(self) -> list[dict]:
        return [m.describe() for m in self._models.values()]

    def resolve(self, model: str | None, chain: Sequence[str] = ()) -> list[ServedModel]:
        """[model, *chain] as loaded models (model None: the first one); UnknownModelError names a stranger."""
        wanted = [model or self.names[0], *chain]
        unknown = [n for n in wanted if n not in self._models]
        if unknown:
            raise UnknownModelError(
                f"unknown model {unknown[0]!r}: this server has {', '.join(self.names)} (GET /v1/models lists them)"
            )
        return [self._models[n] for n in wanted]

    def warm_up(self) -> None:
        """Runs every model once on a small image, so the first request does not pay for graph set-up."""
        image = np.zeros((1, 32, 32, 3), np.float32)
        for served in self._models.values():
            served.translator(image)
