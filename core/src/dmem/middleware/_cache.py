"""``Cache``: an in-process LRU in front of any provider.

What it promises (docs/middleware.md):

* read-through on ``get``/``get_entry``/``exists``, write-through on ``set``;
* every write, delete, expiry change and clear *through this store* drops the
  affected entries, and an epoch counter stops a read that raced with a write
  from caching what it read before that write;
* an entry never outlives the key's own expiry (its deadline is taken from the
  remaining ttl the backend reported, counted from *before* the read) nor the
  cache's ``ttl``, which bounds staleness against writers in other processes;
* it holds bytes and the store decodes a fresh object on every read, so no
  caller can mutate what the cache holds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence

from ..errors import InvalidArgumentError
from ..provider import Entry, KVProvider
from ._base import Wrapper

__all__ = ["Cache", "CacheProvider"]

_now = time.monotonic
_ENTRY_OVERHEAD = 100  # rough bytes of bookkeeping per entry, counted against max_bytes


class Cache:
    """Middleware spec: ``Cache(ttl=60, max_entries=10_000, max_bytes=64 MiB)``."""

    name = "cache"

    def __init__(
        self,
        *,
        ttl: float = 60.0,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if type(ttl) not in (int, float) or not 0 < ttl < float("inf"):
            raise InvalidArgumentError("Cache ttl must be a positive number of seconds")
        if type(max_entries) is not int or max_entries < 1:
            raise InvalidArgumentError("Cache max_entries must be a positive int")
        if type(max_bytes) is not int or max_bytes < 1:
            raise InvalidArgumentError("Cache max_bytes must be a positive int")
        self.ttl = float(ttl)
        self.max_entries = max_entries
        self.max_bytes = max_bytes

    def wrap(self, inner: KVProvider) -> CacheProvider:
        return CacheProvider(inner, self)

    def __repr__(self) -> str:
        return f"Cache(ttl={self.ttl}, max_entries={self.max_entries}, max_bytes={self.max_bytes})"


class CacheProvider(Wrapper):
    """The provider a :class:`Cache` spec wraps around ``inner``."""

    def __init__(self, inner: KVProvider, spec: Cache) -> None:
        super().__init__(inner)
        self._ttl = spec.ttl
        self._max_entries = spec.max_entries
        self._max_bytes = spec.max_bytes
        # key -> (value, deadline on the monotonic clock)
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0
        self._epoch = 0
        self.hits = 0
        self.misses = 0

    # --- bookkeeping -----------------------------------------------------------------------
    def _lookup(self, key: str) -> tuple[bytes, float] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= _now():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[0]) + len(key) + _ENTRY_OVERHEAD

    def _invalidate(self, keys: Sequence[str] | tuple[str]) -> None:
        self._epoch += 1
        for key in keys:
            self._drop(key)

    def _remember(self, key: str, value: bytes, read_at: float, ttl_ms: int | None) -> None:
        life = self._ttl if ttl_ms is None else min(self._ttl, ttl_ms / 1000)
        if life <= 0:
            return
        size = len(value) + len(key) + _ENTRY_OVERHEAD
        if size > self._max_bytes:
            return
        self._drop(key)
        self._entries[key] = (value, read_at + life)
        self._bytes += size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            old_key, (old_value, _) = self._entries.popitem(last=False)
            self._bytes -= len(old_value) + len(old_key) + _ENTRY_OVERHEAD

    # --- reads -----------------------------------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is not None:
            if entry[1] > _now():
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[0]
            self._drop(key)
        got = await self._read_through(key)
        return None if got is None else got[0]

    async def get_entry(self, key: str) -> Entry | None:
        entry = self._lookup(key)
        if entry is not None:
            self.hits += 1
            # The remaining key ttl is unknown here; the deadline is a safe lower bound.
            return entry[0], max(1, int((entry[1] - _now()) * 1000))
        return await self._read_through(key)

    async def _read_through(self, key: str) -> Entry | None:
        self.misses += 1
        epoch = self._epoch
        read_at = _now()
        got = await self.inner.get_entry(key)
        if got is not None and self._epoch == epoch:
            self._remember(key, got[0], read_at, got[1])
        return got

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        missing: list[str] = []
        for key in keys:
            entry = self._lookup(key)
            if entry is None:
                missing.append(key)
            else:
                found[key] = entry[0]
        self.hits += len(found)
        if missing:
            self.misses += len(missing)
            found.update(await self.inner.get_many(missing))
        return found

    async def exists(self, key: str) -> bool:
        if self._lookup(key) is not None:
            return True
        return await self.inner.exists(key)

    # --- writes: drop before and after, so no racing read can cache an old value -----------
    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        self._invalidate((key,))
        epoch = self._epoch
        written_at = _now()
        try:
            written = await self.inner.set(
                key, value, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
            )
        except BaseException:
            self._invalidate((key,))
            raise
        if written and self._epoch == epoch:
            self._remember(key, value, written_at, ttl_ms)
            self._epoch += 1
        else:
            self._invalidate((key,))
        return written

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        keys = [key for key, _ in items]
        self._invalidate(keys)
        try:
            return await self.inner.set_many(
                items, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
            )
        finally:
            self._invalidate(keys)

    async def delete(self, key: str) -> bool:
        self._invalidate((key,))
        try:
            return await self.inner.delete(key)
        finally:
            self._invalidate((key,))

    async def delete_many(self, keys: Sequence[str]) -> int:
        self._invalidate(keys)
        try:
            return await self.inner.delete_many(keys)
        finally:
            self._invalidate(keys)

    async def expire(self, key: str, ttl_ms: int) -> bool:
        self._invalidate((key,))
        try:
            return await self.inner.expire(key, ttl_ms)
        finally:
            self._invalidate((key,))

    async def persist(self, key: str) -> bool:
        self._invalidate((key,))
        try:
            return await self.inner.persist(key)
        finally:
            self._invalidate((key,))

    async def incr(self, key: str, delta: int, *, ttl_ms: int | None) -> int:
        self._invalidate((key,))
        try:
            return await super().incr(key, delta, ttl_ms=ttl_ms)
        finally:
            self._invalidate((key,))

    async def compare_and_set(
        self,
        key: str,
        expected: bytes,
        value: bytes,
        *,
        ttl_ms: int | None,
        tags: Mapping[str, str],
    ) -> bool:
        self._invalidate((key,))
        try:
            return await super().compare_and_set(key, expected, value, ttl_ms=ttl_ms, tags=tags)
        finally:
            self._invalidate((key,))

    async def compare_and_delete(self, key: str, expected: bytes) -> bool:
        self._invalidate((key,))
        try:
            return await super().compare_and_delete(key, expected)
        finally:
            self._invalidate((key,))

    async def delete_by_tag(self, name: str, value: str) -> int:
        # Which keys carry the tag is the backend's to know: forget everything cached.
        self._clear_all()
        try:
            return await super().delete_by_tag(name, value)
        finally:
            self._clear_all()

    async def clear(self) -> int:
        self._clear_all()
        try:
            return await self.inner.clear()
        finally:
            self._clear_all()

    def _clear_all(self) -> None:
        self._epoch += 1
        self._entries.clear()
        self._bytes = 0

    async def aclose(self) -> None:
        self._clear_all()
        await self.inner.aclose()
