"""``Store.with_namespace``: another namespace over the same connection, awaitable."""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import DmemError, ProviderError

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["DerivedStore"]


class DerivedStore:
    """What :meth:`Store.with_namespace` returns: await it, or use it with ``async with``."""

    __slots__ = ("_namespace", "_parent", "_store")

    def __init__(self, parent: Store, namespace: str) -> None:
        self._parent = parent
        self._namespace = namespace
        self._store: Store | None = None

    async def _open(self) -> Store:
        parent, namespace = self._parent, self._namespace
        derive = parent._derivation(namespace)  # again: the parent may have closed meanwhile
        try:
            provider = derive(namespace)
        except DmemError:
            raise
        except Exception as exc:
            raise ProviderError(
                f"backend error: {type(exc).__module__}.{type(exc).__name__}: {exc}"
            ) from exc
        try:
            if getattr(provider, "namespace", None) != namespace:
                raise ProviderError(
                    f"{type(parent.provider).__name__}.with_namespace({namespace!r}) gave a "
                    "provider on another namespace"
                )
            store = type(parent)(provider, middleware=parent.middleware, url=parent.url)
            await store.initialize()
        except BaseException:
            with contextlib.suppress(Exception):  # give its reference to the connection back
                await provider.aclose()
            raise
        return store

    def __await__(self) -> Generator[Any, None, Store]:
        return self._open().__await__()

    async def __aenter__(self) -> Store:
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
