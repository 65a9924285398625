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

Connecting is never cancelled half-way: asyncpg, cancelled just after its TCP connect (in
its TLS negotiation), leaves a future's exception unretrieved, and asyncio logs "Future
exception was never retrieved ... unexpected connection_lost()" (the background purge,
cancelled by ``aclose()`` while it opened a connection, did so in about half of the
open/set/set/close cycles). So each connect runs as its own task: a caller that stops
waiting for it (its time is up, or it was cancelled) leaves it running, and the connection
it makes is closed; ``close()`` waits for those still running (asyncpg's own connect timeout
bounds them).

Statement time limit: not asyncpg's ``command_timeout``, which arms and cancels a
loop timer around every query (~11 µs a call, measured here: 15% of a whole
``set``). Instead each connection handed out carries a deadline, and one watchdog
task, waking every ``command_timeout / 8``, terminates a connection whose call is
past it (and has the server abort the statement, see ``_cut_off``); the caller gets
``ProviderUnavailableError``. A statement is cut off between 3/4 of
``command_timeout`` and ``command_timeout`` after it started.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
from dmem import NotInitializedError

log = logging.getLogger("dmem.postgresql")

__all__ = ["ConnectionPool"]


class ConnectionPool:
    """Up to ``size`` connections made by ``connect``; ``acquire`` waits ``timeout`` at most."""

    def __init__(
        self,
        connect: Callable[[], Coroutine[Any, Any, asyncpg.Connection]],
        *,
        size: int,
        timeout: float,
        command_timeout: float,
    ) -> None:
        self._connect = connect
        self._size = size
        self._timeout = timeout
        # Over by at most one period to notice and one to abort: done by command_timeout.
        self._watch_every = command_timeout / 8
        self._call_limit = command_timeout - 2 * self._watch_every
        self._deadlines: dict[asyncpg.Connection, float] = {}  # connections in use
        self._overdue: set[asyncpg.Connection] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._idle: list[asyncpg.Connection] = []
        self._count = 0  # connections open or being opened
        self._waiters: collections.deque[asyncio.Future[asyncpg.Connection | None]] = (
            collections.deque()
        )
        self._connecting: set[asyncio.Task[asyncpg.Connection]] = set()
        self._closed = False

    @property
    def size(self) -> int:
        return self._count

    def acquire_idle(self) -> asyncpg.Connection | None:
        """An idle connection for one call without suspending, or None when none is idle.

        Its deadline runs until :meth:`release`. Callers try this before
        :meth:`acquire_new`: on the common path it saves creating and awaiting a coroutine
        (~1 µs a call).
        """
        if self._closed:
            raise NotInitializedError("the PostgreSQL provider is closed")
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.is_closed():
                self._lend(conn)
                return conn
            self._count -= 1  # died while idle (server restart): forget it
            log.debug("a pooled connection was closed (server restart?): dropped")
        return None

    async def acquire(self) -> asyncpg.Connection:
        """A connection for one call; its deadline runs until :meth:`release`."""
        return self.acquire_idle() or await self.acquire_new()

    async def acquire_new(self, timeout: float | None = None) -> asyncpg.Connection:
        """A connection opened for this call, or the next one released: for when
        :meth:`acquire_idle` found none idle. Its deadline runs until :meth:`release`.

        ``timeout``: the longest wait (the pool's ``timeout`` when None), for a caller that
        has waited already (a batch of calls queued behind busy ones)."""
        wait = self._timeout if timeout is None else timeout
        conn = await (self._open(wait) if self._count < self._size else self._wait(wait))
        self._lend(conn)
        return conn

    def _lend(self, conn: asyncpg.Connection) -> None:
        self._deadlines[conn] = time.monotonic() + self._call_limit
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    def overdue(self, conn: asyncpg.Connection) -> bool:
        """Whether the watchdog cut ``conn`` off for running past the statement limit."""
        return conn in self._overdue

    async def _watch(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._watch_every)
            now = time.monotonic()
            overdue = [
                conn
                for conn, deadline in self._deadlines.items()
                if now >= deadline and conn not in self._overdue
            ]
            for conn in overdue:
                self._overdue.add(conn)
            await asyncio.gather(*(self._cut_off(conn) for conn in overdue))

    async def _cut_off(self, conn: asyncpg.Connection) -> None:
        """End ``conn``'s call, on the server first, then for its caller.

        Closing our end alone is not enough: a backend waiting on a lock does not notice,
        and a write would land after its caller was told it failed. So a helper
        connection has the server abort it (``pg_terminate_backend``, as asyncpg's
        cancel request would) within one watchdog period; when the server cannot be
        reached in that time there is nothing to abort, and our end is closed anyway.
        """

        async def abort_on_server() -> None:
            helper = await self._connected(self._start_connect(), None)
            try:
                await helper.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
            finally:
                helper.terminate()

        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(abort_on_server(), self._watch_every)
        finally:
            conn.terminate()  # the caller's call fails now, if the server has not ended it

    async def _open(self, timeout: float) -> asyncpg.Connection:
        self._count += 1
        log.debug("opening pooled connection %d of at most %d", self._count, self._size)
        try:
            return await self._connected(self._start_connect(), timeout)
        except BaseException:
            self._count -= 1
            self._hand_over(None)  # a waiter may try in our place
            raise

    def _start_connect(self) -> asyncio.Task[asyncpg.Connection]:
        task = asyncio.get_running_loop().create_task(self._connect())
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        return task

    @staticmethod
    async def _connected(
        task: asyncio.Task[asyncpg.Connection], timeout: float | None
    ) -> asyncpg.Connection:
        """The connection ``task`` makes, waiting at most ``timeout`` for it. A caller that
        stops waiting (time is up, or it is cancelled) does not cancel the connect (see the
        module docstring): the connection is closed once it is made."""
        try:
            done, _ = await asyncio.wait((task,), timeout=timeout)
        except BaseException:
            task.add_done_callback(_discard)
            raise
        if not done:
            task.add_done_callback(_discard)
            raise asyncio.TimeoutError(f"no connection within timeout={timeout:g} s")
        return task.result()

    async def _wait(self, timeout: float) -> asyncpg.Connection:
        deadline = time.monotonic() + timeout
        future: asyncio.Future[asyncpg.Connection | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiters.append(future)
        try:
            conn = await asyncio.wait_for(future, timeout)
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
        self._deadlines.pop(conn, None)
        if conn in self._overdue:
            # The watchdog is cutting it off (its call may have just finished): never hand
            # it to another caller, whose call the cut-off would kill.
            self._overdue.discard(conn)
            broken = True
        if broken or self._closed or conn.is_closed():
            self._count -= 1
            if not self._closed:
                log.debug("a connection failed or was cut off: closed, a new one opens on demand")
            if not conn.is_closed():
                conn.terminate()
            self._hand_over(None)
            return
        if not self._hand_over(conn):
            self._idle.append(conn)

    async def _close_idle(self, conn: asyncpg.Connection) -> None:
        try:
            await asyncio.wait_for(conn.close(), self._timeout)
        except Exception:  # noqa: BLE001 - a dead server must not make close hang
            with contextlib.suppress(Exception):
                conn.terminate()

    async def close(self) -> None:
        self._closed = True
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_exception(NotInitializedError("the PostgreSQL provider is closed"))
        idle, self._idle = self._idle, []
        self._count -= len(idle)
        # At once: one after another, a server that stopped answering made close() take
        # `timeout` per idle connection (4 s for 4 with timeout=1).
        await asyncio.gather(*(self._close_idle(conn) for conn in idle))
        if self._connecting:
            # Connects nobody waits for any more end within asyncpg's connect timeout; left
            # running, a loop closed next would cancel them half-way (see the docstring).
            await asyncio.wait(set(self._connecting))


def _discard(task: asyncio.Task[asyncpg.Connection]) -> None:
    """Done callback of a connect nobody waits for: close what it made, and retrieve its
    exception (asyncio logs one left unretrieved)."""
    if task.cancelled():
        return
    if task.exception() is None:
        task.result().terminate()
