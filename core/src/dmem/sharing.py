"""One connection per backend per process: reference-counted handles shared by many stores.

Thirty stores on one Redis server need not hold thirty connection pools, nor thirty stores
on one SQLite file thirty worker threads. A plugin keeps one :class:`SharedConnections`
registry; each provider takes a :class:`Lease` on the handle for its backend when it opens
and gives it back when it closes; the handle is closed with its last lease::

    _CLIENTS: SharedConnections[Client] = SharedConnections("redis", per_loop=True)

    lease = _CLIENTS.acquire(key, lambda: Client(config), close_client)  # no I/O
    lease.value                     # the handle, shared with every lease of the same key
    other = lease.share()           # Store.with_namespace: another lease, same handle
    await lease.release()           # idempotent; the last release awaits close_client(handle)

``key`` is what makes two connections the same: the backend's address and every option of
the connection (credentials included: the key stays in this process's memory and is never
shown), but not the namespace. ``key=None`` gives a private handle that no other
``acquire`` finds (a store opened with ``share_connection=false``, or a private in-memory
database); its own leases still share it.

``per_loop=True`` for clients bound to the event loop they were made on (redis.asyncio,
asyncpg): the running loop is then part of the key, so no handle is ever used from two
loops. A thread-backed handle (SQLite's worker, Chroma's client) may serve every loop.

After ``os.fork()`` the child starts with empty registries: the parent's handles (a worker
thread the fork did not copy, sockets shared with the parent) are not the child's to use or
close, so a store the child opens makes handles of its own.

``open`` runs under the registry's lock and must not wait for I/O: it makes a handle that
connects later (a pool that connects on first use, a thread that opens its connection
itself). Providers connect, or check that they can, in their ``initialize``; a failure
there releases the lease, so a backend that is down leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from .errors import NotInitializedError

__all__ = ["Lease", "SharedConnections"]

T = TypeVar("T")


class _Entry(Generic[T]):
    __slots__ = ("close", "key", "refs", "value")

    def __init__(self, key: Hashable | None, value: T, close: Callable[[T], Awaitable[None]]):
        self.key = key
        self.value = value
        self.close = close
        self.refs = 0


class Lease(Generic[T]):
    """One user's reference to a shared handle; :meth:`release` gives it back."""

    __slots__ = ("_entry", "_registry", "_released")

    def __init__(self, registry: SharedConnections[T], entry: _Entry[T]) -> None:
        self._registry = registry
        self._entry = entry
        self._released = False

    @property
    def value(self) -> T:
        """The shared handle; :class:`NotInitializedError` once this lease is released."""
        if self._released:
            raise NotInitializedError(f"this {self._registry.name} connection was released")
        return self._entry.value

    @property
    def released(self) -> bool:
        return self._released

    @property
    def shared(self) -> bool:
        """Whether other ``acquire`` calls of this process can find the handle."""
        return self._entry.key is not None

    @property
    def users(self) -> int:
        """Leases currently held on the handle (this one included, unless released)."""
        return self._entry.refs

    def share(self) -> Lease[T]:
        """Another lease on the same handle, without I/O (for ``with_namespace``)."""
        if self._released:
            raise NotInitializedError(f"this {self._registry.name} connection was released")
        with self._registry._lock:
            self._entry.refs += 1
        return Lease(self._registry, self._entry)

    async def release(self) -> None:
        """Give the lease back; the last one closes the handle. Idempotent."""
        if self._released:
            return
        self._released = True
        if self._registry._drop(self._entry):
            await self._entry.close(self._entry.value)


class SharedConnections(Generic[T]):
    """A process-wide registry of handles, each shared by the leases of one key."""

    def __init__(self, name: str, *, per_loop: bool = False) -> None:
        self.name = name
        self.per_loop = per_loop
        self._entries: dict[Hashable, _Entry[T]] = {}
        # Leases are taken and released from the threads of several event loops.
        self._lock = threading.Lock()
        _REGISTRIES.add(self)

    def _forget_after_fork(self) -> None:
        # In a forked child: the entries belong to the parent (nothing here is closed: that
        # would close the parent's sockets or wait for a thread that does not exist here),
        # and the lock may have been held by a thread the fork did not copy.
        self._entries = {}
        self._lock = threading.Lock()

    def _full_key(self, key: Hashable) -> Hashable:
        return (asyncio.get_running_loop(), key) if self.per_loop else key

    def acquire(
        self,
        key: Hashable | None,
        open: Callable[[], T],  # noqa: A002 - the natural name, a parameter only
        close: Callable[[T], Awaitable[None]],
    ) -> Lease[T]:
        """A lease on the handle of ``key``, made with ``open()`` if there is none yet.

        ``key=None``: a private handle, found by no other call. With ``per_loop``, call it
        on the event loop the handle is for.
        """
        if key is None:
            entry = _Entry(None, open(), close)
            entry.refs = 1
            return Lease(self, entry)
        full = self._full_key(key)
        with self._lock:
            found = self._entries.get(full)
            if found is None:
                found = self._entries[full] = _Entry(full, open(), close)
            found.refs += 1
        return Lease(self, found)

    def _drop(self, entry: _Entry[T]) -> bool:
        """One lease fewer; True when it was the last (the caller then closes the handle)."""
        with self._lock:
            entry.refs -= 1
            if entry.refs > 0:
                return False
            if entry.key is not None and self._entries.get(entry.key) is entry:
                del self._entries[entry.key]
            return True

    def users(self, key: Hashable) -> int:
        """Leases held on the handle of ``key`` (on the running loop, with ``per_loop``)."""
        with self._lock:
            entry = self._entries.get(self._full_key(key))
            return 0 if entry is None else entry.refs

    def __len__(self) -> int:
        """Shared handles open in this process (private ones are not counted)."""
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<SharedConnections {self.name}: {len(self)} shared>"


_REGISTRIES: weakref.WeakSet[SharedConnections[Any]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for registry in list(_REGISTRIES):
        registry._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
