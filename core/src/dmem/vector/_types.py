"""Vector records and query matches: the values the vector API takes and returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

__all__ = ["MetadataValue", "VectorMatch", "VectorRecord"]

MetadataValue: TypeAlias = str | int | float | bool
"""What a metadata field may hold (CONTRACT.md, "Vector providers")."""


@dataclass(frozen=True)
class VectorRecord:
    """One stored item: an ``id``, its ``vector``, optional ``metadata`` and ``document``.

    ``vector`` may be left out (``None``) on upsert when the record has a
    ``document`` and the store has an embedder: the store embeds the document.
    Records a provider returns always carry their vector.
    """

    id: str
    vector: tuple[float, ...] | None = None
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    document: str | None = None


@dataclass(frozen=True)
class VectorMatch:
    """One query hit; ``score`` is the cosine similarity, higher is closer (1.0: same direction)."""

    id: str
    score: float
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    document: str | None = None
