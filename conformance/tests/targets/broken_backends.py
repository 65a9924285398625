"""Deliberately broken backends: the memory backend with ONE contract bug each.

Not a test module of the outer run (its name does not match ``test_*.py``):
``test_selftest.py`` runs KVSuite on it in-process, once per bug, choosing the
bug with ``DMEM_SELFTEST_BUG``, and checks that the suite fails the right clause.
Bugs are injected at the provider level (bytes), below the Store facade, since
the facade already prevents what it validates.
"""

from __future__ import annotations

import asyncio
import os
import re
import struct
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar, NoReturn

import dmem
import dmem_conformance
import pytest
from dmem import KVProvider, Pattern, Wrapper, compile_pattern
from dmem.backends.memory import MemoryProvider

ENV = "DMEM_SELFTEST_BUG"
_ALL = compile_pattern("*")


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class Correct(Wrapper):
    """The control: forwards everything, so the suite must pass."""

    # The optional provider members the storage clauses read (dmem.provider).
    @property
    def max_value_bytes(self) -> int | None:
        limit: int | None = getattr(self.inner, "max_value_bytes", None)
        return limit

    @property
    def atomic_batches(self) -> bool:
        return getattr(self.inner, "atomic_batches", False) is True

    async def footprint(self) -> int:
        count: int = await self.inner.footprint()  # type: ignore[attr-defined]
        return count


class EmptyStringMissing(Correct):
    """ "" reads back as missing."""

    async def get(self, key: str) -> bytes | None:
        data = await self.inner.get(key)
        return None if data == b'""' else data

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found = await self.inner.get_many(keys)
        return {k: v for k, v in found.items() if v != b'""'}


class NxIgnoredWithTtl(Correct):
    """if_not_exists is ignored when a ttl is given."""

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        nx = if_not_exists and ttl_ms is None
        return await self.inner.set(key, value, ttl_ms=ttl_ms, if_not_exists=nx, tags=tags)


class TtlNeverExpires(Correct):
    """Keys never expire (ttl is dropped on write and by expire)."""

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        return await self.inner.set(key, value, ttl_ms=None, if_not_exists=if_not_exists, tags=tags)

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        return await self.inner.set_many(items, ttl_ms=None, if_not_exists=if_not_exists, tags=tags)

    async def expire(self, key: str, ttl_ms: int) -> bool:
        return await self.inner.exists(key)


class QuestionMarkMatchesZero(Correct):
    """``?`` matches zero or one character (filters with its own, wrong, matcher)."""

    @staticmethod
    def _wrong(pattern: Pattern) -> re.Pattern[str]:
        regex = pattern._regex.pattern  # the core's regex: '?' became an unescaped '.'
        return re.compile(re.sub(r"(?<!\\)\.(?!\*)", ".?", regex), re.DOTALL)

    async def scan(self, pattern: Pattern) -> AsyncIterator[tuple[str, bytes]]:
        wrong = self._wrong(pattern)
        async for key, value in self.inner.scan(_ALL):
            if wrong.fullmatch(key):
                yield key, value

    async def keys(self, pattern: Pattern) -> list[str]:
        return [key async for key, _ in self.scan(pattern)]

    async def count(self, pattern: Pattern) -> int:
        return len(await self.keys(pattern))


class TagsLeftAfterDelete(Correct):
    """A stale tag index: deleted keys are still found by their old tags."""

    ghosts: ClassVar[dict[tuple[str, str], dict[str, dict[str, str]]]] = {}

    def _mine(self) -> dict[str, dict[str, str]]:
        return self.ghosts.setdefault((id(type(self)), self.namespace), {})  # type: ignore[arg-type]

    async def delete(self, key: str) -> bool:
        if await self.inner.exists(key):
            self._mine()[key] = await self.inner.get_tags(key)
        return await self.inner.delete(key)

    async def delete_many(self, keys: Sequence[str]) -> int:
        return sum([await self.delete(key) for key in keys])

    async def find_by_tag(self, name: str, value: str) -> list[str]:
        found = await self.inner.find_by_tag(name, value)
        stale = [k for k, tags in self._mine().items() if tags.get(name) == value]
        return list(dict.fromkeys([*found, *stale]))


class BookkeepingListed(Correct):
    """The tag index lives in the keyspace and shows in keys/scan/count."""

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        written = await self.inner.set(
            key, value, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
        )
        if written and tags:
            await self.inner.set(
                f"__tags__:{key}", b"{}", ttl_ms=None, if_not_exists=False, tags={}
            )
        return written


class _RawKeyspace(Correct):
    """Namespaces as raw key prefixes in one shared keyspace (``sep`` between them)."""

    sep = "\x00"

    def __init__(self, inner: KVProvider, namespace: str) -> None:
        super().__init__(inner)
        self._ns = namespace
        self._prefix = namespace + self.sep

    @property
    def namespace(self) -> str:
        return self._ns

    def _raw(self, key: str) -> str:
        return self._prefix + key

    def _own(self, raw: str) -> str | None:
        return raw[len(self._prefix) :] if raw.startswith(self._prefix) else None

    async def get(self, key: str) -> bytes | None:
        return await self.inner.get(self._raw(key))

    async def get_entry(self, key: str) -> Any:
        return await self.inner.get_entry(self._raw(key))

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found = await self.inner.get_many([self._raw(k) for k in keys])
        return {k: found[self._raw(k)] for k in keys if self._raw(k) in found}

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(self._raw(key))

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
            self._raw(key), value, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
        )

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        raw = [(self._raw(k), v) for k, v in items]
        return await self.inner.set_many(raw, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags)

    async def delete(self, key: str) -> bool:
        return await self.inner.delete(self._raw(key))

    async def delete_many(self, keys: Sequence[str]) -> int:
        return await self.inner.delete_many([self._raw(k) for k in keys])

    async def scan(self, pattern: Pattern) -> AsyncIterator[tuple[str, bytes]]:
        async for raw, value in self.inner.scan(compile_pattern(_glob_escape(self._ns) + "*")):
            key = self._own(raw)
            if key is not None and pattern.matches(key):
                yield key, value

    async def keys(self, pattern: Pattern) -> list[str]:
        return [key async for key, _ in self.scan(pattern)]

    async def count(self, pattern: Pattern) -> int:
        return len(await self.keys(pattern))

    async def clear(self) -> int:
        return await self.inner.delete_many([self._raw(k) for k in await self.keys(_ALL)])

    async def find_by_tag(self, name: str, value: str) -> list[str]:
        found = [self._own(raw) for raw in await self.inner.find_by_tag(name, value)]
        return [key for key in found if key is not None]

    async def get_tags(self, key: str) -> dict[str, str]:
        return await self.inner.get_tags(self._raw(key))

    async def expire(self, key: str, ttl_ms: int) -> bool:
        return await self.inner.expire(self._raw(key), ttl_ms)

    async def persist(self, key: str) -> bool:
        return await self.inner.persist(self._raw(key))

    async def ttl(self, key: str) -> float | None:
        return await self.inner.ttl(self._raw(key))

    async def incr(self, key: str, delta: int, *, ttl_ms: int | None) -> int:
        return await super().incr(self._raw(key), delta, ttl_ms=ttl_ms)

    async def compare_and_set(
        self,
        key: str,
        expected: bytes,
        value: bytes,
        *,
        ttl_ms: int | None,
        tags: Mapping[str, str],
    ) -> bool:
        return await super().compare_and_set(
            self._raw(key), expected, value, ttl_ms=ttl_ms, tags=tags
        )

    async def compare_and_delete(self, key: str, expected: bytes) -> bool:
        return await super().compare_and_delete(self._raw(key), expected)

    async def delete_by_tag(self, name: str, value: str) -> int:
        return await self.delete_many(await self.find_by_tag(name, value))


class NamespacePrefixLeak(_RawKeyspace):
    """Raw key = namespace + key with no separator: namespace "a" sees "ab"'s keys."""

    sep = ""


class ClearCrossesNamespaces(_RawKeyspace):
    """clear() empties the whole shared keyspace, every namespace."""

    async def clear(self) -> int:
        mine = await self.count(_ALL)
        await self.inner.clear()
        return mine


class DeleteByTagCrossesNamespaces(_RawKeyspace):
    """delete_by_tag runs on the whole shared keyspace: every namespace's tagged keys go."""

    async def delete_by_tag(self, name: str, value: str) -> int:
        removed: int = await self.inner.delete_by_tag(name, value)  # type: ignore[attr-defined]
        return removed


class GetManyReturnsExpired(Correct):
    """get_many still returns keys whose ttl has passed (a stale read cache)."""

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        written = await self.inner.set(
            key, value, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
        )
        self._stale()[key] = value
        return written

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        return sum(
            [
                await self.set(k, v, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags)
                for k, v in items
            ]
        )

    def _stale(self) -> dict[str, bytes]:
        if not hasattr(self, "_cache"):
            self._cache: dict[str, bytes] = {}
        return self._cache

    async def delete(self, key: str) -> bool:
        self._stale().pop(key, None)
        return await self.inner.delete(key)

    async def clear(self) -> int:
        self._stale().clear()
        return await self.inner.clear()

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found = await self.inner.get_many(keys)
        for key in keys:
            if key not in found and key in self._stale():
                found[key] = self._stale()[key]
        return found


class CountOffByOne(Correct):
    """count() is one too high whenever something matches."""

    async def count(self, pattern: Pattern) -> int:
        n = await self.inner.count(pattern)
        return n + 1 if n else 0


class PersistKeepsExpiry(Correct):
    """persist() says True but leaves the expiry in place."""

    async def persist(self, key: str) -> bool:
        return await self.inner.exists(key)


class SetKeepsOldTags(Correct):
    """set() without tags keeps the key's old tags."""

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        if not tags and await self.inner.exists(key):
            tags = await self.inner.get_tags(key)
        return await self.inner.set(
            key, value, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
        )


class DeleteAlwaysTrue(Correct):
    """delete() returns True even for a missing key."""

    async def delete(self, key: str) -> bool:
        await self.inner.delete(key)
        return True


class ScanDuplicates(Correct):
    """scan() yields the first matching key twice."""

    async def scan(self, pattern: Pattern) -> AsyncIterator[tuple[str, bytes]]:
        first = True
        async for key, value in self.inner.scan(pattern):
            yield key, value
            if first:
                first = False
                yield key, value


class ListingStopsAtOnePage(Correct):
    """keys/count/scan/find_by_tag stop after 1,000 keys: a pager that never asks for page two."""

    _PAGE = 1_000

    async def scan(self, pattern: Pattern) -> AsyncIterator[tuple[str, bytes]]:
        seen = 0
        async for key, value in self.inner.scan(pattern):
            if seen == self._PAGE:
                return
            seen += 1
            yield key, value

    async def keys(self, pattern: Pattern) -> list[str]:
        return (await self.inner.keys(pattern))[: self._PAGE]

    async def count(self, pattern: Pattern) -> int:
        return min(await self.inner.count(pattern), self._PAGE)

    async def find_by_tag(self, name: str, value: str) -> list[str]:
        return (await self.inner.find_by_tag(name, value))[: self._PAGE]


class TimeLeftRoundedDown(Correct):
    """get_entry truncates the time left to whole milliseconds: 0 in a key's last one."""

    async def get_entry(self, key: str) -> dmem.Entry | None:
        entry = await self.inner.get_entry(key)
        if entry is None or entry[1] is None:
            return entry
        return entry[0], entry[1] - 1


class NxRace(Correct):
    """if_not_exists as check-then-set with an await in between: not atomic."""

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        if if_not_exists:
            if await self.inner.exists(key):
                return False
            await asyncio.sleep(0)
        return await self.inner.set(key, value, ttl_ms=ttl_ms, if_not_exists=False, tags=tags)


class BatchNxRace(Correct):
    """set_many(if_not_exists) as check-then-set with an await in between: not atomic."""

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        if if_not_exists:
            live = await self.inner.get_many([key for key, _ in items])
            await asyncio.sleep(0)
            items = [(key, value) for key, value in items if key not in live]
        return await self.inner.set_many(items, ttl_ms=ttl_ms, if_not_exists=False, tags=tags)


class IncrReadThenWrite(Correct):
    """incr as get, then set of the sum, with an await between: increments get lost."""

    async def incr(self, key: str, delta: int, *, ttl_ms: int | None) -> int:
        entry = await self.inner.get_entry(key)
        current = 0 if entry is None else int(entry[0])
        await asyncio.sleep(0)
        left = ttl_ms if entry is None else entry[1]
        tags = {} if entry is None else await self.inner.get_tags(key)
        await self.inner.set(
            key, str(current + delta).encode(), ttl_ms=left, if_not_exists=False, tags=tags
        )
        return current + delta


class IncrRewritesKey(Correct):
    """incr writes the sum as a fresh key: the ttl given replaces the expiry, tags go."""

    async def incr(self, key: str, delta: int, *, ttl_ms: int | None) -> int:
        result: int = await self.inner.incr(key, delta, ttl_ms=ttl_ms)  # type: ignore[attr-defined]
        await self.inner.set(key, str(result).encode(), ttl_ms=ttl_ms, if_not_exists=False, tags={})
        return result


class CasReadThenWrite(Correct):
    """compare_and_set/delete as a get, a compare and a write, with an await between."""

    async def compare_and_set(
        self,
        key: str,
        expected: bytes,
        value: bytes,
        *,
        ttl_ms: int | None,
        tags: Mapping[str, str],
    ) -> bool:
        if await self.inner.get(key) != expected:
            return False
        await asyncio.sleep(0)
        return await self.inner.set(key, value, ttl_ms=ttl_ms, if_not_exists=False, tags=tags)

    async def compare_and_delete(self, key: str, expected: bytes) -> bool:
        if await self.inner.get(key) != expected:
            return False
        await asyncio.sleep(0)
        await self.inner.delete(key)
        return True


class CompareAndDeleteIgnoresValue(Correct):
    """compare_and_delete deletes any live key, whatever its value: anyone can release a
    lock (its owner's token is never checked)."""

    async def compare_and_delete(self, key: str, expected: bytes) -> bool:
        return await self.inner.delete(key)


class MissesRemembered(Correct):
    """A connection remembers for a second that a key was missing (a negative read cache):
    it does not see another connection's write of that key in the meantime."""

    def _misses(self) -> dict[str, float]:
        if not hasattr(self, "_missed"):
            self._missed: dict[str, float] = {}
        return self._missed

    async def get(self, key: str) -> bytes | None:
        until = self._misses().get(key)
        if until is not None and time.monotonic() < until:
            return None
        data = await self.inner.get(key)
        if data is None:
            self._misses()[key] = time.monotonic() + 1.0
        return data

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        self._misses().pop(key, None)
        return await self.inner.set(
            key, value, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
        )


class _SilentListener:
    """Passes on nothing but the channel's own state: no write ever reaches the cache."""

    def __init__(self, listener: Any) -> None:
        self._listener = listener

    def invalidate(self, keys: Any) -> None:
        pass

    def channel_down(self) -> None:
        self._listener.channel_down()

    def channel_up(self) -> None:
        self._listener.channel_up()


class InvalidationDropped(Correct):
    """The invalidation channel opens and says it is up, but delivers no message: a cache
    on it would serve another connection's overwritten values for its whole ttl."""

    async def open_invalidation(self, listener: Any) -> Any:
        return await self.inner.open_invalidation(_SilentListener(listener))  # type: ignore[attr-defined]


class TtlInMilliseconds(Correct):
    """ttl() reports milliseconds instead of seconds."""

    async def ttl(self, key: str) -> float | None:
        left = await self.inner.ttl(key)
        return None if left is None else left * 1000


class ScanLoadsEverything(Correct):
    """scan() copies every value into a list before yielding: not streaming."""

    async def scan(self, pattern: Pattern) -> AsyncIterator[tuple[str, bytes]]:
        rows = [(k, bytes(bytearray(v))) async for k, v in self.inner.scan(pattern)]
        for row in rows:
            yield row


class KeysCaseInsensitive(Correct):
    """Keys are folded to lower case."""

    async def get(self, key: str) -> bytes | None:
        return await self.inner.get(key.lower())

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
            key.lower(), value, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
        )


class TtlInt32(Correct):
    """The expiry goes into a signed 32-bit millisecond field: a ttl over ~24.8 days fails
    (struct.error), though the contract allows ten years. Only errors.any-argument draws
    ttls that long."""

    @staticmethod
    def _field(ttl_ms: int | None) -> None:
        if ttl_ms is not None:
            struct.pack("<i", ttl_ms)

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        self._field(ttl_ms)
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
        self._field(ttl_ms)
        return await self.inner.set_many(
            items, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
        )

    async def expire(self, key: str, ttl_ms: int) -> bool:
        self._field(ttl_ms)
        return await self.inner.expire(key, ttl_ms)


class BatchWritesPartway(Correct):
    """Says atomic_batches, but set_many writes key by key: a refused value stops it
    partway, with the keys before it written."""

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        written = 0
        for key, value in items:
            written += await self.inner.set(
                key, value, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
            )
        return written


class TagIndexNeverPurged(Correct):
    """Keeps its own tag index: cleaned on delete (so find_by_tag is right), never on
    expiry, so it grows with every tagged key that expires."""

    index: ClassVar[dict[tuple[str, str], dict[str, dict[str, str]]]] = {}

    def _mine(self) -> dict[str, dict[str, str]]:
        return self.index.setdefault(("never-purged", self.namespace), {})

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        written = await self.inner.set(
            key, value, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
        )
        if written and tags:
            self._mine()[key] = dict(tags)
        return written

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        written = await self.inner.set_many(
            items, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
        )
        if tags:
            live = await self.inner.get_many([key for key, _ in items])
            self._mine().update({key: dict(tags) for key in live})
        return written

    async def delete(self, key: str) -> bool:
        self._mine().pop(key, None)
        return await self.inner.delete(key)

    async def delete_many(self, keys: Sequence[str]) -> int:
        for key in keys:
            self._mine().pop(key, None)
        return await self.inner.delete_many(keys)

    async def clear(self) -> int:
        self._mine().clear()
        return await self.inner.clear()

    async def footprint(self) -> int:
        return await super().footprint() + sum(len(tags) for tags in self._mine().values())


class NamespaceUnchecked(Correct):
    """Takes any namespace: drops NUL and replaces lone surrogates instead of refusing, so
    "a\\x00b" and "ab" are one namespace (the provider reports the cleaned name)."""

    @staticmethod
    def clean(namespace: str) -> str:
        return namespace.replace("\x00", "").encode("utf-8", "replace").decode()[:1024]


class _Down(dmem.BaseKVProvider):
    """A backend that is down: every call fails as a provider's must, within its timeout."""

    name = "down"

    def _refuse(self) -> NoReturn:
        raise dmem.ProviderUnavailableError("selftest backend is down (127.0.0.1:1)")

    async def get_entry(self, key: str) -> dmem.Entry | None:
        self._refuse()

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        self._refuse()

    async def delete(self, key: str) -> bool:
        self._refuse()

    async def scan(self, pattern: Pattern) -> AsyncIterator[tuple[str, bytes]]:
        self._refuse()
        yield "", b""  # pragma: no cover - makes this an async generator

    async def find_by_tag(self, name: str, value: str) -> list[str]:
        self._refuse()

    async def get_tags(self, key: str) -> dict[str, str]:
        self._refuse()

    async def expire(self, key: str, ttl_ms: int) -> bool:
        self._refuse()

    async def persist(self, key: str) -> bool:
        self._refuse()


class HealthyWhileDown(Correct):
    """health() says healthy without asking the backend (a cached or constant report)."""

    async def health(self) -> dmem.HealthStatus:
        return dmem.HealthStatus("healthy", "selftest", "ok", latency_ms=0.0)


class RawErrorWhenDown(Correct):
    """Lets the socket's own error out when the backend is down, not ProviderUnavailableError."""

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        try:
            return await self.inner.set(
                key, value, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
            )
        except dmem.ProviderUnavailableError:
            raise ConnectionRefusedError(111, "Connection refused") from None


BUGS: dict[str, type[Correct]] = {
    "correct": Correct,
    "empty-string-missing": EmptyStringMissing,
    "nx-ignored-with-ttl": NxIgnoredWithTtl,
    "ttl-never-expires": TtlNeverExpires,
    "question-mark-matches-zero": QuestionMarkMatchesZero,
    "tags-left-after-delete": TagsLeftAfterDelete,
    "bookkeeping-listed": BookkeepingListed,
    "namespace-prefix-leak": NamespacePrefixLeak,
    "clear-crosses-namespaces": ClearCrossesNamespaces,
    "get-many-returns-expired": GetManyReturnsExpired,
    "count-off-by-one": CountOffByOne,
    "persist-keeps-expiry": PersistKeepsExpiry,
    "set-keeps-old-tags": SetKeepsOldTags,
    "delete-always-true": DeleteAlwaysTrue,
    "scan-duplicates": ScanDuplicates,
    "batch-nx-race": BatchNxRace,
    "time-left-rounded-down": TimeLeftRoundedDown,
    "listing-stops-at-one-page": ListingStopsAtOnePage,
    "nx-race": NxRace,
    "ttl-in-milliseconds": TtlInMilliseconds,
    "scan-loads-everything": ScanLoadsEverything,
    "keys-case-insensitive": KeysCaseInsensitive,
    "ttl-int32": TtlInt32,
    "batch-writes-partway": BatchWritesPartway,
    "tag-index-never-purged": TagIndexNeverPurged,
    "healthy-while-down": HealthyWhileDown,
    "raw-error-when-down": RawErrorWhenDown,
    "namespace-unchecked": NamespaceUnchecked,
    "incr-read-then-write": IncrReadThenWrite,
    "incr-rewrites-key": IncrRewritesKey,
    "cas-read-then-write": CasReadThenWrite,
    "delete-by-tag-crosses-namespaces": DeleteByTagCrossesNamespaces,
    "compare-and-delete-ignores-value": CompareAndDeleteIgnoresValue,
    "misses-remembered": MissesRemembered,
    "invalidation-dropped": InvalidationDropped,
}

VALUE_LIMIT = 5 * 1024 * 1024  # a max_value_bytes the batch.refused clause can cross


def make_provider(kind: str, namespace: str) -> KVProvider:
    bug = BUGS[kind]
    shared = f"selftest-{kind}"
    if issubclass(bug, _RawKeyspace):
        # One keyspace for every namespace; the wrapper does the namespacing (badly).
        inner = MemoryProvider(namespace="", shared_name=shared, max_value_bytes=VALUE_LIMIT)
        return bug(inner, namespace)
    if bug is NamespaceUnchecked:
        namespace = NamespaceUnchecked.clean(namespace)
    return bug(MemoryProvider(namespace=namespace, shared_name=shared, max_value_bytes=VALUE_LIMIT))


def make_down_provider(kind: str, namespace: str) -> KVProvider:
    """The same bug in front of a backend that is down."""
    bug = BUGS[kind]
    down = _Down()
    down.namespace = namespace
    return bug(down, namespace) if issubclass(bug, _RawKeyspace) else bug(down)


class TestBrokenBackend(dmem_conformance.KVSuite):
    requires_members: ClassVar[frozenset[str]] = dmem_conformance.OPTIONAL_MEMBERS

    @pytest.fixture
    def store_factory(self) -> dmem_conformance.StoreFactory:
        return self._factory(make_provider)

    @pytest.fixture
    def unreachable_store_factory(self) -> dmem_conformance.StoreFactory:
        return self._factory(make_down_provider)

    @staticmethod
    def _factory(make: Any) -> dmem_conformance.StoreFactory:
        kind = os.environ.get(ENV, "correct")

        async def factory(namespace: str, *, middleware: Sequence[Any] = ()) -> dmem.Store:
            store = dmem.Store(make(kind, namespace), middleware=middleware)
            await store.initialize()
            return store

        return factory
