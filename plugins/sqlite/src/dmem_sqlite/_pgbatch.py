"""Automatic pipelining of PostgreSQL reads, and the error mapping the provider shares.

``get``, ``get_entry`` and ``exists`` of the stores on one pool and table share a
:class:`ReadBatcher` (``dmem.coalescing.Coalescer``): while fewer than ``slots`` of their
calls or batches run, a call runs its own single-row statement at once; calls that arrive
while every slot is busy wait, and then go out together as ONE statement
(``PostgresStatements.read_batch``: ``unnest`` of the asked-for namespaces, keys and
whether the value is wanted, each row found through the primary key), each caller getting
its own outcome. Nothing waits on a timer: a batch forms only from calls that would
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

import asyncpg
from dmem import DmemError, ProviderError, ProviderUnavailableError
from dmem.coalescing import Coalescer

from ._common import now_ms
from ._pgpool import ConnectionPool

__all__ = ["UNAVAILABLE", "ReadBatcher", "call_failure", "lost", "map_error"]

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


class ReadBatcher:
    """The coalesced reads of the stores on one pool and one table (see the module
    docstring); the provider calls :meth:`take`/:meth:`give` around a call of its own and
    :meth:`read` when :meth:`take` says every slot is busy."""

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
        # Each item: the read and the monotonic time its caller's timeout runs out.
        self.coalescer: Coalescer[tuple[Read, float], Found] = Coalescer(self._run, slots=slots)
        self.take = self.coalescer.take
        self.give = self.coalescer.give

    async def read(self, namespace: str, key: str, want: bool) -> Found:
        """The outcome of one read, sent with the next batch."""
        deadline = time.monotonic() + self._timeout
        return await self.coalescer.submit(((namespace, key, want), deadline))

    async def _run(self, items: list[tuple[Read, float]]) -> list[Found | BaseException]:
        """One statement for the batch's reads; one outcome per item, in order."""
        asked = list(dict.fromkeys(read for read, _ in items))  # a key asked twice: once
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
        now = now_ms()
        try:
            rows = await conn.fetch(
                self._sql,
                [read[0] for read in asked],
                [read[1] for read in asked],
                [read[2] for read in asked],
                now,
            )
            healthy = True
        except Exception as exc:  # noqa: BLE001 - each caller raises its own mapped error
            outcomes: list[Found | BaseException] = []
            for _ in items:
                error, healthy = call_failure(pool, conn, exc, where, self._command_timeout)
                outcomes.append(_own(error) if error is exc else error)
            return outcomes
        finally:
            pool.release(conn, broken=not healthy)
        found: dict[Read, Found] = {
            (ns, key, want): (None if value is None else bytes(value), expires_at, now)
            for ns, key, want, value, expires_at in rows
        }
        return [found.get(read) for read, _ in items]

    async def aclose(self) -> None:
        await self.coalescer.aclose()
