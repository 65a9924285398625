"""The toy backend behind ``shelf://NAME``: a dict in this process, spoken to like a server.

This module plays the part of a database client. Its API is deliberately
poor, like many real backends' (an object store, a file system, a plain
REST key-value service): fetch, store and remove one record, list a key
range, drop a namespace. There is no "write if absent" and no expiry, so the
provider (``provider.py``) has to build both on top, which is the interesting
part of most plugins.

Every call awaits a stand-in for the network round trip, so other tasks run
in the middle of the provider's read-then-write sequences, exactly as they
would against a real server. That is what makes the provider's lock
necessary rather than decoration.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from dataclasses import dataclass

__all__ = ["Record", "Shelf", "shelf_named"]


@dataclass(frozen=True)
class Record:
    """What the backend keeps per key: the encoded value, its deadline and its tags."""

    value: bytes
    deadline: float | None
    """``time.monotonic()`` at which the key expires; None: it never does."""
    tags: dict[str, str]


async def _round_trip() -> None:
    # A real client awaits the network here; other tasks get to run meanwhile.
    await asyncio.sleep(0)


class Shelf:
    """The data of one shelf NAME: namespace -> key -> :class:`Record`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._spaces: dict[str, dict[str, Record]] = {}
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    async def fetch(self, namespace: str, key: str) -> Record | None:
        """The record of ``key``, expired or not (the backend knows nothing of expiry)."""
        await _round_trip()
        return self._spaces.get(namespace, {}).get(key)

    async def store(self, namespace: str, key: str, record: Record) -> None:
        """Create or replace the record of ``key``."""
        await _round_trip()
        self._spaces.setdefault(namespace, {})[key] = record

    async def remove(self, namespace: str, key: str) -> Record | None:
        """Remove ``key``; return the record it had, if any."""
        await _round_trip()
        return self._spaces.get(namespace, {}).pop(key, None)

    async def key_range(self, namespace: str, prefix: str) -> list[tuple[str, Record]]:
        """Every ``(key, record)`` whose key starts with ``prefix`` (a key-range query).

        A snapshot: a list of references, no value is copied. A network backend
        would page through the range with a cursor instead.
        """
        await _round_trip()
        space = self._spaces.get(namespace, {})
        return [(key, record) for key, record in space.items() if key.startswith(prefix)]

    async def drop(self, namespace: str) -> list[Record]:
        """Remove a whole namespace; return the records it held."""
        await _round_trip()
        return list(self._spaces.pop(namespace, {}).values())

    def write_lock(self) -> asyncio.Lock:
        """The lock that serializes this shelf's writers on the running event loop.

        One per loop: an ``asyncio.Lock`` belongs to the loop it first waited
        on, and the conformance suite gives every test a loop of its own.
        """
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock


_SHELVES: dict[str, Shelf] = {}
_SHELVES_LOCK = threading.Lock()


def shelf_named(name: str) -> Shelf:
    """The process-wide shelf called ``name``, created on first use."""
    with _SHELVES_LOCK:
        shelf = _SHELVES.get(name)
        if shelf is None:
            shelf = _SHELVES[name] = Shelf(name)
        return shelf
