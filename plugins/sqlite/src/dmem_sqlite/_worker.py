"""One thread that owns a ``sqlite3`` connection: one hop per call, group commit of writes.

Why not SQLAlchemy's async engine or aiosqlite: each of their operations crosses
between the event loop and a thread several times (execute, fetch, commit,
cursor close). Here a call is a single job: the loop thread puts ``(function,
args)`` on a queue, the worker runs the whole function (all its statements)
against its connection, and hands the results back with one wake-up of each caller's
loop per drained batch (:func:`dmem.threads.loop_inbox`: an ``eventfd`` on Linux, ~15 µs
quicker than ``call_soon_threadsafe``). The event loop never blocks on SQLite.

Group commit: the worker drains whatever is queued. Consecutive write jobs run
in one ``BEGIN IMMEDIATE`` ... ``COMMIT`` (so concurrent writers share one fsync);
if one of them fails, the group is rolled back and each job is re-run in its own
transaction, so a failing job never takes others down with it. Reads run in
autocommit mode, each statement its own consistent snapshot (WAL: readers never
wait for writers).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from dmem import DmemError, NotInitializedError, ProviderError, ProviderUnavailableError
from dmem.threads import LoopInbox, Outcome, loop_inbox

__all__ = ["Worker", "map_error"]

T = TypeVar("T")

_MAX_GROUP = 256  # jobs per drained batch: bounds one transaction's size and latency
_STOP = object()

# A job: (function, args, is_write, future, the caller's loop inbox)
_Job = tuple[Callable[..., Any], tuple[Any, ...], bool, "asyncio.Future[Any]", LoopInbox]

_UNAVAILABLE_HINTS = (
    "database is locked",
    "unable to open",
    "disk i/o error",
    "readonly database",
    "database or disk is full",
)


def map_error(exc: BaseException, where: str) -> BaseException:
    """A ``sqlite3`` error as a dmem error (the original as ``__cause__``); others unchanged."""
    if isinstance(exc, DmemError):
        return exc
    if isinstance(exc, OSError):  # the file or its directory cannot be created or opened
        unavailable = ProviderUnavailableError(f"{where}: {type(exc).__name__}: {exc}")
        unavailable.__cause__ = exc
        return unavailable
    if not isinstance(exc, sqlite3.Error):
        return exc
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and any(
        hint in text.lower() for hint in _UNAVAILABLE_HINTS
    ):
        mapped: ProviderError = ProviderUnavailableError(f"{where}: {text}")
    else:
        mapped = ProviderError(f"{where}: sqlite3.{type(exc).__name__}: {text}")
    mapped.__cause__ = exc
    return mapped


class Worker:
    """A daemon thread running jobs against one connection made by ``opener``.

    ``maintenance(conn)`` (the purge of expired rows) runs inside a write
    transaction at most every ``maintenance_interval`` seconds, under a savepoint so
    its failure never affects the writes it rides along with.
    """

    def __init__(
        self,
        opener: Callable[[], sqlite3.Connection],
        *,
        where: str,
        maintenance: Callable[[sqlite3.Connection], None] | None = None,
        maintenance_interval: float = 1.0,
    ) -> None:
        self._opener = opener
        self._where = where
        self._maintenance = maintenance
        self._interval = maintenance_interval
        self._next_maintenance = 0.0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="dmem-sqlite", daemon=True)
        self._conn: sqlite3.Connection | None = None
        self._open_error: BaseException | None = None
        self._stopped = False

    def start(self) -> None:
        self._thread.start()

    def call(self, fn: Callable[..., T], *args: Any, write: bool = False) -> asyncio.Future[T]:
        """Queue ``fn(conn, *args)``; the returned future resolves on the loop thread."""
        if self._stopped:
            raise NotInitializedError("the SQLite store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, args, write, future, loop_inbox(loop)))
        return future

    async def stop(self) -> None:
        """Finish queued jobs, close the connection, end the thread."""
        if self._stopped:
            return
        self._stopped = True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put((_STOP, (), False, future, loop_inbox(loop)))
        await future

    # --- the thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._conn = self._opener()
        except BaseException as exc:  # noqa: BLE001 - reported to every caller instead
            self._open_error = map_error(exc, self._where)
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        while True:
            batch: list[_Job] = [get()]
            while len(batch) < _MAX_GROUP:
                try:
                    batch.append(get_nowait())
                except queue.Empty:
                    break
            if self._process(batch):
                return

    def _process(self, batch: list[_Job]) -> bool:
        """Run a drained batch in order; True when a stop request was among it."""
        by_inbox: dict[LoopInbox, list[Outcome]] = {}
        stop = False
        i, n = 0, len(batch)
        while i < n:
            job = batch[i]
            fn, _args, write, future, inbox = job
            out = by_inbox.setdefault(inbox, [])
            if fn is _STOP:
                self._close()
                out.append((future, None, None))
                stop = True
                i += 1
            elif write:
                j = i + 1
                while j < n and batch[j][2] and batch[j][0] is not _STOP:
                    j += 1
                self._run_writes(batch[i:j], by_inbox)
                i = j
            else:
                out.append(self._run_one(job))
                i += 1
        for inbox, results in by_inbox.items():
            if results:
                inbox.post_many(results)
        return stop

    def _run_one(self, job: _Job) -> Outcome:
        fn, args, _write, future, _inbox = job
        conn = self._conn
        if conn is None:
            return future, self._open_error, None
        try:
            return future, None, fn(conn, *args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            return future, map_error(exc, self._where), None

    def _run_writes(self, jobs: list[_Job], by_inbox: dict[LoopInbox, list[Outcome]]) -> None:
        conn = self._conn
        if conn is None:
            for job in jobs:
                by_inbox.setdefault(job[4], []).append((job[3], self._open_error, None))
            return
        if len(jobs) == 1:
            results = [self._write_alone(jobs[0], conn)]
        else:
            results = self._write_group(jobs, conn)
        for job, result in zip(jobs, results, strict=True):
            by_inbox.setdefault(job[4], []).append(result)

    def _begin(self, conn: sqlite3.Connection) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads and
        # then upgrades can fail with SQLITE_BUSY at once, without the busy timeout.
        conn.execute("BEGIN IMMEDIATE")
        if self._maintenance is not None:
            now = time.monotonic()
            if now >= self._next_maintenance:
                self._next_maintenance = now + self._interval
                conn.execute("SAVEPOINT dmem_purge")
                try:
                    self._maintenance(conn)
                except sqlite3.Error:
                    conn.execute("ROLLBACK TO dmem_purge")
                conn.execute("RELEASE dmem_purge")

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    def _write_alone(self, job: _Job, conn: sqlite3.Connection) -> Outcome:
        fn, args, _write, future, _inbox = job
        try:
            self._begin(conn)
            value = fn(conn, *args)
            conn.execute("COMMIT")
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self._rollback(conn)
            return future, map_error(exc, self._where), None
        return future, None, value

    def _write_group(self, jobs: list[_Job], conn: sqlite3.Connection) -> list[Outcome]:
        values: list[Any] = []
        try:
            self._begin(conn)
            for fn, args, _write, _future, _inbox in jobs:
                values.append(fn(conn, *args))
            conn.execute("COMMIT")
        except BaseException:  # noqa: BLE001 - retried one by one below
            self._rollback(conn)
            # One job failed (or the commit did): run each alone so only the culprit fails.
            return [self._write_alone(job, conn) for job in jobs]
        return [(job[3], None, value) for job, value in zip(jobs, values, strict=True)]

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        self._open_error = NotInitializedError("the SQLite store is closed")
        if conn is not None:
            self._rollback(conn)
            conn.close()
