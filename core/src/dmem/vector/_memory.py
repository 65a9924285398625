"""The in-process vector provider (``memory://``): exact brute-force cosine search.

The reference every vector backend is measured against. ``memory://`` is
private to the store; ``memory://NAME`` is shared by every store of this
process opened with the same NAME (namespaces then keep them apart). Pure
Python: a query costs O(records x dimension), fine for tests and for up to
some ten thousand records.
"""

from __future__ import annotations

import heapq
import math
import operator
from collections.abc import Sequence
from typing import Any

from .._health import HealthStatus
from ..errors import InvalidArgumentError
from ._types import VectorMatch, VectorRecord
from ._where import Where, where_matches

__all__ = ["MemoryVectorProvider", "create_memory_vector_provider"]


class _Space:
    __slots__ = ("dimension", "records")

    def __init__(self) -> None:
        # id -> (record, 1 / norm of its vector)
        self.records: dict[str, tuple[VectorRecord, float]] = {}
        self.dimension: int | None = None


_SHARED: dict[str, dict[str, _Space]] = {}


def _dot(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return math.fsum(map(operator.mul, a, b))


class MemoryVectorProvider:
    """Exact cosine search over a dict of records."""

    name = "memory"
    exact = True

    def __init__(self, *, namespace: str = "", shared_name: str | None = None) -> None:
        self.namespace = namespace
        spaces = _SHARED.setdefault(shared_name, {}) if shared_name else {}
        space = spaces.get(namespace)
        if space is None:
            space = spaces[namespace] = _Space()
        self._space = space

    async def initialize(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def _check_dimension(self, size: int, what: str) -> None:
        dimension = self._space.dimension
        if dimension is not None and size != dimension:
            raise InvalidArgumentError(
                f"{what} has dimension {size}, but this collection holds dimension {dimension}"
            )

    async def upsert(self, records: Sequence[VectorRecord]) -> None:
        if not records:
            return
        vectors = [record.vector for record in records]
        if any(vector is None for vector in vectors):  # pragma: no cover - the store embeds first
            raise InvalidArgumentError("every record needs a vector")
        size = len(vectors[0])  # type: ignore[arg-type]
        self._check_dimension(size, "vector")
        self._space.dimension = size
        store = self._space.records
        for record in records:
            vector = record.vector
            assert vector is not None
            store[record.id] = (record, 1.0 / math.sqrt(_dot(vector, vector)))

    async def query(
        self, vector: tuple[float, ...], k: int, where: Where | None
    ) -> list[VectorMatch]:
        self._check_dimension(len(vector), "query vector")
        inv_q = 1.0 / math.sqrt(_dot(vector, vector))
        scored: list[tuple[float, str, VectorRecord]] = []
        for record, inv_norm in self._space.records.values():
            if where is not None and not where_matches(where, record.metadata):
                continue
            assert record.vector is not None
            scored.append((_dot(vector, record.vector) * inv_q * inv_norm, record.id, record))
        best = heapq.nsmallest(k, scored, key=lambda item: (-item[0], item[1]))
        return [
            VectorMatch(rid, min(1.0, max(-1.0, score)), dict(rec.metadata), rec.document)
            for score, rid, rec in best
        ]

    async def get(self, ids: Sequence[str]) -> list[VectorRecord]:
        store = self._space.records
        return [
            VectorRecord(rec.id, rec.vector, dict(rec.metadata), rec.document)
            for rec, _ in (store[i] for i in ids if i in store)
        ]

    async def delete(self, ids: Sequence[str]) -> int:
        store = self._space.records
        removed = 0
        for record_id in ids:
            if store.pop(record_id, None) is not None:
                removed += 1
        return removed

    async def count(self) -> int:
        return len(self._space.records)

    async def clear(self) -> int:
        removed = len(self._space.records)
        self._space.records.clear()
        return removed

    async def health(self) -> HealthStatus:
        return HealthStatus(
            "healthy",
            self.name,
            "in-process memory",
            latency_ms=0.0,
            details={"records": len(self._space.records), "namespace": self.namespace},
        )


def create_memory_vector_provider(url: str, options: dict[str, Any]) -> MemoryVectorProvider:
    """Factory for ``memory://[NAME]`` (kind "vector"); the only option is ``namespace``."""
    namespace = options.pop("namespace", "")
    if not isinstance(namespace, str):
        raise InvalidArgumentError("namespace must be a str")
    if options:
        raise InvalidArgumentError(
            f"unknown memory:// vector options: {', '.join(sorted(options))}"
        )
    rest = url.split("://", 1)[1] if "://" in url else ""
    return MemoryVectorProvider(namespace=namespace, shared_name=rest.strip("/") or None)
