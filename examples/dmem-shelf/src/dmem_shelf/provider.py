"""``ShelfProvider``: the dmem key-value contract on top of the toy backend in ``_shelf.py``.

The :class:`dmem.Store` in front of a provider has already checked and
converted every argument, so a provider only ever receives

* ``key``: a valid ``str``; ``value``: ``bytes`` (encoded once, by the core);
* ``ttl_ms``: ``None`` (no expiry) or a positive ``int`` of milliseconds;
* ``tags``: a checked ``Mapping[str, str]`` (empty: no tags);
* ``pattern``: a compiled :class:`dmem.Pattern`.

What is left to the provider: expiry (the backend has none), an atomic
``if_not_exists`` (the backend has no "write if absent"), tags, and listing
with the core's pattern matcher. :class:`dmem.BaseKVProvider` supplies the
rest (``get``, ``exists``, ``ttl``, ``get_many``, ``delete_many``) from the
methods below.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence

import dmem

from ._shelf import Record, Shelf, shelf_named

__all__ = ["ShelfProvider"]

_now = time.monotonic  # deadlines use the monotonic clock: the wall clock can jump


def _live(record: Record | None, now: float) -> Record | None:
    """``record`` if it exists and has not expired at ``now``.

    Every read goes through this: an expired key must be absent from every
    call even while its record is still in the backend.
    """
    if record is None or (record.deadline is not None and record.deadline <= now):
        return None
    return record


def _deadline(ttl_ms: int | None) -> float | None:
    return None if ttl_ms is None else _now() + ttl_ms / 1000


class ShelfProvider(dmem.BaseKVProvider):
    """A key-value provider on ``shelf://NAME``; namespaces share the shelf, never keys."""

    name = "shelf"

    def __init__(self, shelf: str, *, namespace: str = "", sweep_interval: float = 1.0) -> None:
        # The factory only builds this object: no I/O here, connecting is initialize()'s job.
        self.shelf_name = shelf
        self.namespace = namespace
        self.sweep_interval = sweep_interval
        self._shelf: Shelf | None = None
        self._next_sweep = 0.0

    def __repr__(self) -> str:
        # Nothing secret here; a provider with a password would show dmem.redact_url(url).
        return f"<ShelfProvider shelf://{self.shelf_name} namespace={self.namespace!r}>"

    # --- lifecycle --------------------------------------------------------------------------
    async def initialize(self) -> None:
        # "Connect". A network backend opens its connection (pool) here and raises
        # dmem.ProviderUnavailableError, within its timeout, when it cannot.
        self._shelf = shelf_named(self.shelf_name)

    async def aclose(self) -> None:
        self._shelf = None  # the data stays on the shelf, for the other stores

    def _backend(self) -> Shelf:
        if self._shelf is None:
            raise dmem.NotInitializedError("the shelf provider is not initialized or is closed")
        return self._shelf

    # --- reads ------------------------------------------------------------------------------
    async def get_entry(self, key: str) -> dmem.Entry | None:
        """The live value and its remaining ttl in whole ms (rounded up), or None.

        BaseKVProvider builds ``get``, ``exists``, ``ttl`` and ``get_many`` on this.
        """
        now = _now()
        record = _live(await self._backend().fetch(self.namespace, key), now)
        if record is None:
            return None
        if record.deadline is None:
            return record.value, None
        # Rounded up, so a live key never reports 0 ms left.
        return record.value, math.ceil((record.deadline - now) * 1000)

    async def get_tags(self, key: str) -> dict[str, str]:
        record = _live(await self._backend().fetch(self.namespace, key), _now())
        if record is None:
            raise dmem.KeyNotFoundError(f"key {key!r} is not live")
        return dict(record.tags)  # a copy: callers must not change what is stored

    async def _matching(self, pattern: dmem.Pattern) -> list[tuple[str, Record]]:
        """Live records whose key matches ``pattern``.

        Push the widest filter the backend understands down to it (here a key
        range: ``pattern.literal_prefix``), then keep only what the core's
        matcher accepts: ``?``, classes and escapes then mean the same on every
        backend. Never translate a dmem pattern to ``fnmatch`` or a regex of your own.
        """
        now = _now()
        found = await self._backend().key_range(self.namespace, pattern.literal_prefix)
        return [
            (key, record)
            for key, record in found
            if _live(record, now) is not None and pattern.matches(key)
        ]

    async def scan(self, pattern: dmem.Pattern) -> AsyncIterator[tuple[str, bytes]]:
        for key, record in await self._matching(pattern):
            yield key, record.value

    async def keys(self, pattern: dmem.Pattern) -> list[str]:
        return [key for key, _ in await self._matching(pattern)]

    async def count(self, pattern: dmem.Pattern) -> int:
        return len(await self._matching(pattern))

    async def find_by_tag(self, name: str, value: str) -> list[str]:
        # No tag index: filtering live records on read can never return a deleted,
        # expired or re-tagged key. A backend that keeps an index (a table, a Redis
        # set) must update it on every set, delete and expiry instead.
        now = _now()
        found = await self._backend().key_range(self.namespace, "")
        return [
            key
            for key, record in found
            if _live(record, now) is not None and record.tags.get(name) == value
        ]

    # --- writes -----------------------------------------------------------------------------
    # Every write holds the shelf's write lock. The backend has no "write if absent", so
    # if_not_exists is a read then a write, with a round trip (an await) in between: without
    # the lock, two tasks could both read "absent" and both write. expire/persist/delete are
    # read-then-write too, and must not resurrect a record another task just replaced.

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        backend = self._backend()
        async with backend.write_lock():
            await self._sweep_if_due()
            if if_not_exists and _live(await backend.fetch(self.namespace, key), _now()):
                return False  # and nothing changed: value, tags and expiry stay
            await backend.store(self.namespace, key, Record(value, _deadline(ttl_ms), dict(tags)))
            return True

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        # Overridden so the whole batch runs under one lock: no other writer of this
        # shelf interleaves with it. (Not atomic against a crash, which an in-process
        # dict has no need for; a database would use one transaction here.)
        backend = self._backend()
        written = 0
        async with backend.write_lock():
            await self._sweep_if_due()
            deadline = _deadline(ttl_ms)
            for key, value in items:
                if if_not_exists and _live(await backend.fetch(self.namespace, key), _now()):
                    continue
                await backend.store(self.namespace, key, Record(value, deadline, dict(tags)))
                written += 1
        return written

    async def delete(self, key: str) -> bool:
        backend = self._backend()
        async with backend.write_lock():
            removed = await backend.remove(self.namespace, key)
            # An expired record is removed too, but it was not live: False.
            return _live(removed, _now()) is not None

    async def expire(self, key: str, ttl_ms: int) -> bool:
        return await self._set_deadline(key, _deadline(ttl_ms))

    async def persist(self, key: str) -> bool:
        return await self._set_deadline(key, None)

    async def _set_deadline(self, key: str, deadline: float | None) -> bool:
        backend = self._backend()
        async with backend.write_lock():
            record = _live(await backend.fetch(self.namespace, key), _now())
            if record is None:
                return False  # never revive an expired key
            await backend.store(self.namespace, key, Record(record.value, deadline, record.tags))
            return True

    async def clear(self) -> int:
        # Only this namespace: other stores on the same shelf keep their data.
        backend = self._backend()
        async with backend.write_lock():
            dropped = await backend.drop(self.namespace)
        now = _now()
        return sum(1 for record in dropped if _live(record, now) is not None)

    async def _sweep_if_due(self) -> None:
        """Remove expired records, at most once per ``sweep_interval``; the caller holds the lock.

        Reads already ignore expired records; sweeping keeps storage from growing
        without bound (the contract: purged in the background or on write).
        """
        now = _now()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.sweep_interval
        backend = self._backend()
        for key, record in await backend.key_range(self.namespace, ""):
            if _live(record, now) is None:
                await backend.remove(self.namespace, key)

    # --- health -----------------------------------------------------------------------------
    async def health(self) -> dmem.HealthStatus:
        """Never raises, never shows a secret (run anything that goes in through redact_url)."""
        start = time.perf_counter()
        try:
            await self._backend().fetch(self.namespace, "dmem:health-probe")
        except Exception as exc:  # noqa: BLE001 - health() reports, it does not raise
            return dmem.HealthStatus("unhealthy", self.name, type(exc).__name__)
        return dmem.HealthStatus(
            "healthy",
            self.name,
            f"in-process shelf {self.shelf_name!r}",
            latency_ms=(time.perf_counter() - start) * 1000,
            details={"shelf": self.shelf_name, "namespace": self.namespace},
        )
