"""The ``dmem`` logger, and the slow-call log a store gets while it is enabled at DEBUG.

dmem logs to ``logging.getLogger("dmem")`` and its children (``dmem.redis``,
``dmem.postgresql``, ``dmem.sqlite``, ``dmem.chroma``), which carry a ``NullHandler``
only: nothing shows until the application configures logging. At DEBUG they say what
someone debugging a deployment needs: stores opened and closed (with the redacted URL),
reconnects, retries, purges of expired data, and calls slower than a threshold. Never a
secret (URLs are redacted), never a value, never a key or tag (they can be personal data):
a slow call is logged with its operation, item count and duration.

Slow calls cost nothing unless DEBUG is enabled for ``dmem`` when the store opens: then
the store times each call through :class:`SlowCallLog`. The threshold is
``DMEM_SLOW_CALL_MS`` (milliseconds, default 100), read when the store opens.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import TypeVar

from ._pattern import Pattern
from .middleware._base import Wrapper
from .provider import Entry, KVProvider

__all__ = ["SlowCallLog", "log", "slow_call_log"]

T = TypeVar("T")

log = logging.getLogger("dmem")
log.addHandler(logging.NullHandler())

_DEFAULT_SLOW_MS = 100.0


def slow_call_log(inner: KVProvider, where: str) -> KVProvider:
    """``inner`` timed by :class:`SlowCallLog` if DEBUG is enabled for dmem now, else itself."""
    if not log.isEnabledFor(logging.DEBUG):
        return inner
    raw = os.environ.get("DMEM_SLOW_CALL_MS", "")
    try:
        threshold_ms = float(raw) if raw else _DEFAULT_SLOW_MS
    except ValueError:
        log.warning("DMEM_SLOW_CALL_MS=%r is not a number; using %g", raw, _DEFAULT_SLOW_MS)
        threshold_ms = _DEFAULT_SLOW_MS
    return SlowCallLog(inner, where, threshold_ms / 1000)


class SlowCallLog(Wrapper):
    """Logs at DEBUG each call that takes longer than ``threshold`` seconds."""

    def __init__(self, inner: KVProvider, where: str, threshold: float) -> None:
        super().__init__(inner)
        self.where = where
        self.threshold = threshold

    async def _timed(self, operation: str, call: Awaitable[T], items: int = 1) -> T:
        start = time.perf_counter()
        try:
            return await call
        finally:
            elapsed = time.perf_counter() - start
            if elapsed >= self.threshold:
                log.debug(
                    "slow call: %s of %d item(s) took %.1f ms on %s",
                    operation,
                    items,
                    elapsed * 1000,
                    self.where,
                )

    async def get(self, key: str) -> bytes | None:
        return await self._timed("get", self.inner.get(key))

    async def get_entry(self, key: str) -> Entry | None:
        return await self._timed("get_entry", self.inner.get_entry(key))

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return await self._timed("get_many", self.inner.get_many(keys), len(keys))

    async def exists(self, key: str) -> bool:
        return await self._timed("exists", self.inner.exists(key))

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        call = self.inner.set(key, value, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags)
        return await self._timed("set", call)

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        call = self.inner.set_many(items, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags)
        return await self._timed("set_many", call, len(items))

    async def delete(self, key: str) -> bool:
        return await self._timed("delete", self.inner.delete(key))

    async def delete_many(self, keys: Sequence[str]) -> int:
        return await self._timed("delete_many", self.inner.delete_many(keys), len(keys))

    async def scan(self, pattern: Pattern) -> AsyncIterator[tuple[str, bytes]]:
        # A scan streams: each step's wait (a page from the backend) is what can be slow.
        iterator = self.inner.scan(pattern).__aiter__()
        while True:
            try:
                item = await self._timed("scan step", iterator.__anext__())
            except StopAsyncIteration:
                return
            yield item

    async def keys(self, pattern: Pattern) -> list[str]:
        return await self._timed("keys", self.inner.keys(pattern))

    async def count(self, pattern: Pattern) -> int:
        return await self._timed("count", self.inner.count(pattern))

    async def clear(self) -> int:
        return await self._timed("clear", self.inner.clear())

    async def find_by_tag(self, name: str, value: str) -> list[str]:
        return await self._timed("find_by_tag", self.inner.find_by_tag(name, value))

    async def get_tags(self, key: str) -> dict[str, str]:
        return await self._timed("get_tags", self.inner.get_tags(key))

    async def expire(self, key: str, ttl_ms: int) -> bool:
        return await self._timed("expire", self.inner.expire(key, ttl_ms))

    async def persist(self, key: str) -> bool:
        return await self._timed("persist", self.inner.persist(key))

    async def ttl(self, key: str) -> float | None:
        return await self._timed("ttl", self.inner.ttl(key))
