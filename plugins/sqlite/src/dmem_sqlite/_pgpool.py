"""A minimal pool of asyncpg connections, for the single-statement calls of the provider.

Why not ``asyncpg.Pool``: measured here, its acquire/release costs 150-250 µs per
call (a task for ``wait_for`` on acquire, a shielded task on release, the
release-time reset), more than the query itself on a local server (~90 µs).
This pool hands out an idle connection without suspending, and takes it back
synchronously; it only waits when all ``size`` connections are busy. It can be
this simple because every call is one statement in autocommit mode: a
connection never goes back with a transaction or session state left open. A
connection that failed at the network level (or whose call was cancelled
mid-statement) is terminated instead of being reused.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable

import asyncpg
from dmem import NotInitializedError

__all__ = ["ConnectionPool"]


class ConnectionPool:
    """Up to ``size`` connections made by ``connect``; ``acquire`` waits ``timeout`` at most."""

    def __init__(
        self, connect: Callable[[], Awaitable[asyncpg.Connection]], *, size: int, timeout: float
    ) -> None:
        self._connect = connect
        self._size = size
        self._timeout = timeout
        self._idle: list[asyncpg.Connection] = []
        self._count = 0  # connections open or being opened
        self._waiters: collections.deque[asyncio.Future[asyncpg.Connection | None]] = (
            collections.deque()
        )
        self._closed = False

    @property
    def size(self) -> int:
        return self._count

    async def acquire(self) -> asyncpg.Connection:
        if self._closed:
            raise NotInitializedError("the PostgreSQL provider is closed")
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.is_closed():
                return conn
            self._count -= 1  # died while idle (server restart): forget it
        if self._count < self._size:
            return await self._open(self._timeout)
        return await self._wait()

    async def _open(self, timeout: float) -> asyncpg.Connection:
        self._count += 1
        try:
            return await asyncio.wait_for(self._connect(), timeout)
        except BaseException:
            self._count -= 1
            self._hand_over(None)  # a waiter may try in our place
            raise

    async def _wait(self) -> asyncpg.Connection:
        deadline = time.monotonic() + self._timeout
        future: asyncio.Future[asyncpg.Connection | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiters.append(future)
        try:
            conn = await asyncio.wait_for(future, self._timeout)
        except BaseException:
            if future.done() and not future.cancelled() and future.result() is not None:
                self.release(future.result())  # handed over just as we gave up
            raise
        if conn is None:  # a slot was freed: open a connection in it
            return await self._open(max(0.001, deadline - time.monotonic()))
        return conn

    def _hand_over(self, conn: asyncpg.Connection | None) -> bool:
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(conn)
                return True
        return False

    def release(self, conn: asyncpg.Connection, *, broken: bool = False) -> None:
        """Take ``conn`` back; ``broken`` (or closed) connections are terminated."""
        if broken or self._closed or conn.is_closed():
            self._count -= 1
            if not conn.is_closed():
                conn.terminate()
            self._hand_over(None)
            return
        if not self._hand_over(conn):
            self._idle.append(conn)

    async def close(self) -> None:
        self._closed = True
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_exception(NotInitializedError("the PostgreSQL provider is closed"))
        idle, self._idle = self._idle, []
        for conn in idle:
            self._count -= 1
            try:
                await asyncio.wait_for(conn.close(), self._timeout)
            except Exception:  # noqa: BLE001 - a dead server must not make close hang
                with contextlib.suppress(Exception):
                    conn.terminate()
