"""``Cache``: an in-process LRU in front of any provider.

What it promises (docs/middleware.md):

* read-through on ``get``/``get_entry``/``exists``, write-through on ``set``;
* every write, delete, expiry change and clear *through this store* drops the
  affected entries, and epoch counters stop a read that raced with a write
  from caching what it read before that write;
* with ``invalidation="auto"`` (the default) and a provider that has an invalidation
  channel (``open_invalidation``, :mod:`dmem._invalidation`), writes made by other stores
  and processes drop the entries too, within the channel's bound; while the channel is
  down the cache is empty and serves nothing, every read goes to the backend;
* an entry never outlives the key's own expiry (its deadline is taken from the
  remaining ttl the backend reported, counted from *before* the read) nor the
  cache's ``ttl``, which bounds staleness against writers the channel cannot see
  (or all writers elsewhere, when there is no channel);
* it holds bytes and the store decodes a fresh object on every read, so no
  caller can mutate what the cache holds.
"""

from __future__ import annotations

import dataclasses
import time
import weakref
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from typing import Literal

from .._health import HealthStatus
from .._invalidation import InvalidationChannel
from ..errors import InvalidArgumentError, NotSupportedError
from ..provider import Entry, KVProvider
from ._base import Wrapper

__all__ = ["Cache", "CacheProvider"]

_now = time.monotonic
_ENTRY_OVERHEAD = 100  # rough bytes of bookkeeping per entry, counted against max_bytes
_MODES = ("auto", "off")


class Cache:
    """Middleware spec: ``Cache(ttl=60, max_entries=10_000, max_bytes=64 MiB,
    invalidation="auto")``.

    ``invalidation="auto"`` subscribes to the provider's invalidation channel where it has
    one (one connection or poll task per cached store), so other processes' writes reach
    this cache within the channel's bound instead of the ``ttl``; ``"off"`` never opens
    one, and writes made elsewhere stay invisible until the entry's ``ttl``.
    """

    name = "cache"

    def __init__(
        self,
        *,
        ttl: float = 60.0,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        invalidation: Literal["auto", "off"] = "auto",
    ) -> None:
        if type(ttl) not in (int, float) or not 0 < ttl < float("inf"):
            raise InvalidArgumentError("Cache ttl must be a positive number of seconds")
        if type(max_entries) is not int or max_entries < 1:
            raise InvalidArgumentError("Cache max_entries must be a positive int")
        if type(max_bytes) is not int or max_bytes < 1:
            raise InvalidArgumentError("Cache max_bytes must be a positive int")
        if not isinstance(invalidation, str) or invalidation not in _MODES:
            raise InvalidArgumentError(
                f"Cache invalidation must be 'auto' or 'off', not {invalidation!r}"
            )
        self.ttl = float(ttl)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.invalidation: Literal["auto", "off"] = invalidation

    def wrap(self, inner: KVProvider) -> CacheProvider:
        return CacheProvider(inner, self)

    def __repr__(self) -> str:
        return (
            f"Cache(ttl={self.ttl}, max_entries={self.max_entries}, "
            f"max_bytes={self.max_bytes}, invalidation={self.invalidation!r})"
        )


class _Listener:
    """What the provider's channel calls (on the loop's thread): the cache's three hooks.

    A separate object, so the provider never sees (or calls) the cache's other methods; it
    holds the cache weakly, so a channel a forgotten store left open keeps no cache alive."""

    __slots__ = ("_cache",)

    def __init__(self, cache: CacheProvider) -> None:
        self._cache = weakref.ref(cache)

    def invalidate(self, keys: Collection[str] | None) -> None:
        cache = self._cache()
        if cache is None:
            return
        if keys is None:
            cache._flush()
        else:
            cache._invalidate(keys)

    def channel_down(self) -> None:
        cache = self._cache()
        if cache is not None:
            cache._set_serving(False)

    def channel_up(self) -> None:
        cache = self._cache()
        if cache is not None:
            cache._set_serving(True)


class CacheProvider(Wrapper):
    """The provider a :class:`Cache` spec wraps around ``inner``."""

    def __init__(self, inner: KVProvider, spec: Cache) -> None:
        super().__init__(inner)
        self._ttl = spec.ttl
        self._max_entries = spec.max_entries
        self._max_bytes = spec.max_bytes
        self._invalidation = spec.invalidation
        # key -> (value, deadline on the monotonic clock)
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0
        # The race guard. Every invalidation bumps _epoch. A read (or write) in flight on a
        # key remembers the epoch it started at and is counted in _inflight; an
        # invalidation of that key meanwhile records its epoch in _touched, and one of the
        # whole cache (clear, a poll that saw "something changed", the channel going down
        # or up) in _flushed. What the call read may be cached only if neither is newer
        # than its start: so a value read before a write elsewhere, whose invalidation
        # arrived while the read was in flight, is never cached. Per key, so a busy writer
        # of other keys does not stop this key from being cached.
        self._epoch = 0
        self._flushed = 0
        self._inflight: dict[str, int] = {}
        self._touched: dict[str, int] = {}
        # False while the invalidation channel is down: nothing is cached or served.
        self._serving = True
        self._channel: InvalidationChannel | None = None
        self._mode = "off" if spec.invalidation == "off" else "ttl"
        self.hits = 0
        self.misses = 0

    # --- lifecycle -------------------------------------------------------------------------
    async def initialize(self) -> None:
        await self.inner.initialize()
        if self._invalidation != "auto":
            return
        opener = getattr(self.inner, "open_invalidation", None)
        if not callable(opener):
            return  # no channel: the ttl alone bounds what other writers leave stale
        try:
            channel: InvalidationChannel = await opener(_Listener(self))
        except NotSupportedError:
            return  # a middleware below has none, or the backend cannot here (say, :memory:)
        except BaseException:
            # The store is not open when initialize fails, so it will not close us.
            await self.inner.aclose()
            raise
        self._channel = channel
        self._mode = channel.mode

    async def aclose(self) -> None:
        channel, self._channel = self._channel, None
        try:
            if channel is not None:
                await channel.close()
        finally:
            self._flush()
            await self.inner.aclose()

    @property
    def invalidation_mode(self) -> str:
        """ "off", "ttl" (no channel: the cache ttl bounds staleness) or the channel's mode."""
        return self._mode

    @property
    def staleness_bound(self) -> float | None:
        """Seconds a write elsewhere may stay invisible here: the channel's bound (None for a
        push channel: its delivery latency), or the cache ttl without a channel."""
        if self._channel is None:
            return self._ttl
        return self._channel.bound

    async def health(self) -> HealthStatus:
        report = await self.inner.health()
        channel = self._channel
        up = channel is None or (self._serving and channel.up)
        details = dict(report.details)
        details["cache"] = {
            "invalidation": self._mode,
            "bound_s": self.staleness_bound,
            "channel_up": None if channel is None else up,
            "entries": len(self._entries),
            "hits": self.hits,
            "misses": self.misses,
        }
        status, message = report.status, report.message
        if not up:
            message = (message + "; " if message else "") + (
                f"cache invalidation channel ({self._mode}) is down: reads go to the backend"
            )
            if status == "healthy":
                status = "degraded"
        return dataclasses.replace(report, status=status, message=message, details=details)

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

    def _bump(self, keys: Collection[str]) -> None:
        """A new epoch, newer than every call in flight on ``keys`` (see __init__)."""
        self._epoch += 1
        inflight = self._inflight
        if inflight:
            for key in keys:
                if key in inflight:
                    self._touched[key] = self._epoch

    def _invalidate(self, keys: Collection[str]) -> None:
        for key in keys:
            self._drop(key)
        self._bump(keys)

    def _flush(self) -> None:
        self._epoch += 1
        self._flushed = self._epoch
        self._entries.clear()
        self._bytes = 0

    def _set_serving(self, serving: bool) -> None:
        # Both ways flush: going down, because messages may be lost from now on; coming
        # up, because a read that started while down may hold a value whose invalidation
        # was lost, and must not be cached.
        self._serving = serving
        self._flush()

    def _begin(self, key: str) -> int:
        self._inflight[key] = self._inflight.get(key, 0) + 1
        return self._epoch

    def _end(self, key: str, started: int) -> bool:
        """The call on ``key`` that began at ``started`` is over: may what it saw be cached?"""
        touched = self._touched.get(key, 0)
        left = self._inflight[key] - 1
        if left:
            self._inflight[key] = left
        else:
            del self._inflight[key]
            self._touched.pop(key, None)
        return self._serving and self._flushed <= started and touched <= started

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
        started = self._begin(key)
        read_at = _now()
        try:
            got = await self.inner.get_entry(key)
        finally:
            fresh = self._end(key, started)
        if got is not None and fresh:
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
        started = self._begin(key)
        written_at = _now()
        try:
            written = await self.inner.set(
                key, value, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
            )
        except BaseException:
            self._end(key, started)
            self._invalidate((key,))
            raise
        if self._end(key, started) and written:
            self._remember(key, value, written_at, ttl_ms)
            # Reads of the key that began before this write must not replace its value.
            self._bump((key,))
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
        self._flush()
        try:
            return await super().delete_by_tag(name, value)
        finally:
            self._flush()

    async def clear(self) -> int:
        self._flush()
        try:
            return await self.inner.clear()
        finally:
            self._flush()
