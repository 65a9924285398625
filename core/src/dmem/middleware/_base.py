"""The middleware model: a spec (``Cache(ttl=300)``) wraps a provider into a provider.

A chain is a list, outermost first; :class:`~dmem.Store` applies
``spec.wrap(inner)`` from the last element to the first. :class:`Wrapper`
forwards every call to ``inner``; a middleware overrides only what it changes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from .._health import HealthStatus
from .._invalidation import InvalidationChannel, InvalidationListener
from .._pattern import Pattern
from ..errors import NotSupportedError
from ..provider import Entry, KVProvider

__all__ = ["Middleware", "Wrapper"]


@runtime_checkable
class Middleware(Protocol):
    """A middleware spec: configuration plus a way to wrap a provider."""

    name: str

    def wrap(self, inner: KVProvider) -> KVProvider:
        """A provider that adds this middleware's behaviour in front of ``inner``."""


class Wrapper:
    """A provider that forwards everything to ``inner``; subclass and override."""

    def __init__(self, inner: KVProvider) -> None:
        self.inner = inner

    @property
    def namespace(self) -> str:
        return self.inner.namespace

    async def initialize(self) -> None:
        await self.inner.initialize()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def get(self, key: str) -> bytes | None:
        return await self.inner.get(key)

    async def get_entry(self, key: str) -> Entry | None:
        return await self.inner.get_entry(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return await self.inner.get_many(keys)

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(key)

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        return await self.inner.set(
            key, value, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
        )

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        return await self.inner.set_many(
            items, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
        )

    async def delete(self, key: str) -> bool:
        return await self.inner.delete(key)

    async def delete_many(self, keys: Sequence[str]) -> int:
        return await self.inner.delete_many(keys)

    def scan(self, pattern: Pattern) -> AsyncIterator[tuple[str, bytes]]:
        return self.inner.scan(pattern)

    async def keys(self, pattern: Pattern) -> list[str]:
        return await self.inner.keys(pattern)

    async def count(self, pattern: Pattern) -> int:
        return await self.inner.count(pattern)

    async def clear(self) -> int:
        return await self.inner.clear()

    async def find_by_tag(self, name: str, value: str) -> list[str]:
        return await self.inner.find_by_tag(name, value)

    async def get_tags(self, key: str) -> dict[str, str]:
        return await self.inner.get_tags(key)

    async def expire(self, key: str, ttl_ms: int) -> bool:
        return await self.inner.expire(key, ttl_ms)

    async def persist(self, key: str) -> bool:
        return await self.inner.persist(key)

    async def ttl(self, key: str) -> float | None:
        return await self.inner.ttl(key)

    async def health(self) -> HealthStatus:
        return await self.inner.health()

    # --- optional operations (contract v1.1): forwarded when the inner provider has them -----
    def _inner_op(self, name: str) -> Any:
        found = getattr(self.inner, name, None)
        if not callable(found):
            inner = type(self.inner)
            raise NotSupportedError(
                f"{inner.__module__}.{inner.__qualname__} does not support {name} "
                "(an optional provider operation of contract v1.1)"
            )
        return found

    async def incr(self, key: str, delta: int, *, ttl_ms: int | None) -> int:
        result: int = await self._inner_op("incr")(key, delta, ttl_ms=ttl_ms)
        return result

    async def compare_and_set(
        self,
        key: str,
        expected: bytes,
        value: bytes,
        *,
        ttl_ms: int | None,
        tags: Mapping[str, str],
    ) -> bool:
        written: bool = await self._inner_op("compare_and_set")(
            key, expected, value, ttl_ms=ttl_ms, tags=tags
        )
        return written

    async def compare_and_delete(self, key: str, expected: bytes) -> bool:
        removed: bool = await self._inner_op("compare_and_delete")(key, expected)
        return removed

    async def delete_by_tag(self, name: str, value: str) -> int:
        removed: int = await self._inner_op("delete_by_tag")(name, value)
        return removed

    # --- optional member: the invalidation channel (dmem._invalidation) ---------------------
    async def open_invalidation(self, listener: InvalidationListener) -> InvalidationChannel:
        """The inner provider's channel: a middleware that keeps keys as they are (Cache,
        Compression) passes the listener down unchanged. NotSupportedError without one."""
        channel: InvalidationChannel = await self._inner_op("open_invalidation")(listener)
        return channel
