"""``MemorySystem``: the key-value store and a vector provider an agent holds together."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

from ._health import HealthStatus
from ._open import create_provider, resolve_middleware
from ._store import Store
from .errors import InvalidArgumentError, NotInitializedError

__all__ = ["MemorySystem"]


class MemorySystem:
    """``MemorySystem(kv=url_or_store, vector=url_or_provider, middleware=[...])``.

    ``kv`` is a URL, a :class:`Store` or a key-value provider (default: the
    embedded default store); ``middleware`` applies to a ``kv`` given as a URL
    or provider. ``vector`` is a URL, a vector provider or a
    :class:`~dmem.vector.VectorStore` (optional); ``memory.vector`` is always a
    ``VectorStore``, whose text queries use ``embedder`` (a registered name such
    as ``"hash"``, or an instance). Extra
    providers of any kind can be added with :meth:`register_provider` before
    :meth:`initialize`; ``health()`` reports on all of them.
    """

    def __init__(
        self,
        *,
        kv: str | Store | Any | None = None,
        vector: str | Any | None = None,
        middleware: Sequence[Any] = (),
        kv_options: dict[str, Any] | None = None,
        vector_options: dict[str, Any] | None = None,
        embedder: str | Any | None = None,
    ) -> None:
        if isinstance(kv, Store):
            if middleware:
                raise InvalidArgumentError(
                    "middleware applies to a kv URL or provider, not a Store"
                )
            self._kv: Store | None = kv
        else:
            if kv is None or isinstance(kv, str):
                from ._open import default_url

                kv = create_provider(kv or default_url(), dict(kv_options or {}))
            provider: Any = kv
            self._kv = Store(provider, middleware=resolve_middleware(middleware))
        self._providers: dict[str, Any] = {}
        if vector is not None:
            # The vector side is a VectorStore facade (validation, embedding, error wrapping)
            # whether given as a URL, a provider or a ready VectorStore.
            from .vector import VectorStore, make_vector_store

            if isinstance(vector, str):
                vector = make_vector_store(vector, dict(vector_options or {}), embedder=embedder)
            elif not isinstance(vector, VectorStore):
                vector = VectorStore(vector, embedder=embedder)
            elif embedder is not None:
                raise InvalidArgumentError("embedder applies to a vector URL or provider")
            self._providers["vector"] = vector
        self._initialized = False

    @property
    def kv(self) -> Store:
        if self._kv is None:  # pragma: no cover - always set by __init__
            raise NotInitializedError("no key-value store")
        return self._kv

    @property
    def vector(self) -> Any:
        try:
            return self._providers["vector"]
        except KeyError:
            raise NotInitializedError("no vector provider configured (pass vector=...)") from None

    def register_provider(self, kind: str, provider: Any) -> None:
        """Add a provider under ``kind`` ("kv" replaces the store's provider)."""
        if self._initialized:
            raise InvalidArgumentError("register providers before initialize()")
        if kind == "kv":
            self._kv = provider if isinstance(provider, Store) else Store(provider)
        else:
            self._providers[kind] = provider

    def provider(self, kind: str) -> Any:
        if kind == "kv":
            return self.kv
        try:
            return self._providers[kind]
        except KeyError:
            raise NotInitializedError(f"no provider of kind {kind!r}") from None

    async def initialize(self) -> None:
        await self.kv.initialize()
        for provider in self._providers.values():
            await provider.initialize()
        self._initialized = True

    async def aclose(self) -> None:
        await self.kv.aclose()
        for provider in self._providers.values():
            await provider.aclose()

    async def __aenter__(self) -> MemorySystem:
        await self.initialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def health(self) -> dict[str, HealthStatus]:
        """A report per provider kind; never raises."""
        reports = {"kv": await self.kv.health()}
        for kind, provider in self._providers.items():
            try:
                reports[kind] = await provider.health()
            except Exception as exc:  # noqa: BLE001 - health never raises
                reports[kind] = HealthStatus("unhealthy", kind, type(exc).__name__)
        return reports
