"""The :class:`VectorStore` users hold: validates, embeds, wraps backend errors.

Every call checks its arguments before any I/O (records, ids, vectors,
``k``, ``where``), embeds texts with the configured embedder in a worker
thread, then calls the provider. A bad argument of any type or value is an
:class:`InvalidArgumentError`, never a ``TypeError`` from deeper down. Any
exception from below that is not a :class:`DmemError` becomes a
:class:`ProviderError` with the original as ``__cause__``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from .._health import HealthStatus, redact_url
from .._logging import log
from .._validation import short_repr
from ..errors import DmemError, InvalidArgumentError, NotInitializedError, ProviderError
from ._embed import no_embedder_message, resolve_embedder
from ._protocol import Embedder, VectorProvider
from ._types import VectorMatch, VectorRecord
from ._validation import (
    check_batch,
    check_ids,
    check_k,
    check_query_text,
    check_records,
    check_vector,
    check_where,
)
from ._where import Where, normalize_where

__all__ = ["VectorStore"]

_NEW, _OPEN, _CLOSED = 0, 1, 2
T = TypeVar("T")


class VectorStore:
    """A vector collection over one provider.

    Get one with ``await dmem.open_vector(url, embedder="hash")``, from
    ``MemorySystem(vector=...).vector``, or build it from a provider and call
    :meth:`initialize` (or use ``async with``).
    """

    __slots__ = ("_embedder", "_provider", "_state", "url")

    def __init__(
        self,
        provider: VectorProvider,
        *,
        embedder: str | Embedder | None = None,
        url: str | None = None,
    ) -> None:
        if not isinstance(provider, VectorProvider):  # a runtime-checkable Protocol
            raise InvalidArgumentError(f"{short_repr(provider)} is not a dmem vector provider")
        if url is not None and type(url) is not str:
            raise InvalidArgumentError(f"url must be a str or None, not {type(url).__name__}")
        # Checked here too: resolve_embedder's own message shows repr(embedder), which
        # raises for some objects (an int of more than 4300 digits).
        if (
            embedder is not None
            and not isinstance(embedder, str)
            and not callable(getattr(embedder, "embed", None))
        ):
            raise InvalidArgumentError(
                f"{short_repr(embedder)} is not an embedder (it has no embed(texts))"
            )
        self._provider = provider
        self._embedder = resolve_embedder(embedder)
        self._state = _NEW
        self.url = redact_url(url) if url else None

    @property
    def provider(self) -> VectorProvider:
        return self._provider

    @property
    def embedder(self) -> Embedder | None:
        return self._embedder

    @property
    def namespace(self) -> str:
        return self._provider.namespace

    @property
    def exact(self) -> bool:
        """True when queries are exact (brute force), False for an approximate index."""
        return bool(self._provider.exact)

    def __repr__(self) -> str:
        return f"<dmem.VectorStore {self._where()} namespace={self.namespace!r}>"

    # --- lifecycle -------------------------------------------------------------------------
    async def initialize(self) -> None:
        """Connect. Idempotent; after :meth:`aclose` it raises NotInitializedError."""
        if self._state == _OPEN:
            return
        if self._state == _CLOSED:
            raise NotInitializedError("vector store is closed; open a new one")
        await self._call(self._provider.initialize())
        self._state = _OPEN
        log.debug("opened vector store %s (namespace %r)", self._where(), self.namespace)

    async def aclose(self) -> None:
        """Release the backend. Idempotent."""
        if self._state == _CLOSED:
            return
        was_open = self._state == _OPEN
        self._state = _CLOSED
        if was_open:
            await self._call(self._provider.aclose())
            log.debug("closed vector store %s (namespace %r)", self._where(), self.namespace)

    def _where(self) -> str:
        return self.url or type(self._provider).__name__

    async def __aenter__(self) -> VectorStore:
        await self.initialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _check_open(self) -> None:
        if self._state == _NEW:
            raise NotInitializedError(
                "vector store is not initialized: await store.initialize() first"
            )
        if self._state == _CLOSED:
            raise NotInitializedError("vector store is closed")

    @staticmethod
    async def _call(awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except DmemError:
            raise
        except Exception as exc:
            raise ProviderError(
                f"backend error: {type(exc).__module__}.{type(exc).__name__}: {exc}"
            ) from exc

    async def _embed(self, texts: Sequence[str]) -> list[tuple[float, ...]]:
        if self._embedder is None:
            raise InvalidArgumentError(no_embedder_message())
        try:
            vectors = await asyncio.to_thread(self._embedder.embed, list(texts))
        except DmemError:
            raise
        except Exception as exc:
            raise ProviderError(f"embedder {self._embedder!r} failed: {exc}") from exc
        if len(vectors) != len(texts):
            raise ProviderError(
                f"embedder {self._embedder!r} returned {len(vectors)} vectors "
                f"for {len(texts)} texts"
            )
        return [check_vector(vector, "embedding") for vector in vectors]

    # --- operations ------------------------------------------------------------------------
    async def upsert(self, records: Iterable[VectorRecord | dict[str, Any]]) -> int:
        """Insert or entirely replace records (metadata and document included).

        A record is a :class:`VectorRecord` or a mapping with ``id``, ``vector``,
        ``metadata``, ``document``. A record without a vector but with a document
        is embedded by the store's embedder. Nothing is written if any record is
        invalid. Returns how many records were written.
        """
        self._check_open()
        checked = check_records(records)
        missing = [i for i, record in enumerate(checked) if record.vector is None]
        for i in missing:
            if checked[i].document is None:
                raise InvalidArgumentError(
                    f"record {checked[i].id!r} has neither a vector nor a document to embed"
                )
        if missing:
            vectors = await self._embed([checked[i].document or "" for i in missing])
            for i, vector in zip(missing, vectors, strict=True):
                record = checked[i]
                checked[i] = VectorRecord(record.id, vector, record.metadata, record.document)
        check_batch(checked)
        if not checked:
            return 0
        await self._call(self._provider.upsert(checked))
        return len(checked)

    async def query(
        self,
        query: str | Sequence[float],
        k: int = 10,
        where: dict[str, Any] | None = None,
    ) -> list[VectorMatch]:
        """The ``k`` records most similar to ``query`` (a vector, or a text to embed).

        Scores are cosine similarities, highest first; ``where`` filters on metadata
        (see :mod:`dmem.vector`).
        """
        self._check_open()
        k = check_k(k)
        canonical = _where(where)
        if isinstance(query, str):
            (vector,) = await self._embed([check_query_text(query)])
        else:
            vector = check_vector(query, "query vector")
        return await self._call(self._provider.query(vector, k, canonical))

    async def get(self, ids: Iterable[str]) -> list[VectorRecord]:
        """The stored records among ``ids``, in the order asked (missing ids are left out)."""
        self._check_open()
        unique = check_ids(ids)
        if not unique:
            return []
        return await self._call(self._provider.get(unique))

    async def delete(self, ids: Iterable[str]) -> int:
        """Remove records; returns how many of them existed."""
        self._check_open()
        unique = check_ids(ids)
        if not unique:
            return 0
        return await self._call(self._provider.delete(unique))

    async def count(self) -> int:
        self._check_open()
        return await self._call(self._provider.count())

    async def clear(self) -> int:
        """Remove every record of this namespace; returns how many there were."""
        self._check_open()
        return await self._call(self._provider.clear())

    async def health(self) -> HealthStatus:
        """A health report of the provider; never raises, never shows a secret."""
        name = type(self._provider).__name__
        if self._state != _OPEN:
            state = "not initialized" if self._state == _NEW else "closed"
            return HealthStatus("unhealthy", name, f"vector store is {state}")
        start = time.perf_counter()
        try:
            report = await self._provider.health()
        except Exception as exc:  # noqa: BLE001 - health never raises
            return HealthStatus("unhealthy", name, f"health check failed: {type(exc).__name__}")
        if report.latency_ms is None:
            latency = (time.perf_counter() - start) * 1000
            report = HealthStatus(
                report.status, report.provider, report.message, latency, report.details
            )
        return report


def _where(where: object) -> Where | None:
    """``normalize_where`` and :func:`check_where`, with every failure an InvalidArgumentError.

    The filter may hold anything: an int beyond the float range makes ``math.isfinite``
    raise OverflowError, and a message's ``repr`` of it raises ValueError.
    """
    try:
        canonical = normalize_where(where)
    except DmemError:
        raise
    except Exception as exc:
        raise InvalidArgumentError(
            f"invalid where filter {short_repr(where)}: {type(exc).__name__}: {exc}"
        ) from exc
    check_where(canonical)
    return canonical
