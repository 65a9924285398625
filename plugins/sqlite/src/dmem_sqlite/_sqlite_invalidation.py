"""The SQLite invalidation channel (mode ``"sqlite-poll"``): a change log and a poller.

Writes to a SQLite file from other processes leave no message to push, so readers poll,
and make each poll cheap:

* **The change log** ``<table>_changes(seq, namespace, key)``, filled by triggers on the
  key-value table (insert, update, delete), so every write is logged in its own
  transaction: dmem's, an older dmem-sqlite's, and any other client's. Every
  :data:`PRUNE_EVERY` rows, the rows more than :data:`KEEP` behind go, so the log stays
  bounded.
  The triggers are created, once per file, by the first store that opens a channel.
* **The poller**: a thread with a read connection of its own. Every ``interval / 2`` it reads
  ``PRAGMA data_version`` (no I/O beyond the WAL index; it changes only when another
  connection committed), and only then reads the log past the last ``seq`` it saw,
  calling ``listener.invalidate(keys)`` with this namespace's keys on the store's loop.
  A log that was pruned past that ``seq`` (the poller fell more than KEEP writes behind)
  gives ``invalidate(None)``. A poll that fails gives ``channel_down()``, and the next one
  that works ``channel_up()``.

So a write that has returned reaches every cache on the file within ``interval`` (the
channel's ``bound``, default 50 ms): polling twice per interval leaves half of it for the
poll itself (well under a millisecond when idle) and the loop's scheduling of the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from dmem._invalidation import InvalidationListener

from ._config import valid_table
from ._worker import map_error

__all__ = ["KEEP", "PRUNE_EVERY", "SQLitePollChannel", "install_change_log"]

log = logging.getLogger("dmem.sqlite")

KEEP = 8192
"""Rows the change log keeps (at least): a poller that falls further behind empties its
cache."""
PRUNE_EVERY = 1024


def _log_ddl(table: str) -> list[str]:
    t = valid_table(table)  # an identifier, checked again: it is interpolated into DDL
    log_table = f"{t}_changes"
    # seq is the rowid: max + 1 on every insert, so increasing as long as the newest row
    # stays (pruning only takes old ones). No AUTOINCREMENT: its sqlite_sequence update
    # would be one more b-tree write on every write of the store.
    statements = [
        f"CREATE TABLE IF NOT EXISTS {log_table} ("
        "seq INTEGER PRIMARY KEY, namespace TEXT NOT NULL, key TEXT NOT NULL)"
    ]
    for event, row in (("INSERT", "new"), ("UPDATE", "new"), ("DELETE", "old")):
        statements.append(
            f"CREATE TRIGGER IF NOT EXISTS {log_table}_{event.lower()} AFTER {event} ON {t} "
            f"BEGIN INSERT INTO {log_table} (namespace, key) VALUES ({row}.namespace, "
            f"{row}.key); END"
        )
    # Pruned in steps of PRUNE_EVERY rows, not on every write: one range delete per step.
    statements.append(
        f"CREATE TRIGGER IF NOT EXISTS {log_table}_prune AFTER INSERT ON {log_table} "
        f"WHEN new.seq % {PRUNE_EVERY} = 0 "
        f"BEGIN DELETE FROM {log_table} WHERE seq <= new.seq - {KEEP}; END"
    )
    return statements


def install_change_log(conn: sqlite3.Connection, table: str) -> None:
    """Create the change log and its triggers (idempotent; run as a write job)."""
    for statement in _log_ddl(table):
        conn.execute(statement)


class SQLitePollChannel:
    """The open channel: a daemon thread polling the file on a connection of its own."""

    mode = "sqlite-poll"

    def __init__(
        self,
        path: Path,
        table: str,
        namespace: str,
        listener: InvalidationListener,
        *,
        interval: float,
        busy_timeout: float,
        where: str,
    ) -> None:
        self._path = path
        self._log = f"{valid_table(table)}_changes"
        self._namespace = namespace
        self._listener = listener
        self._interval = interval
        self._busy_timeout = busy_timeout
        self._where = where
        self._loop = asyncio.get_running_loop()
        self._stop = threading.Event()
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None
        self._seq = 0
        self._up = False
        self._thread: threading.Thread | None = None

    @property
    def bound(self) -> float:
        return self._interval

    @property
    def up(self) -> bool:
        return self._up

    async def start(self) -> None:
        """Connect and take the baseline (ProviderUnavailableError if the file cannot be
        read), then start polling: every write committed after this returns is seen."""
        try:
            await asyncio.to_thread(self._baseline)
        except Exception as exc:
            self._disconnect()
            raise map_error(exc, self._where) from exc
        self._up = True
        self._thread = threading.Thread(
            target=self._run, name=f"dmem-sqlite-invalidation {self._path.name}", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join)
        self._up = False

    # --- the poller thread -----------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            conn = self._conn = sqlite3.connect(
                str(self._path),
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        return conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _baseline(self) -> None:
        conn = self._connect()
        self._version = _data_version(conn)
        row = conn.execute(f"SELECT max(seq) FROM {self._log}").fetchone()
        self._seq = int(row[0] or 0)

    def _run(self) -> None:
        while not self._stop.wait(self._interval / 2):
            try:
                keys = self._poll()
            except Exception as exc:  # noqa: BLE001 - any failure: messages may be lost
                self._disconnect()
                if self._up:
                    log.warning(
                        "%s: invalidation poll failed (%s)", self._where, type(exc).__name__
                    )
                    self._up = False
                    self._post(self._listener.channel_down)
                continue
            if not self._up:
                # channel_up empties the cache again, which covers what the outage hid.
                self._up = True
                self._post(self._listener.channel_up)
            elif keys is None or keys:
                self._post(functools.partial(self._listener.invalidate, keys))
        self._disconnect()

    def _poll(self) -> list[str] | None:
        """This namespace's changed keys since the last poll, ``[]`` for none; None: any
        may have changed."""
        conn = self._connect()
        if not self._up:
            self._baseline()  # a fresh start: channel_up empties the cache anyway
            return []
        version = _data_version(conn)
        if version == self._version:
            return []
        self._version = version
        conn.execute("BEGIN")  # one snapshot for the bounds and the rows
        try:
            low, high = conn.execute(f"SELECT min(seq), max(seq) FROM {self._log}").fetchone()
            if high is None and self._seq == 0:
                return []  # nothing logged yet (a write to another table of the file)
            if high is None or high < self._seq:
                # Emptied or recreated by hand: the seq we saw means nothing any more.
                self._seq = 0 if high is None else high
                return None
            if high == self._seq:
                return []
            if low > self._seq + 1:
                self._seq = high
                return None  # pruned past what we saw: something unknown changed
            rows = conn.execute(
                f"SELECT key FROM {self._log} WHERE seq > ? AND namespace = ?",
                (self._seq, self._namespace),
            ).fetchall()
            self._seq = high
        finally:
            conn.execute("COMMIT")
        if not rows:
            return []
        return list(dict.fromkeys(row[0] for row in rows))

    def _post(self, call: Callable[[], None]) -> None:
        try:
            self._loop.call_soon_threadsafe(call)
        except RuntimeError:  # the store's loop is closed: nobody is listening any more
            self._stop.set()


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])
