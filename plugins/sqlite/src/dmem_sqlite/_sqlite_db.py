"""A SQLite database file as the stores of one process share it: one worker thread and
connection per file (and per connection setting), whatever the namespace or table.

Stores opened on one file (``dmem.open`` twice, or ``Store.with_namespace``) take a lease on
its :class:`Database` (``dmem.sharing``); the thread stops and the connection closes with
the last of them. Each job runs on the one connection, so writes of every namespace share
its group commit. The purge of expired rows rides along with writes (``Worker``'s
maintenance) for every table a store of the process uses. ``sqlite://`` (in memory) is
never shared by ``dmem.open``: each one is a private database, which only the stores made
from it with ``with_namespace`` share; nor is a store opened with ``share_connection=false``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Hashable
from pathlib import Path

from dmem import ProviderError
from dmem.sharing import Lease, SharedConnections

from ._common import PURGE_BATCH, now_ms
from ._config import SQLiteConfig
from ._sqlite_sql import SQLiteStatements
from ._worker import Worker

__all__ = ["Database", "open_database"]

log = logging.getLogger("dmem.sqlite")

_DATABASES: SharedConnections[Database] = SharedConnections("sqlite")


def _key(config: SQLiteConfig) -> Hashable | None:
    """What makes two stores' connections the same one; None: a connection of its own."""
    if config.path is None or not config.share_connection:
        return None
    # Relative to the working directory when the store opens, as sqlite3.connect takes it.
    return (os.path.abspath(config.path), config.busy_timeout, config.synchronous)


def open_database(config: SQLiteConfig) -> Lease[Database]:
    """A lease on the database of ``config`` (its thread starts here, no waiting)."""
    return _DATABASES.acquire(_key(config), lambda: Database(config), _close)


async def _close(database: Database) -> None:
    await database.worker.stop()


class Database:
    """One worker thread and connection, and the tables whose expired rows it purges."""

    def __init__(self, config: SQLiteConfig) -> None:
        self._config = config
        self.where = f"SQLite {config.display}"
        self._guard = threading.Lock()
        self._tables: dict[str, int] = {}  # table -> stores using it
        # What the worker thread reads: replaced whole, never changed in place.
        self._purged: tuple[tuple[str, SQLiteStatements], ...] = ()
        self.worker = Worker(self._connect, where=self.where, maintenance=self._purge)
        self.worker.start()

    def add_table(self, table: str, sql: SQLiteStatements) -> None:
        """A store uses ``table`` (``sql``: its statements): purge its expired rows too."""
        with self._guard:
            self._tables[table] = self._tables.get(table, 0) + 1
            if all(known != table for known, _ in self._purged):
                self._purged = (*self._purged, (table, sql))

    def remove_table(self, table: str) -> None:
        with self._guard:
            left = self._tables.get(table, 0) - 1
            if left > 0:
                self._tables[table] = left
                return
            self._tables.pop(table, None)
            self._purged = tuple(pair for pair in self._purged if pair[0] != table)

    # --- worker thread -------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        config = self._config
        if config.path is None:
            target = ":memory:"
        else:
            _create_private(config.path)
            target = str(config.path)
        conn = sqlite3.connect(
            target,
            timeout=config.busy_timeout,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,
            cached_statements=256,
        )
        try:
            if config.path is not None:
                self._wal(conn)
            # Fixed literals only: never user text in a PRAGMA.
            conn.execute(
                "PRAGMA synchronous=FULL"
                if config.synchronous == "full"
                else "PRAGMA synchronous=NORMAL"
            )
        except BaseException:
            conn.close()
            raise
        return conn

    def _wal(self, conn: sqlite3.Connection) -> None:
        # Switching a new file to WAL needs a moment of exclusive access; when another
        # process is doing the same, retry within the busy timeout instead of failing.
        deadline = time.monotonic() + self._config.busy_timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        if str(mode).lower() != "wal":
            raise ProviderError(f"{self.where}: could not switch to WAL (journal_mode={mode})")

    def _purge(self, conn: sqlite3.Connection) -> None:
        """Remove up to PURGE_BATCH expired rows (any namespace) of each table, and their tags."""
        for table, sql in self._purged:
            now = now_ms()
            rows = conn.execute(
                sql.purge_select.sql, sql.purge_select.args(now=now, limit=PURGE_BATCH)
            ).fetchall()
            if rows:
                conn.executemany(sql.tags_delete.sql, rows)
                conn.executemany(sql.purge_kv.sql, [(ns, key, now) for ns, key in rows])
                log.debug("%s (table %s): purged %d expired rows", self.where, table, len(rows))


def _create_private(path: Path) -> None:
    """Create ``path``'s missing directories (0700) and, if it is new, the file (0600).

    Agent memory holds secrets, so what dmem creates is readable by its owner only. The
    modes are set explicitly rather than left to the umask, which only takes bits away
    (022 leaves 0755/0644; 277 would take the owner's write bit too). What exists keeps
    its mode: the user made it and chose. SQLite creates the ``-wal``, ``-shm`` and
    ``-journal`` files with the database file's mode (it ``fchmod``s them to it), so
    creating the file here, before SQLite would with 0644, keeps them private as well.
    Runs once, when the store opens.
    """
    _make_private_dirs(path.parent)
    try:
        # O_EXCL: never open (or chmod) a file that exists, nor follow a symlink there.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        if sys.platform != "win32":  # Windows has no owner/group/other bits to set
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each 0700 (existing ones are left alone).

    0700 is what the XDG Base Directory spec asks of a data directory an application
    creates. A parent made meanwhile by someone else (``FileExistsError``) is theirs.
    """
    missing: list[Path] = []
    while not os.path.lexists(directory) and directory.parent != directory:
        missing.append(directory)
        directory = directory.parent
    for made in reversed(missing):
        try:
            os.mkdir(made, 0o700)
        except FileExistsError:
            continue
        os.chmod(made, 0o700)  # mkdir's mode went through the umask
