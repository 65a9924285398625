"""Automatic pipelining of PostgreSQL reads and plain sets, and the error mapping the
provider shares.

``get``, ``get_entry``, ``exists`` and ``ttl`` of the stores on one pool and table share a
:class:`ReadBatcher`, their plain ``set`` calls a :class:`WriteBatcher` (each a
``dmem.coalescing.Coalescer``): while fewer than ``slots`` of their calls or batches run, a
call runs its own single-row statement at once; calls that arrive while every slot is busy
wait, and then go out together as ONE statement (``PostgresStatements.read_batch``: an
``unnest`` of the asked-for namespaces, keys and whether the value is wanted, each row found
through the primary key; ``write_batch``: an upsert of the rows' ``unnest``), each caller
getting its own outcome. Nothing waits on a timer: a batch forms only from calls that would
otherwise have queued for a connection. On one loop with hundreds of tasks this trades
hundreds of asyncpg round trips (each ~50-70 µs of client-side Python) for one.

A batch fails per caller: each caller raises its own instance of the error it would have
got from its single-row call (``ProviderUnavailableError`` when the server cannot be
reached or went away mid-statement, ``ProviderError`` for a statement error), each mapped
once for it from the driver's exception. A batch waits for a connection no longer than the
earliest of its callers' ``timeout`` allows, so a waiting call fails within ``timeout`` as
a call queued in the pool does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Generic, TypeVar

import asyncpg
from dmem import DmemError, ProviderError, ProviderUnavailableError
from dmem.coalescing import Coalescer

from ._common import now_ms
from ._pgpool import ConnectionPool

__all__ = ["UNAVAILABLE", "ReadBatcher", "WriteBatcher", "call_failure", "lost", "map_error"]

# Errors that mean "the server cannot be reached / the connection is gone".
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, cannot connect now
    asyncpg.exceptions.InterfaceError,  # connection closed / pool closing
)


def lost(where: str, exc: BaseException) -> ProviderUnavailableError:
    """A new ``ProviderUnavailableError`` for ``exc`` (the connection is gone)."""
    # asyncpg is given keyword arguments, never the URL, so its texts hold no password;
    # the URL is shown redacted.
    mapped = ProviderUnavailableError(f"{where}: {type(exc).__name__}: {exc}")
    mapped.__cause__ = exc
    return mapped


def map_error(where: str, exc: BaseException) -> BaseException:
    """``exc`` as a dmem error (a new instance; a dmem error is returned as it is)."""
    if isinstance(exc, DmemError):
        return exc
    if isinstance(exc, UNAVAILABLE):
        return lost(where, exc)
    if isinstance(exc, asyncpg.PostgresError):
        mapped = ProviderError(f"{where}: {type(exc).__name__}: {exc}")
        mapped.__cause__ = exc
        return mapped
    return exc


def call_failure(
    pool: ConnectionPool,
    conn: asyncpg.Connection,
    exc: Exception,
    where: str,
    command_timeout: float,
) -> tuple[BaseException, bool]:
    """What a statement that raised ``exc`` on ``conn`` raises (a new instance each time),
    and whether ``conn`` is still usable."""
    if pool.overdue(conn):
        timed_out = ProviderUnavailableError(
            f"{where}: no answer within command_timeout={command_timeout:g} s; "
            "the connection was closed"
        )
        timed_out.__cause__ = exc
        return timed_out, False
    if isinstance(exc, UNAVAILABLE) or conn.is_closed():
        # Whatever asyncpg raised, the connection went away under the call. With the
        # server killed mid-workload, an idle connection handed out just as it went
        # away failed its next call with InternalClientError ("cannot switch to
        # state 12; another operation (2) is in progress"): a ProviderError before.
        return lost(where, exc), False
    # A statement error leaves the connection usable; asyncpg's own protocol errors
    # leave its state unknown.
    healthy = not isinstance(exc, asyncpg.exceptions.InternalClientError)
    return map_error(where, exc), healthy


def _own(exc: BaseException) -> BaseException:
    """A new instance of the dmem error ``exc`` for one caller (same type, text, cause)."""
    try:
        fresh = type(exc)(*exc.args)
    except Exception:  # noqa: BLE001 - an error type with another constructor
        fresh = ProviderError(str(exc))
    fresh.__cause__ = exc.__cause__ if exc.__cause__ is not None else exc
    return fresh


# One read a caller asks for: (namespace, key, whether it wants the value).
Read = tuple[str, str, bool]
# Its outcome: None for a key that is not live, else (value or None when not wanted,
# expires_at, the batch's now_ms()).
Found = tuple[bytes | None, int | None, int] | None
# One plain set: (namespace, key, value, expires_at).
Write = tuple[str, str, bytes, int | None]

ItemT = TypeVar("ItemT")
OutcomeT = TypeVar("OutcomeT")


class _Batcher(Generic[ItemT, OutcomeT]):
    """A coalescer of one kind of call on the stores of one pool and table; the provider
    calls :attr:`take`/:attr:`give` around a call of its own and :meth:`_submit` when
    :attr:`take` says every slot is busy."""

    def __init__(
        self,
        pool: ConnectionPool,
        sql: str,
        *,
        slots: int,
        where: str,
        timeout: float,
        command_timeout: float,
    ) -> None:
        self._pool = pool
        self._sql = sql
        self._where = where
        self._timeout = timeout
        self._command_timeout = command_timeout
        # Each item: the call and the monotonic time its caller's timeout runs out.
        self.coalescer: Coalescer[tuple[ItemT, float], OutcomeT] = Coalescer(self._run, slots=slots)
        self.take = self.coalescer.take
        self.give = self.coalescer.give

    async def _submit(self, item: ItemT) -> OutcomeT:
        return await self.coalescer.submit((item, time.monotonic() + self._timeout))

    async def _run(self, items: list[tuple[ItemT, float]]) -> list[OutcomeT | BaseException]:
        """One statement for the batch; one outcome per item, in order: each caller's own
        error instance when it fails."""
        pool, where = self._pool, self._where
        # No longer than the earliest caller's timeout allows (as a call queued in the pool
        # waits at most timeout from its start).
        wait = max(0.001, min(deadline for _, deadline in items) - time.monotonic())
        try:
            conn = pool.acquire_idle() or await pool.acquire_new(wait)
        except Exception as exc:  # noqa: BLE001 - each caller raises its own mapped error
            mapped = [map_error(where, exc) for _ in items]
            return [_own(error) if error is exc else error for error in mapped]
        healthy = False
        try:
            outcomes = await self._send(conn, [item for item, _ in items])
            healthy = True
            return outcomes
        except Exception as exc:  # noqa: BLE001 - each caller raises its own mapped error
            failed: list[OutcomeT | BaseException] = []
            for _ in items:
                error, healthy = call_failure(pool, conn, exc, where, self._command_timeout)
                failed.append(_own(error) if error is exc else error)
            return failed
        finally:
            pool.release(conn, broken=not healthy)

    async def _send(
        self, conn: asyncpg.Connection, items: list[ItemT]
    ) -> list[OutcomeT | BaseException]:
        raise NotImplementedError

    async def aclose(self) -> None:
        await self.coalescer.aclose()


class ReadBatcher(_Batcher[Read, Found]):
    """get, get_entry, exists and ttl of many callers: one ``read_batch`` statement."""

    async def read(self, namespace: str, key: str, want: bool) -> Found:
        """The outcome of one read, sent with the next batch."""
        return await self._submit((namespace, key, want))

    async def _send(
        self, conn: asyncpg.Connection, items: list[Read]
    ) -> list[Found | BaseException]:
        asked = list(dict.fromkeys(items))  # a key asked twice: once
        now = now_ms()
        rows = await conn.fetch(
            self._sql,
            [read[0] for read in asked],
            [read[1] for read in asked],
            [read[2] for read in asked],
            now,
        )
        found: dict[Read, Found] = {
            (ns, key, want): (None if value is None else bytes(value), expires_at, now)
            for ns, key, want, value, expires_at in rows
        }
        return [found.get(read) for read in items]


class WriteBatcher(_Batcher[Write, bool]):
    """Plain sets (no ``if_not_exists``, no tags) of many callers: one ``write_batch``
    statement, every caller's row written (so each gets True), all or none."""

    async def write(self, namespace: str, key: str, value: bytes, expires_at: int | None) -> bool:
        """Write one row with the next batch."""
        return await self._submit((namespace, key, value, expires_at))

    async def _send(
        self, conn: asyncpg.Connection, items: list[Write]
    ) -> list[bool | BaseException]:
        # One row per key: the last caller's, as if the calls had run one after another in
        # the order they arrived (one statement may not upsert a row twice); in key order,
        # so concurrent batches (and set_many, sorted too) lock rows in one order.
        rows = sorted({(ns, key): (value, exp) for ns, key, value, exp in items}.items())
        await conn.execute(
            self._sql,
            [ns for (ns, _), _ in rows],
            [key for (_, key), _ in rows],
            [value for _, (value, _) in rows],
            [exp for _, (_, exp) in rows],
        )
        return [True] * len(items)
