"""Class maps between a model's classes and a dataset's: parse, match by name, apply.

Used by ``dlrmamba eval --class-map`` (score a model on data labelled with other class names)
and ``dlrmamba finetune`` (keep the classes the model knows, re-initialize new ones).

A mapping goes **from model class to data class**: ``person=person,car=vehicle`` says the
model's ``person`` is the data's ``person`` and the model's ``car`` counts as the data's
``vehicle``. Several model classes may map to one data class (``car=vehicle,van=vehicle``);
one model class maps to at most one data class. ``truck=`` (nothing after ``=``) says
"ignore the model's truck".

Automatic matching (always on for the classes the text does not name): two names match when
they are equal after :func:`normalize` (case-insensitive, ``_`` and ``-`` read as spaces,
surrounding space removed), or when one is a documented synonym of the other
(:data:`SYNONYMS`, a short fixed list: nothing is guessed). ``freight car`` does not match
``car``: only whole names match.

Everything not matched is reported by :meth:`ClassMapping.describe`: model classes the data
does not have (their detections are dropped and they are not part of any mean) and data
classes the model does not know (their boxes are not scored in ``eval``; ``finetune`` learns
them from new class-branch rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlrmamba_core.errors import ConfigError

__all__ = ["SYNONYMS", "ClassMapping", "match_classes", "normalize", "parse_class_map"]

#: Synonym -> canonical name (both normalized). The only non-identical names matched
#: automatically; extend it here (and in docs/finetune.md) rather than guessing.
SYNONYMS: dict[str, str] = {
    "pedestrian": "person",
    "pedestrians": "person",
    "people": "person",
    "persons": "person",
    "human": "person",
    "cars": "car",
    "automobile": "car",
    "trucks": "truck",
    "lorry": "truck",
    "vans": "van",
}


def normalize(name: str) -> str:
    """Lower case, ``_``/``-`` as spaces, runs of spaces collapsed, ends stripped."""
    return " ".join(name.replace("_", " ").replace("-", " ").lower().split())


def _canonical(name: str) -> str:
    n = normalize(name)
    return SYNONYMS.get(n, n)


def parse_class_map(text: str) -> list[tuple[str, str | None]]:
    """``"person=person,car=vehicle,truck="`` -> ``[("person", "person"), ("car", "vehicle"),
    ("truck", None)]`` (model name, data name or None = ignore).

    Raises:
        ConfigError: an item without ``=``, an empty model name, or a model class given twice.
    """
    pairs: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        left, sep, right = item.partition("=")
        left, right = left.strip(), right.strip()
        if not sep or not left:
            raise ConfigError(
                f"--class-map: bad item {item!r}; write MODEL_CLASS=DATA_CLASS items separated "
                "by commas, e.g. person=person,car=vehicle (truck= ignores the model's truck)")
        if normalize(left) in seen:
            raise ConfigError(f"--class-map: model class {left!r} is given twice; map each "
                              "model class to one data class")
        seen.add(normalize(left))
        pairs.append((left, right or None))
    return pairs


@dataclass(frozen=True)
class ClassMapping:
    """How a model's classes correspond to a dataset's.

    Attributes:
        model_names: the model's classes, in its class-id order.
        data_names: the dataset's classes, in its class-id order.
        model_to_data: model class id -> data class id, for matched model classes only.
        how: model class id -> how it was matched: "given" (the --class-map text), "name"
            (equal names) or "synonym" (:data:`SYNONYMS`).
        ignored_given: model classes the text maps to nothing (``truck=``).
    """

    model_names: tuple[str, ...]
    data_names: tuple[str, ...]
    model_to_data: dict[int, int]
    how: dict[int, str] = field(default_factory=dict)
    ignored_given: tuple[str, ...] = ()

    # ------------------------------------------------------------------ queries
    @property
    def is_identity(self) -> bool:
        """Same classes in the same order, every one matched to itself."""
        return (self.model_names == self.data_names
                and self.model_to_data == {i: i for i in range(len(self.model_names))})

    def evaluated_data_ids(self) -> list[int]:
        """Data class ids some model class maps to (sorted): the classes ``eval`` scores."""
        return sorted(set(self.model_to_data.values()))

    def unmatched_model(self) -> list[str]:
        """Model classes with no data class (their detections are dropped in ``eval``)."""
        return [n for i, n in enumerate(self.model_names) if i not in self.model_to_data]

    def unmatched_data(self) -> list[str]:
        """Data classes no model class maps to (not scored by ``eval``; new in ``finetune``)."""
        hit = set(self.model_to_data.values())
        return [n for j, n in enumerate(self.data_names) if j not in hit]

    def sources_of(self, data_id: int) -> list[int]:
        """Model class ids that map to data class ``data_id``."""
        return sorted(m for m, d in self.model_to_data.items() if d == data_id)

    def describe(self) -> list[str]:
        """Human-readable lines: what was matched (and how), what is ignored on each side."""
        lines = []
        for m in sorted(self.model_to_data):
            d = self.model_to_data[m]
            lines.append(f"model {self.model_names[m]!r} -> data {self.data_names[d]!r} "
                         f"({self.how.get(m, 'given')})")
        um = self.unmatched_model()
        if um:
            lines.append(f"model classes not in the data (detections dropped, not in the "
                         f"mean): {', '.join(um)}")
        ud = self.unmatched_data()
        if ud:
            lines.append(f"data classes the model does not know: {', '.join(ud)}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for metrics.json and model files)."""
        return {
            "matched": {self.model_names[m]: self.data_names[d]
                        for m, d in sorted(self.model_to_data.items())},
            "how": {self.model_names[m]: h for m, h in sorted(self.how.items())},
            "model_classes_ignored": self.unmatched_model(),
            "data_classes_unknown_to_model": self.unmatched_data(),
        }

    # ------------------------------------------------------------------ apply
    def predictions_to_data(self, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Model-class detections -> data-class detections (unmatched model classes dropped).

        Args:
            boxes: (N, 4) boxes (any units: passed through).
            scores: (N,) scores.
            class_ids: (N,) model class ids.

        Returns:
            (boxes, scores, data class ids) of the kept detections.
        """
        lut = np.full(len(self.model_names), -1, np.int64)
        for m, d in self.model_to_data.items():
            lut[m] = d
        cls = np.asarray(class_ids, np.int64).reshape(-1)
        out = lut[cls] if len(cls) else cls
        keep = out >= 0
        return (np.asarray(boxes).reshape(-1, 4)[keep], np.asarray(scores).reshape(-1)[keep],
                out[keep])


def match_classes(model_names: Sequence[str], data_names: Sequence[str],
                  class_map: str | Sequence[tuple[str, str | None]] | None = None,
                  auto: bool = True) -> ClassMapping:
    """Build the mapping of ``model_names`` onto ``data_names``.

    Args:
        model_names: the model's classes.
        data_names: the dataset's classes.
        class_map: ``--class-map`` text or its parsed pairs (None: automatic only). Names in
            it are matched case-insensitively (:func:`normalize`).
        auto: match the classes the text does not name by name and synonym.

    Returns:
        The mapping.

    Raises:
        ConfigError: a name in ``class_map`` is not a model class / data class (the message
            lists the valid ones).
    """
    model_names = [str(n) for n in model_names]
    data_names = [str(n) for n in data_names]
    pairs = parse_class_map(class_map) if isinstance(class_map, str) else list(class_map or [])
    m_index = {normalize(n): i for i, n in enumerate(model_names)}
    d_index = {normalize(n): j for j, n in enumerate(data_names)}
    mapping: dict[int, int] = {}
    how: dict[int, str] = {}
    ignored: list[str] = []
    named: set[int] = set()
    for left, right in pairs:
        m = m_index.get(normalize(left))
        if m is None:
            raise ConfigError(f"--class-map: {left!r} is not a class of the model; its classes "
                              f"are {', '.join(model_names)} (MODEL_CLASS=DATA_CLASS)")
        named.add(m)
        if right is None:
            ignored.append(model_names[m])
            continue
        d = d_index.get(normalize(right))
        if d is None:
            raise ConfigError(f"--class-map: {right!r} is not a class of the dataset; its "
                              f"classes are {', '.join(data_names)} (MODEL_CLASS=DATA_CLASS)")
        mapping[m], how[m] = d, "given"
    if auto:
        for m, name in enumerate(model_names):
            if m in named:
                continue
            n = normalize(name)
            if n in d_index:
                mapping[m], how[m] = d_index[n], "name"
                continue
            canon = _canonical(name)
            hits = [j for j, dn in enumerate(data_names) if _canonical(dn) == canon]
            if len(hits) == 1:
                mapping[m], how[m] = hits[0], "synonym"
    return ClassMapping(tuple(model_names), tuple(data_names), mapping, how, tuple(ignored))
