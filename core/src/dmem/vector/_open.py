"""``dmem.open_vector(url)``: from a URL to an initialized :class:`VectorStore`."""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType
from typing import Any

from .._open import create_provider, split_url
from ..errors import InvalidArgumentError
from ._protocol import Embedder
from ._store import VectorStore

__all__ = ["make_vector_store", "open_vector"]


def make_vector_store(
    url: str, options: dict[str, Any], *, embedder: str | Embedder | None = None
) -> VectorStore:
    """Build (not initialize) a vector store: ``embedder`` may also come as an option."""
    _, base, query_options = split_url(url)
    for name in query_options.keys() & options.keys():
        raise InvalidArgumentError(f"option {name!r} is given both in the URL and as an argument")
    merged: dict[str, Any] = {**query_options, **options}
    from_options = merged.pop("embedder", None)
    if from_options is not None and embedder is not None:
        raise InvalidArgumentError("embedder is given twice")
    provider = create_provider(base, merged, kind="vector")
    return VectorStore(provider, embedder=embedder or from_options, url=url)


class _OpeningVector:
    """What ``dmem.open_vector`` returns: await it, or use it with ``async with``."""

    def __init__(self, url: str, embedder: str | Embedder | None, options: dict[str, Any]) -> None:
        self._url = url
        self._embedder = embedder
        self._options = options
        self._store: VectorStore | None = None

    async def _open(self) -> VectorStore:
        store = make_vector_store(self._url, dict(self._options), embedder=self._embedder)
        await store.initialize()
        return store

    def __await__(self) -> Generator[Any, None, VectorStore]:
        return self._open().__await__()

    async def __aenter__(self) -> VectorStore:
        self._store = await self._open()
        return self._store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await self._store.aclose()


def open_vector(
    url: str,
    /,
    *,
    embedder: str | Embedder | None = None,
    **options: Any,
) -> _OpeningVector:
    """Open an initialized :class:`VectorStore`.

    ``vs = await dmem.open_vector("chroma:///data/chroma", namespace="docs", embedder="hash")``
    or ``async with dmem.open_vector("memory://") as vs: ...``. ``embedder`` is an
    instance or a registered name; without one, text queries raise
    InvalidArgumentError (dmem never downloads a model).
    """
    return _OpeningVector(url, embedder, options)
