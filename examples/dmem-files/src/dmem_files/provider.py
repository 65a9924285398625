"""``FilesProvider``: the dmem key-value contract on a plain directory, ``files:///DIR``.

One file per key (``_disk.py`` has the layout and the locking); every store opened on the
same directory, in this process or another, shares its data. The file system calls block,
so each call runs them in a worker thread (``asyncio.to_thread``), and the event loop
never waits on the disk.

What the contract asks, and where this provider does it:

* atomic ``if_not_exists``, also across processes: the check and the write happen under
  the namespace's ``flock`` (``Namespace.set_many``);
* a value, its tags and its expiry replaced together: they are one file, renamed into
  place in one step;
* expiry: the deadline is in the file, every read checks it, and writes sweep expired
  files at most once per ``sweep_interval``;
* patterns: file names are hashes, so there is no key range to push down: listing reads
  every header of the namespace and keeps what ``pattern.matches``;
* a directory that cannot be reached (removed, a file in its place, no permission, a full
  disk, a network mount gone): ``ProviderUnavailableError``, the file system's analogue of
  a server that is down.

Not atomic against a crash: a batch (``set_many``, ``delete_many``) is written file by file
under one lock, so other writers never interleave, but a crash midway leaves part of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import dmem

from ._disk import Header, Namespace, check_root

__all__ = ["FilesProvider"]

T = TypeVar("T")

_SCAN_BATCH = 64  # files read per trip to the worker thread while scanning: bounded memory


class FilesProvider(dmem.BaseKVProvider):
    """A key-value provider on a directory; namespaces are subdirectories, never mixed."""

    name = "files"

    def __init__(
        self,
        root: Path,
        *,
        namespace: str = "",
        create: bool = True,
        fsync: bool = True,
        sweep_interval: float = 10.0,
        timeout: float = 10.0,
    ) -> None:
        # Built by the factory: keep the settings, touch no file (initialize() does).
        self.root = root
        self.namespace = namespace
        self.create = create
        self.sweep_interval = sweep_interval
        self._space = Namespace(root, namespace, fsync=fsync, lock_timeout=timeout)
        self._open = False
        self._next_sweep = 0.0

    def __repr__(self) -> str:
        return f"<FilesProvider files://{self.root} namespace={self.namespace!r}>"

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function`` in a worker thread; an ``OSError`` from the file system becomes
        ``ProviderUnavailableError``: the directory cannot be reached or written."""
        if not self._open:
            raise dmem.NotInitializedError(f"{self!r} is not initialized or is closed")
        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        except dmem.DmemError:  # StoreNotFoundError is a FileNotFoundError too: keep it
            raise
        except OSError as exc:
            raise dmem.ProviderUnavailableError(
                f"files://{self.root}: {type(exc).__name__}: {exc}"
            ) from exc

    # --- lifecycle ----------------------------------------------------------------------------
    async def initialize(self) -> None:
        """The directory exists, or is made (``create``), or ``StoreNotFoundError``; one that
        cannot be reached is ``ProviderUnavailableError``."""
        self._open = True
        try:
            await self._call(check_root, self.root, self.create)
        except BaseException:
            self._open = False
            raise

    async def aclose(self) -> None:
        self._open = False  # nothing is held between calls: no file, no lock

    # --- reads --------------------------------------------------------------------------------
    async def get_entry(self, key: str) -> dmem.Entry | None:
        return await self._call(self._space.entry, key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        def read_all() -> dict[str, bytes]:
            found = {}
            for key in keys:
                record = self._space.read(key)
                if record is not None:
                    found[key] = record[1]
            return found

        return await self._call(read_all)

    async def get_tags(self, key: str) -> dict[str, str]:
        found = await self._call(self._space.read, key, want_value=False)
        if found is None:
            raise dmem.KeyNotFoundError(f"key {key!r} is not live")
        return dict(found[0].tags)

    async def _headers(self) -> list[Header]:
        """The headers of every live key of the namespace (no value is read)."""

        def read_all() -> list[Header]:
            names = self._space.names()
            return [header for header, _ in self._space.read_names(names, want_value=False)]

        return await self._call(read_all)

    async def scan(self, pattern: dmem.Pattern) -> AsyncIterator[tuple[str, bytes]]:
        # A snapshot of the file names, then their files a batch at a time: memory stays
        # bounded by the batch, whatever the values' sizes. Each key once: one file each.
        names = await self._call(self._space.names)
        for start in range(0, len(names), _SCAN_BATCH):
            batch = names[start : start + _SCAN_BATCH]
            records = await self._call(
                self._space.read_names, batch, want_value=True, keep=pattern.matches
            )
            for header, value in records:
                yield header.key, value

    async def keys(self, pattern: dmem.Pattern) -> list[str]:
        return [h.key for h in await self._headers() if pattern.matches(h.key)]

    async def count(self, pattern: dmem.Pattern) -> int:
        return len(await self.keys(pattern))

    async def find_by_tag(self, name: str, value: str) -> list[str]:
        # No tag index to keep in step: a key's tags live in its own file.
        return [h.key for h in await self._headers() if h.tags.get(name) == value]

    # --- writes -------------------------------------------------------------------------------
    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        written = await self.set_many(
            [(key, value)], ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags
        )
        return written == 1

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        await self._sweep_if_due()
        # The ttl runs from the call: time spent waiting for the lock counts.
        deadline = None if ttl_ms is None else time.time() + ttl_ms / 1000
        return await self._call(self._space.set_many, items, deadline, tags, if_not_exists)

    async def delete(self, key: str) -> bool:
        return await self._call(self._space.delete, key)

    async def delete_many(self, keys: Sequence[str]) -> int:
        def delete_all() -> int:
            return sum(self._space.delete(key) for key in keys)

        return await self._call(delete_all)

    async def expire(self, key: str, ttl_ms: int) -> bool:
        return await self._call(self._space.set_deadline, key, time.time() + ttl_ms / 1000)

    async def persist(self, key: str) -> bool:
        return await self._call(self._space.set_deadline, key, None)

    async def clear(self) -> int:
        return await self._call(self._space.clear)

    async def _sweep_if_due(self) -> None:
        """Purge expired files at most once per ``sweep_interval`` (the contract: expired
        data is purged in the background or on write, so storage cannot grow without
        bound). Reads ignore expired files either way."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.sweep_interval
        await self._call(self._space.sweep)

    # --- health -------------------------------------------------------------------------------
    async def health(self) -> dmem.HealthStatus:
        start = time.perf_counter()
        try:
            await self._call(check_root, self.root, False)
        except Exception as exc:  # noqa: BLE001 - health() reports, it does not raise
            return dmem.HealthStatus("unhealthy", self.name, type(exc).__name__)
        return dmem.HealthStatus(
            "healthy",
            self.name,
            f"directory {self.root}",
            latency_ms=(time.perf_counter() - start) * 1000,
            details={"namespace": self.namespace},
        )
