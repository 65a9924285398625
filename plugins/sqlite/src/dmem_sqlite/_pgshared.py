"""A PostgreSQL server as the stores of one process (and event loop) share it: one pool.

Stores opened with the same connection settings (``dmem.open`` twice, or
``Store.with_namespace``) take a lease on one :class:`Server` (``dmem.sharing``, per event
loop: asyncpg connections belong to the loop that made them): its :class:`ConnectionPool`
of ``pool_size`` connections, closed with the last store. The background purge of expired
rows is the server's too, one per table, so a hundred namespaces do not run a hundred of
them. A store opened with ``share_connection=false`` gets a pool of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import asyncpg
from dmem.sharing import Lease, SharedConnections

from ._common import PURGE_BATCH, now_ms
from ._config import PostgresConfig
from ._pgbatch import ReadBatcher, WriteBatcher
from ._pgpool import ConnectionPool

__all__ = ["Purger", "Server", "open_server"]

_B = TypeVar("_B", ReadBatcher, WriteBatcher)  # a batcher of one kind

log = logging.getLogger("dmem.postgresql")

PURGE_INTERVAL = 5.0  # seconds between background purges of a table's expired rows

_SERVERS: SharedConnections[Server] = SharedConnections("postgresql", per_loop=True)


def _key(config: PostgresConfig, connect_kwargs: dict[str, Any]) -> Hashable | None:
    """What makes two stores' pools the same one (None: a pool of its own). The password is
    part of it: it stays in this process's memory, never shown."""
    if not config.share_connection:
        return None
    target = tuple(
        (name, tuple(value) if isinstance(value, list) else value)
        for name, value in sorted(connect_kwargs.items())
    )
    # pipelining too: the stores on one pool share its batched reads (_pgbatch), or none.
    return (target, config.timeout, config.command_timeout, config.pool_size, config.pipelining)


def open_server(config: PostgresConfig) -> Lease[Server]:
    """A lease on the pool for ``config``; nothing connects here (the pool does on demand)."""
    kwargs = config.connect_kwargs()
    return _SERVERS.acquire(_key(config, kwargs), lambda: Server(config, kwargs), _close)


async def _close(server: Server) -> None:
    await server.close()


class Server:
    """The pool, and one purger per table the process's stores on it use."""

    def __init__(self, config: PostgresConfig, connect_kwargs: dict[str, Any]) -> None:
        self._connect_kwargs = connect_kwargs
        self._timeout = config.timeout
        self.display = config.display
        self.pool = ConnectionPool(
            self._connect,
            size=config.pool_size,
            timeout=config.timeout,
            command_timeout=config.command_timeout,
        )
        self._purgers: dict[str, Purger] = {}
        self._pipelining = config.pipelining
        self._command_timeout = config.command_timeout
        # Batched reads: at most 4 calls or batches at once (never more than the pool's
        # connections, so a call that takes a slot finds a connection without queuing in
        # the pool). Measured (bench_sqlite "get x200 concurrent", local server, pool_size
        # 10, two cores): slots 1/2/3/4/5/10 gave ~140k/159k/149k/144k/126k/125-134k gets/s
        # and p99 1.5 ms at 2 vs 3.1 ms at 10. The loop's Python (~50-70 µs a statement,
        # whatever its size) is the limit, so fewer, bigger batches go faster; 4 rather
        # than 2 keeps a few statements in flight over a real network, where round trips,
        # not the client, bound a handful of concurrent callers.
        self._slots = min(config.pool_size, 4)
        self._readers: dict[str, ReadBatcher] = {}
        self._writers: dict[str, WriteBatcher] = {}

    async def connect(self) -> asyncpg.Connection:
        """A connection outside the pool (an invalidation channel's), the pool's settings."""
        return await self._connect()

    async def _connect(self) -> asyncpg.Connection:
        # Keyword arguments, never a DSN (asyncpg's DSN errors quote the URL, see _config).
        # No command_timeout here: the pool enforces it (one watchdog, no timer per call).
        return await asyncpg.connect(**self._connect_kwargs, timeout=self._timeout)

    def purger(self, table: str, purge_sql: str) -> Purger:
        purger = self._purgers.get(table)
        if purger is None:
            purger = self._purgers[table] = Purger(self.pool, purge_sql, self.display)
        return purger

    def reader(self, table: str, sql: str, where: str) -> ReadBatcher | None:
        """The batched reads of the stores on ``table`` (``sql``: its ``read_batch``
        statement); None with ``pipelining=false``."""
        return self._batcher(self._readers, ReadBatcher, table, sql, where)

    def writer(self, table: str, sql: str, where: str) -> WriteBatcher | None:
        """The batched plain sets of the stores on ``table`` (``sql``: its ``write_batch``
        statement); None with ``pipelining=false``."""
        return self._batcher(self._writers, WriteBatcher, table, sql, where)

    def _batcher(
        self, made: dict[str, _B], kind: Callable[..., _B], table: str, sql: str, where: str
    ) -> _B | None:
        """The batcher of ``table`` in ``made``, made with ``kind`` on first use."""
        if not self._pipelining:
            return None
        batcher = made.get(table)
        if batcher is None:
            batcher = made[table] = kind(
                self.pool,
                sql,
                slots=self._slots,
                where=where,
                timeout=self._timeout,
                command_timeout=self._command_timeout,
            )
        return batcher

    async def close(self) -> None:
        # Batches under way end first (their callers get their outcomes).
        for reader in self._readers.values():
            await reader.aclose()
        for writer in self._writers.values():
            await writer.aclose()
        for purger in self._purgers.values():
            await purger.stop()
        await self.pool.close()


class Purger:
    """The background purge of one table's expired rows (every namespace), started by writes
    at most every ``PURGE_INTERVAL`` seconds."""

    def __init__(self, pool: ConnectionPool, sql: str, display: str) -> None:
        self._pool = pool
        self._sql = sql
        self._display = display
        self.next = 0.0  # time.monotonic() when a write may start the next purge
        self.task: asyncio.Task[None] | None = None

    def after_write(self) -> None:
        now = time.monotonic()
        if now < self.next or self.task is not None:
            return
        self.next = now + PURGE_INTERVAL
        self.task = asyncio.get_running_loop().create_task(self._purge())

    async def _purge(self) -> None:
        conn: asyncpg.Connection | None = None
        healthy = False
        try:
            conn = await self._pool.acquire()
            purged = await conn.fetchval(self._sql, now_ms(), PURGE_BATCH)
            healthy = True
            if purged:
                log.debug("%s: purged %s expired rows", self._display, purged)
        except Exception as exc:  # noqa: BLE001 - best effort; reads filter expiry anyway
            # The type only: a driver's message may quote the statement's arguments.
            log.debug("%s: purge of expired rows failed (%s)", self._display, type(exc).__name__)
        finally:
            if conn is not None:
                self._pool.release(conn, broken=not healthy)
            self.task = None

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
