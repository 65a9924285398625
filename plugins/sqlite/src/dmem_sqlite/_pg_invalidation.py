"""The PostgreSQL invalidation channel: ``LISTEN``/``NOTIFY`` from triggers on the table.

The first channel opened on a table installs (once, under the same advisory lock as the
schema) statement-level triggers on ``<table>``: after every INSERT, UPDATE and DELETE they
call ``pg_notify`` with the keys the statement changed, per namespace, from its transition
table; after a TRUNCATE, with "every key". So writes from any process reach every channel,
those of clients that are not dmem too, and a write's notification is queued by its own
commit: it leaves the server before the write returns (a push mode, ``bound`` None).
Tables without a channel ever opened on them pay nothing; once installed, every write
pays the trigger (bench/bench_invalidation.py measures how much).

Payloads (on channel ``dmem_inv_<table>``) are JSON: ``["ns", ["k1", ...]]``, or ``["ns"]``
when the keys would not fit NOTIFY's 8000 bytes (any key of ``ns``), or ``""`` after a
TRUNCATE (any key of any namespace).

The channel listens on a connection of its own (not the pool's), and reads it coalesced
(:class:`dmem.ReadPause`: after a notification it leaves the socket unread for 1 ms, so a
burst of writes wakes the process once). The connection closing
(server killed or restarted, connection lost) or a keep-alive query not answered within
``timeout`` calls ``listener.channel_down()``; it reconnects with backoff, and calls
``channel_up()`` once it listens again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from dmem import (
    DmemError,
    FollowingChannel,
    InvalidationListener,
    ProviderUnavailableError,
    ReadPause,
)

__all__ = ["PostgresInvalidation", "channel_name", "install_sql"]

log = logging.getLogger("dmem.postgresql")

_KEEPALIVE = 1.0  # seconds between keep-alive queries on the listening connection
_PAYLOAD_LIMIT = 7900  # NOTIFY's payload limit is 8000 bytes; a little margin


def channel_name(table: str) -> str:
    # valid_table() allows 40 characters: "dmem_inv_" + table stays under 63.
    return f"dmem_inv_{table}"


# Trigger names carry the version of the function's body: a table with older triggers gets
# them replaced at the next channel's connect. (40-character table + 17 < 63 bytes.)
_TRIGGERS = "_dmem_n2_"
_OLD_TRIGGERS = ("_dmem_inv_",)
_OPS = ("insert", "update", "delete", "truncate")


def install_sql(table: str) -> list[str]:
    """The functions and triggers, as statements (run when the triggers are missing)."""
    channel = channel_name(table)
    # One statement, no loop: measured ~25 us less per write than a plpgsql FOR loop over
    # the groups. The payload is built first so that its real length (JSON escapes
    # included) decides whether it fits.
    notify = f"""
CREATE OR REPLACE FUNCTION {table}_dmem_notify() RETURNS trigger LANGUAGE plpgsql AS $dmem$
BEGIN
  PERFORM pg_notify('{channel}', CASE WHEN octet_length(p) <= {_PAYLOAD_LIMIT} THEN p
                                      ELSE json_build_array(ns)::text END)
  FROM (SELECT namespace AS ns, json_build_array(namespace, json_agg(key))::text AS p
        FROM changed GROUP BY namespace) AS groups;
  RETURN NULL;
END
$dmem$"""
    truncated = f"""
CREATE OR REPLACE FUNCTION {table}_dmem_truncated() RETURNS trigger LANGUAGE plpgsql AS $dmem$
BEGIN
  PERFORM pg_notify('{channel}', '');
  RETURN NULL;
END
$dmem$"""
    statements = [notify, truncated]
    for op, table_kind in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
        statements.append(
            f"CREATE TRIGGER {table}{_TRIGGERS}{op.lower()} AFTER {op} ON {table} "
            f"REFERENCING {table_kind} TABLE AS changed "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_dmem_notify()"
        )
    statements.append(
        f"CREATE TRIGGER {table}{_TRIGGERS}truncate AFTER TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_dmem_truncated()"
    )
    return statements


async def install(conn: asyncpg.Connection, table: str) -> None:
    """Create the triggers unless they exist (serialized with the schema's creation)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"dmem_sqlite:{table}")
        present = await conn.fetchval(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = ANY($2)",
            table,
            [f"{table}{_TRIGGERS}{op}" for op in _OPS],
        )
        if present == len(_OPS):
            return
        for prefix in (_TRIGGERS, *_OLD_TRIGGERS):
            for op in _OPS:
                await conn.execute(f"DROP TRIGGER IF EXISTS {table}{prefix}{op} ON {table}")
        for statement in install_sql(table):
            await conn.execute(statement)


def _closed(gone: asyncio.Event, _conn: object) -> None:
    gone.set()


class PostgresInvalidation(FollowingChannel):
    """An open channel (see the module's docstring); made by ``PostgresProvider``."""

    mode = "postgres-notify"

    def __init__(
        self,
        listener: InvalidationListener,
        connect: Callable[[], Any],
        table: str,
        namespace: str,
        timeout: float,
        error: Callable[[BaseException], BaseException],
    ) -> None:
        super().__init__(listener, log)
        self._connect = connect
        self._table = table
        self._channel = channel_name(table)
        self._namespace = namespace
        self._timeout = timeout
        self._error = error
        self._pause = ReadPause(None)

    def __repr__(self) -> str:
        return f"<PostgresInvalidation {self._table} {'up' if self._up else 'down'}>"

    # --- the steps of FollowingChannel --------------------------------------------------------
    async def _attach(self) -> tuple[asyncpg.Connection, asyncio.Event]:
        conn = await asyncio.wait_for(self._connect(), self._timeout)
        try:
            gone = asyncio.Event()
            conn.add_termination_listener(functools.partial(_closed, gone))
            # At every connect, not once: a restored or crashed database may have lost
            # them (a crash loses the last commits with synchronous_commit=off).
            await install(conn, self._table)
            await conn.add_listener(self._channel, self._notified)
            # asyncpg keeps the connection's transport as _transport (0.2x to 0.3x);
            # without it every notification is read as it comes.
            self._pause = ReadPause(getattr(conn, "_transport", None))
        except BaseException:
            conn.terminate()
            raise
        return conn, gone

    async def _follow(self, session: tuple[asyncpg.Connection, asyncio.Event]) -> None:
        await self._watch(*session)

    async def _detach(self, session: tuple[asyncpg.Connection, asyncio.Event]) -> None:
        self._pause.cancel()
        session[0].terminate()

    def _open_error(self, exc: Exception) -> BaseException:
        err = self._error(exc)
        if not isinstance(err, DmemError):  # never a raw exception to the caller
            err = ProviderUnavailableError(
                f"invalidation channel on table {self._table}: {type(exc).__name__}"
            )
        return err

    async def _watch(self, conn: asyncpg.Connection, gone: asyncio.Event) -> None:
        """Raise once the connection is gone or stops answering; return once closed."""
        while not self._closed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(gone.wait(), _KEEPALIVE)
            if self._closed:
                return
            if gone.is_set() or conn.is_closed():
                raise ConnectionResetError("the listening connection closed")
            await asyncio.wait_for(conn.execute("SELECT 1"), self._timeout)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._pause.after_message()
        if not self._up:
            return
        if not payload:  # TRUNCATE: any key of any namespace
            self._listener.invalidate(None)
            return
        try:
            message = json.loads(payload)
            namespace = message[0]
        except (ValueError, IndexError, TypeError):
            # Not one of ours (someone else NOTIFYing on the channel): assume the worst.
            self._listener.invalidate(None)
            return
        if namespace != self._namespace:
            return
        if len(message) < 2:
            self._listener.invalidate(None)
        else:
            self._listener.invalidate([str(k) for k in message[1]])
