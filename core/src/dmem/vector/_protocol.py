"""What a vector backend implements: :class:`VectorProvider`.

Like key-value providers, vector providers sit behind a facade
(:class:`~dmem.vector.VectorStore`) that has already validated everything, so
a provider only sees:

* ``records``: :class:`VectorRecord` objects with distinct ids, a vector each
  (tuples of finite floats, non-zero, one dimension per batch), metadata
  already checked (str keys; str, int, float, bool values);
* ``vector``: the query vector, ``k``: an int from 1 to ``MAX_K``;
* ``where``: ``None`` or a canonical filter (:func:`dmem.vector.normalize_where`);
  a provider without native filters can use :func:`dmem.vector.where_matches`.

A provider must: replace a record entirely on upsert (metadata and document
too: no merging); return cosine similarity scores, highest first, ties by id;
fix the dimension of a namespace at its first upsert and raise
:class:`~dmem.errors.InvalidArgumentError` for a vector (upsert or query) of
another dimension; raise :class:`~dmem.errors.ProviderUnavailableError` when its
backend cannot be reached. Other backend exceptions may propagate: the facade
chains them into a ``ProviderError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .._health import HealthStatus
from ._types import VectorMatch, VectorRecord
from ._where import Where

__all__ = ["Embedder", "VectorProvider"]


@runtime_checkable
class VectorProvider(Protocol):
    """The interface every vector backend implements."""

    namespace: str
    exact: bool
    """True when ``query`` returns exactly the brute-force top k; False for an index (ANN)."""

    async def initialize(self) -> None:
        """Connect and create what is missing; called once before any other call."""

    async def aclose(self) -> None:
        """Release every resource."""

    async def upsert(self, records: Sequence[VectorRecord]) -> None:
        """Insert or entirely replace ``records``."""

    async def query(
        self, vector: tuple[float, ...], k: int, where: Where | None
    ) -> list[VectorMatch]:
        """The ``k`` records closest to ``vector`` by cosine similarity that pass ``where``."""

    async def get(self, ids: Sequence[str]) -> list[VectorRecord]:
        """The stored records among ``ids`` (distinct), in the order of ``ids``."""

    async def delete(self, ids: Sequence[str]) -> int:
        """Remove ``ids`` (distinct); return how many existed."""

    async def count(self) -> int:
        """How many records this namespace holds."""

    async def clear(self) -> int:
        """Remove every record of this namespace; return how many there were."""

    async def health(self) -> HealthStatus:
        """A health report; must not raise and must not contain secrets."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors, for text queries and for records given without a vector.

    ``embed`` is synchronous (models are CPU-bound); the store calls it in a
    worker thread so the event loop stays free. Register one with the
    ``dmem_register_embedders`` hook (``EmbedderSpec(name, factory)``).
    """

    name: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, all of one dimension."""
        ...
