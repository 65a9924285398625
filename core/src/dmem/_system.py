"""``MemorySystem``: the key-value store and a vector provider an agent holds together."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from ._health import HealthStatus
from ._open import create_provider, resolve_middleware
from ._store import Store
from ._validation import short_repr
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
        kv_options = _options(kv_options, "kv_options")
        vector_options = _options(vector_options, "vector_options")
        middleware = _middleware(middleware)
        if isinstance(kv, Store):
            if middleware:
                raise InvalidArgumentError(
                    "middleware applies to a kv URL or provider, not a Store"
                )
            self._kv: Store | None = kv
        else:
            if kv is None or isinstance(kv, str):
                from ._open import default_url

                kv = create_provider(kv or default_url(), kv_options)
            provider: Any = kv
            self._kv = Store(provider, middleware=resolve_middleware(middleware))
        self._providers: dict[str, Any] = {}
        if vector is not None:
            # The vector side is a VectorStore facade (validation, embedding, error wrapping)
            # whether given as a URL, a provider or a ready VectorStore.
            from .vector import VectorStore, make_vector_store

            if isinstance(vector, str):
                vector = make_vector_store(vector, vector_options, embedder=embedder)
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
        _check_kind(kind)
        if self._initialized:
            raise InvalidArgumentError("register providers before initialize()")
        if kind == "kv":
            self._kv = provider if isinstance(provider, Store) else Store(provider)
        else:
            # initialize() and aclose() call these on every provider.
            for method in ("initialize", "aclose"):
                if not callable(getattr(provider, method, None)):
                    raise InvalidArgumentError(
                        f"{short_repr(provider)} is not a provider (it has no {method}())"
                    )
            self._providers[kind] = provider

    def provider(self, kind: str) -> Any:
        _check_kind(kind)
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


def _check_kind(kind: object) -> None:
    if type(kind) is not str or not kind:
        raise InvalidArgumentError(f"a provider kind is a non-empty str, not {short_repr(kind)}")


def _options(options: object, what: str) -> dict[str, Any]:
    """A copy of an options mapping (None: none); names must be str."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise InvalidArgumentError(f"{what} must be a mapping, not {type(options).__name__}")
    for name in options:
        if type(name) is not str:
            raise InvalidArgumentError(f"{what} names must be str, not {short_repr(name)}")
    return dict(options)


def _middleware(middleware: object) -> list[Any]:
    """The chain as a list of names and instances; resolve_middleware does the rest."""
    if isinstance(middleware, (str, bytes, bytearray, memoryview, Mapping)) or not isinstance(
        middleware, Iterable
    ):
        raise InvalidArgumentError(
            f"middleware must be a list of middleware, not {type(middleware).__name__}"
        )
    chain = list(middleware)
    for item in chain:
        # Checked here: resolve_middleware's message shows repr(item), which can itself fail.
        if not isinstance(item, str) and not callable(getattr(item, "wrap", None)):
            raise InvalidArgumentError(
                f"{short_repr(item)} is not a middleware (it has no wrap(inner))"
            )
    return chain
