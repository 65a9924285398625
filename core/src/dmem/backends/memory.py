"""The in-process memory backend (``memory://``): the reference for every other backend.

``memory://`` gives a private, empty backend. ``memory://NAME`` shares one
backend among every store of this process opened with the same NAME, so
namespaces matter there exactly as they do on a server. ``Store.with_namespace``
gives another namespace of the same backend, a private one included.

Every operation runs without an ``await`` between its read and its write, so
each call (batches included) is atomic with respect to other tasks.
Expired keys are invisible at once and purged on the next write after their
expiry (a heap of deadlines makes that cheap; it is rebuilt when rewrites have left it
holding more stale deadlines than live keys, so it cannot grow without bound either).

Invalidation channel (``open_invalidation``, mode ``"memory"``, bound 0): every write
through a provider of the backend calls the listeners the *other* providers of that
namespace opened before it returns (writes through the provider that opened a listener
pass through that listener's ``Cache`` already), so a ``Cache`` on ``memory://NAME`` sees
the writes of every other store of the process at once. A listener of another event loop
is called on its own loop's thread (``call_soon_threadsafe``).

Options: ``namespace``, and ``max_value_bytes`` (at least 4 MiB; larger encoded values
raise InvalidValueError, a batch holding one writes nothing), for trying out how code
behaves against a backend with a value limit.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any

from .._counter import add_to_counter, encode_counter, parse_counter
from .._health import HealthStatus
from .._invalidation import InvalidationChannel, InvalidationListener
from .._options import ProviderOptions
from .._pattern import Pattern
from ..errors import KeyNotFoundError
from ..provider import Entry, refuse_large_values

__all__ = ["MemoryProvider", "create_memory_provider"]

_now = time.monotonic
log = logging.getLogger("dmem.memory")


class _Item:
    __slots__ = ("expires_at", "tags", "value")

    def __init__(self, value: bytes, expires_at: float | None, tags: dict[str, str]) -> None:
        self.value = value
        self.expires_at = expires_at
        self.tags = tags


class _Space:
    """One namespace of one backend."""

    __slots__ = ("channels", "deadlines", "items", "tag_index")

    def __init__(self) -> None:
        self.items: dict[str, _Item] = {}
        self.tag_index: dict[tuple[str, str], set[str]] = {}
        self.deadlines: list[tuple[float, str]] = []
        self.channels: list[_Channel] = []


class _Channel:
    """A listener of one namespace, and the provider whose own writes it skips."""

    mode = "memory"
    bound = 0.0  # called before the write returns

    def __init__(self, space: _Space, owner: object, listener: InvalidationListener) -> None:
        self._space = space
        self.owner = owner
        self._listener = listener
        self._loop = asyncio.get_running_loop()
        self.up = True

    def notify(self, keys: Collection[str] | None) -> None:
        try:
            if _running_loop() is self._loop:
                self._listener.invalidate(keys)
            else:
                self._loop.call_soon_threadsafe(self._listener.invalidate, keys)
        except Exception:  # a listener's failure must not fail another store's write
            log.exception("an invalidation listener failed; closing its channel")
            self._detach()

    def _detach(self) -> None:
        self.up = False
        if self in self._space.channels:
            self._space.channels.remove(self)

    async def close(self) -> None:
        self._detach()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _Backend:
    """What ``memory://NAME`` shares: one space per namespace."""

    def __init__(self) -> None:
        self.spaces: dict[str, _Space] = {}

    def space(self, namespace: str) -> _Space:
        space = self.spaces.get(namespace)
        if space is None:
            space = self.spaces[namespace] = _Space()
        return space


_SHARED: dict[str, _Backend] = {}


class MemoryProvider:
    """A dict-backed provider implementing the whole contract."""

    name = "memory"
    atomic_batches = True  # no await inside a call: nothing else runs between its steps

    def __init__(
        self,
        *,
        namespace: str = "",
        shared_name: str | None = None,
        max_value_bytes: int | None = None,
    ) -> None:
        self.namespace = namespace
        self.max_value_bytes = max_value_bytes
        backend = _SHARED.setdefault(shared_name, _Backend()) if shared_name else _Backend()
        self._use(backend)

    def _use(self, backend: _Backend) -> None:
        self._backend = backend
        self._space = backend.space(self.namespace)
        self._items = self._space.items

    def with_namespace(self, namespace: str) -> MemoryProvider:
        """A provider on ``namespace`` of the same backend (a private ``memory://`` one too)."""
        derived = MemoryProvider(namespace=namespace, max_value_bytes=self.max_value_bytes)
        derived._use(self._backend)
        return derived

    async def initialize(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def open_invalidation(self, listener: InvalidationListener) -> InvalidationChannel:
        """Call ``listener`` for every write to this namespace made through another provider
        of the backend (``memory://NAME``'s other stores, ``with_namespace`` ones)."""
        channel = _Channel(self._space, self, listener)
        self._space.channels.append(channel)
        return channel

    # --- internals -------------------------------------------------------------------------
    def _changed(self, keys: Collection[str] | None) -> None:
        """Tell the other providers' listeners; a no-op (one check) when there are none."""
        channels = self._space.channels
        if channels:
            for channel in list(channels):
                if channel.owner is not self:
                    channel.notify(keys)

    def _live(self, key: str) -> _Item | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires_at = item.expires_at
        if expires_at is not None and expires_at <= _now():
            self._remove(key, item)
            return None
        return item

    def _remove(self, key: str, item: _Item) -> None:
        del self._items[key]
        index = self._space.tag_index
        for pair in item.tags.items():
            members = index.get(pair)
            if members is not None:
                members.discard(key)
                if not members:
                    del index[pair]

    def _purge_due(self, now: float) -> None:
        deadlines = self._space.deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, key = heapq.heappop(deadlines)
            item = self._items.get(key)
            if item is not None and item.expires_at == deadline:
                self._remove(key, item)
        self._compact_deadlines()

    def _add_deadline(self, expires_at: float, key: str) -> None:
        heapq.heappush(self._space.deadlines, (expires_at, key))
        self._compact_deadlines()

    def _compact_deadlines(self) -> None:
        # A key rewritten (or persisted) before its deadline leaves that deadline behind:
        # rebuild from the items when such stale ones outnumber the keys. Checked on every
        # write (amortized O(1)), so the heap stays within 2x the keys plus 32.
        deadlines = self._space.deadlines
        if len(deadlines) > 2 * len(self._items) + 32:
            deadlines[:] = [
                (item.expires_at, k)
                for k, item in self._items.items()
                if item.expires_at is not None
            ]
            heapq.heapify(deadlines)

    def _write(self, key: str, value: bytes, ttl_ms: int | None, tags: Mapping[str, str]) -> None:
        old = self._items.get(key)
        if old is not None:
            self._remove(key, old)
        expires_at = None if ttl_ms is None else _now() + ttl_ms / 1000
        self._items[key] = _Item(value, expires_at, dict(tags))
        if expires_at is not None:
            self._add_deadline(expires_at, key)
        index = self._space.tag_index
        for pair in tags.items():
            members = index.get(pair)
            if members is None:
                index[pair] = {key}
            else:
                members.add(key)

    # --- reads -----------------------------------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires_at = item.expires_at
        if expires_at is not None and expires_at <= _now():
            self._remove(key, item)
            return None
        return item.value

    def _left_ms(self, key: str) -> tuple[_Item, int | None] | None:
        """The live item and its whole milliseconds left, from one reading of the clock.

        Rounded up, so a live key never reports 0 (docs/contract.md); one reading, so the
        key cannot expire between the liveness check and the subtraction.
        """
        now = _now()
        item = self._items.get(key)
        if item is None:
            return None
        expires_at = item.expires_at
        if expires_at is None:
            return item, None
        if expires_at <= now:
            self._remove(key, item)
            return None
        return item, math.ceil((expires_at - now) * 1000)

    async def get_entry(self, key: str) -> Entry | None:
        found = self._left_ms(key)
        return None if found is None else (found[0].value, found[1])

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for key in keys:
            item = self._live(key)
            if item is not None:
                found[key] = item.value
        return found

    async def exists(self, key: str) -> bool:
        return self._live(key) is not None

    # --- writes ----------------------------------------------------------------------------
    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        refuse_large_values((value,), self.max_value_bytes)
        self._purge_due(_now())
        if if_not_exists and self._live(key) is not None:
            return False
        self._write(key, value, ttl_ms, tags)
        self._changed((key,))
        return True

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        if self.max_value_bytes is not None:
            refuse_large_values([value for _, value in items], self.max_value_bytes)
        self._purge_due(_now())
        written: list[str] = []
        for key, value in items:
            if if_not_exists and self._live(key) is not None:
                continue
            self._write(key, value, ttl_ms, tags)
            written.append(key)
        if written:
            self._changed(written)
        return len(written)

    async def delete(self, key: str) -> bool:
        self._purge_due(_now())
        item = self._live(key)
        if item is None:
            return False
        self._remove(key, item)
        self._changed((key,))
        return True

    async def delete_many(self, keys: Sequence[str]) -> int:
        self._purge_due(_now())
        removed: list[str] = []
        for key in keys:
            item = self._live(key)
            if item is not None:
                self._remove(key, item)
                removed.append(key)
        if removed:
            self._changed(removed)
        return len(removed)

    async def clear(self) -> int:
        now = _now()
        live = sum(
            1 for item in self._items.values() if item.expires_at is None or item.expires_at > now
        )
        self._items.clear()
        self._space.tag_index.clear()
        self._space.deadlines.clear()
        self._changed(None)
        return live

    # --- listing ---------------------------------------------------------------------------
    def _matching(self, pattern: Pattern) -> list[str]:
        now = _now()
        if pattern.is_exact:
            item = self._items.get(pattern.literal_prefix)
            alive = item is not None and (item.expires_at is None or item.expires_at > now)
            return [pattern.literal_prefix] if alive else []
        items = self._items
        if pattern.matches_all:
            return [
                key
                for key, item in items.items()
                if item.expires_at is None or item.expires_at > now
            ]
        # The pattern first, in C (filter over the regex's own fullmatch: no Python call a
        # key; its anchored literal prefix fails at once on keys outside it), then the
        # expiry of the keys that matched.
        return [
            key
            for key in filter(pattern.fullmatch, items)
            if (expires_at := items[key].expires_at) is None or expires_at > now
        ]

    async def scan(self, pattern: Pattern) -> AsyncIterator[tuple[str, bytes]]:
        # A snapshot of the matching keys; each value is read when its turn comes,
        # so a key deleted meanwhile is skipped and one rewritten shows its new value.
        for key in self._matching(pattern):
            item = self._live(key)
            if item is not None:
                yield key, item.value

    async def keys(self, pattern: Pattern) -> list[str]:
        return self._matching(pattern)

    async def count(self, pattern: Pattern) -> int:
        return len(self._matching(pattern))

    # --- tags and expiry -------------------------------------------------------------------
    async def find_by_tag(self, name: str, value: str) -> list[str]:
        members = self._space.tag_index.get((name, value))
        if not members:
            return []
        return [key for key in list(members) if self._live(key) is not None]

    async def get_tags(self, key: str) -> dict[str, str]:
        item = self._live(key)
        if item is None:
            raise KeyNotFoundError(f"key {key!r} is not live")
        return dict(item.tags)

    async def expire(self, key: str, ttl_ms: int) -> bool:
        item = self._live(key)
        if item is None:
            return False
        item.expires_at = _now() + ttl_ms / 1000
        self._add_deadline(item.expires_at, key)
        self._changed((key,))
        return True

    async def persist(self, key: str) -> bool:
        item = self._live(key)
        if item is None:
            return False
        item.expires_at = None
        self._changed((key,))
        return True

    async def ttl(self, key: str) -> float | None:
        found = self._left_ms(key)
        if found is None:
            raise KeyNotFoundError(f"key {key!r} is not live")
        return None if found[1] is None else found[1] / 1000

    # --- contract v1.1: counters, compare-and-set, delete-by-tag ------------------------------
    async def incr(self, key: str, delta: int, *, ttl_ms: int | None) -> int:
        self._purge_due(_now())
        item = self._live(key)
        if item is None:
            result = add_to_counter(0, delta)
            self._write(key, encode_counter(result), ttl_ms, {})
        else:
            result = add_to_counter(parse_counter(item.value), delta)
            item.value = encode_counter(result)  # in place: expiry and tags stay
        self._changed((key,))
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
        refuse_large_values((value,), self.max_value_bytes)
        self._purge_due(_now())
        item = self._live(key)
        if item is None or item.value != expected:
            return False
        self._write(key, value, ttl_ms, tags)
        self._changed((key,))
        return True

    async def compare_and_delete(self, key: str, expected: bytes) -> bool:
        self._purge_due(_now())
        item = self._live(key)
        if item is None or item.value != expected:
            return False
        self._remove(key, item)
        self._changed((key,))
        return True

    async def delete_by_tag(self, name: str, value: str) -> int:
        self._purge_due(_now())
        members = self._space.tag_index.get((name, value))
        removed: list[str] = []
        for key in list(members or ()):
            item = self._live(key)
            if item is not None:
                self._remove(key, item)
                removed.append(key)
        if removed:
            self._changed(removed)
        return len(removed)

    async def footprint(self) -> int:
        """Records held for this namespace: items, tag-index entries and queued deadlines."""
        space = self._space
        tagged = sum(len(members) for members in space.tag_index.values())
        return len(space.items) + tagged + len(space.deadlines)

    async def health(self) -> HealthStatus:
        return HealthStatus(
            "healthy",
            self.name,
            "in-process memory",
            latency_ms=0.0,
            details={"keys": len(self._items), "namespace": self.namespace},
        )


def create_memory_provider(url: str, options: dict[str, Any]) -> MemoryProvider:
    """Factory for ``memory://[NAME]``; options ``namespace`` and ``max_value_bytes``."""
    opts = ProviderOptions(options, provider="memory://")
    namespace = opts.str("namespace", "")
    limit = opts.max_value_bytes()
    opts.done()
    rest = url.split("://", 1)[1] if "://" in url else ""
    shared_name = rest.strip("/") or None
    return MemoryProvider(namespace=namespace, shared_name=shared_name, max_value_bytes=limit)
