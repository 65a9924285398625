"""``SQLiteProvider``: the contract on a SQLite file (or a private in-memory database).

Every call is one job on the provider's :class:`~dmem_sqlite._worker.Worker`
thread; the functions below (``_get``, ``_set`` ...) run on that thread with
its connection, and compute "now" there, when the statement actually runs.

Durability: the database is in WAL mode. With ``synchronous=normal`` (the
default) a write that returned survives any crash or SIGKILL of the process,
and the file is never corrupted, but the last commits before a power loss or
OS crash may be rolled back (the WAL is fsynced at checkpoints, not on every
commit). ``synchronous=full`` fsyncs on every commit, so a returned write also
survives power loss, at the cost of one fsync per transaction (group commit
shares it among concurrent writers).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from functools import lru_cache
from itertools import chain
from typing import Any

from dmem import (
    HealthStatus,
    KeyNotFoundError,
    NotSupportedError,
    Pattern,
    ProviderError,
    ProviderUnavailableError,
    StoreNotFoundError,
)
from dmem._invalidation import InvalidationChannel, InvalidationListener
from dmem.provider import (
    Entry,
    add_to_counter,
    encode_counter,
    parse_counter,
    refuse_large_values,
)
from dmem.sharing import Lease

from ._common import (
    SCHEMA_VERSION,
    dump_tags,
    has_tag,
    is_prefix_glob,
    load_tags,
    now_ms,
    upper_bound,
)
from ._config import SQLiteConfig
from ._sqlite_db import Database, open_database
from ._sqlite_invalidation import SQLitePollChannel, install_change_log
from ._sqlite_sql import SQLiteStatements, chunk_sizes
from ._worker import Worker, map_error

__all__ = ["SQLiteProvider"]

_MIN_VERSION = (3, 24, 0)  # INSERT ... ON CONFLICT DO UPDATE (upsert)
_PAGE_ROWS = 512  # rows per scan page
_PAGE_BYTES = 256 * 1024  # and about this many value bytes at most (one row if bigger)


@lru_cache(maxsize=16)
def _statements(table: str) -> SQLiteStatements:
    return SQLiteStatements(table)


class SQLiteProvider:
    """A key-value provider on SQLite; the stores of a process on one file share its worker
    thread and connection (``_sqlite_db``)."""

    name = "sqlite"
    atomic_batches = True  # every call is one transaction on the worker's connection
    invalidation_interval = 0.05  # the invalidation channel's bound in seconds (polls twice in it)

    def __init__(self, config: SQLiteConfig) -> None:
        self.namespace = config.namespace
        self.max_value_bytes = config.max_value_bytes
        self._config = config
        self._sql = _statements(config.table)
        self._lease: Lease[Database] | None = None
        self._worker: Worker | None = None
        self._where = f"SQLite {config.display} (table {config.table})"

    def __repr__(self) -> str:
        return f"<SQLiteProvider {self._config.display} namespace={self.namespace!r}>"

    # --- lifecycle -------------------------------------------------------------------------
    async def initialize(self) -> None:
        if self._lease is not None:  # made by with_namespace: open already
            return
        if sqlite3.sqlite_version_info < _MIN_VERSION:
            raise ProviderError(
                f"SQLite {sqlite3.sqlite_version} is too old: dmem-sqlite needs >= 3.24 (upsert)"
            )
        path = self._config.path
        if not self._config.create and path is not None and not path.exists():
            raise StoreNotFoundError(f"{self._config.display} does not exist (create=False)")
        lease = open_database(self._config)
        try:
            await lease.value.worker.call(self._setup)
        except BaseException:
            await lease.release()
            raise
        self._adopt(lease)

    def _adopt(self, lease: Lease[Database]) -> None:
        lease.value.add_table(self._config.table, self._sql)
        self._lease, self._worker = lease, lease.value.worker

    def with_namespace(self, namespace: str) -> SQLiteProvider:
        """A provider on ``namespace`` (same file and table) sharing this one's worker thread
        and connection; open already (no I/O), closed on its own."""
        if self._lease is None:
            from dmem import NotInitializedError

            raise NotInitializedError("the SQLite provider is not initialized")
        derived = SQLiteProvider(dataclasses.replace(self._config, namespace=namespace))
        derived._adopt(self._lease.share())
        return derived

    async def aclose(self) -> None:
        lease, self._lease, self._worker = self._lease, None, None
        if lease is not None:
            lease.value.remove_table(self._config.table)
            await lease.release()

    async def open_invalidation(self, listener: InvalidationListener) -> InvalidationChannel:
        """A ``sqlite-poll`` channel (``_sqlite_invalidation``): every write to this table
        of the file, by any process, reaches ``listener`` within ``invalidation_interval``.
        NotSupportedError on a private in-memory database (no other connection can write
        it, and a second connection cannot see it)."""
        path = self._config.path
        if path is None:
            raise NotSupportedError("sqlite:// (in memory) has no invalidation channel")
        try:
            await self._w().call(install_change_log, self._config.table, write=True)
        except ProviderUnavailableError:
            raise
        except ProviderError as exc:  # a file this process may not write (read-only)
            raise NotSupportedError(
                f"{self._where}: no invalidation channel, its change log cannot be created ({exc})"
            ) from exc
        channel = SQLitePollChannel(
            path.absolute(),  # the poller's connection opens it, whatever the cwd is then
            self._config.table,
            self.namespace,
            listener,
            interval=self.invalidation_interval,
            # A poll that waits on a lock longer than the bound must fail (channel down:
            # reads go to the file) instead of leaving the cache stale meanwhile.
            busy_timeout=min(self._config.busy_timeout, self.invalidation_interval),
            where=self._where,
        )
        await channel.start()
        return channel

    def _w(self) -> Worker:
        worker = self._worker
        if worker is None:
            from dmem import NotInitializedError

            raise NotInitializedError("the SQLite provider is not initialized")
        return worker

    # --- worker thread: schema ----------------------------------------------------------
    def _setup(self, conn: sqlite3.Connection) -> None:
        sql = self._sql
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in sql.ddl:
                conn.execute(statement)
            conn.execute(sql.meta_init.sql, ("schema_version", str(SCHEMA_VERSION)))
            row = conn.execute(sql.meta_get.sql, ("schema_version",)).fetchone()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        version = int(row[0])
        if version > SCHEMA_VERSION:
            raise ProviderError(
                f"{self._where}: schema version {version} was written by a newer dmem-sqlite "
                f"(this one knows {SCHEMA_VERSION}); upgrade dmem-sqlite"
            )

    def _tags_in_use(self, conn: sqlite3.Connection) -> bool:
        sql = self._sql.tags_any
        return conn.execute(sql.sql, sql.args(ns=self.namespace)).fetchone() is not None

    def _retag(
        self, conn: sqlite3.Connection, keys: Sequence[str], tags: Mapping[str, str]
    ) -> None:
        """Replace the tags of freshly written ``keys`` by ``tags``.

        Callers skip it when there are no new tags and the namespace holds no tag rows at
        all (``_tags_in_use``): nothing to drop, one statement less on the common path.
        """
        ns = self.namespace
        conn.executemany(self._sql.tags_delete.sql, [(ns, key) for key in keys])
        if tags:
            pairs = list(tags.items())
            conn.executemany(
                self._sql.tags_insert.sql,
                [(ns, key, name, value) for key in keys for name, value in pairs],
            )

    # --- worker thread: operations ---------------------------------------------------------
    def _get(self, conn: sqlite3.Connection, key: str) -> tuple[bytes, int | None] | None:
        now = now_ms()
        row = conn.execute(self._sql.get.sql, (self.namespace, key, now)).fetchone()
        if row is None:
            return None
        expires_at = row[1]
        return row[0], None if expires_at is None else max(0, expires_at - now)

    def _exists(self, conn: sqlite3.Connection, key: str) -> tuple[bool, int | None]:
        now = now_ms()
        row = conn.execute(self._sql.exists.sql, (self.namespace, key, now)).fetchone()
        if row is None:
            return False, None
        return True, None if row[0] is None else max(0, row[0] - now)

    def _get_many(self, conn: sqlite3.Connection, keys: Sequence[str]) -> dict[str, bytes]:
        now = now_ms()
        sql, ns = self._sql.get.sql, self.namespace
        found: dict[str, bytes] = {}
        for key in keys:
            row = conn.execute(sql, (ns, key, now)).fetchone()
            if row is not None:
                found[key] = row[0]
        return found

    def _set(
        self,
        conn: sqlite3.Connection,
        key: str,
        value: bytes,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        now = now_ms()
        exp = None if ttl_ms is None else now + ttl_ms
        tag_json = dump_tags(tags)
        if if_not_exists:
            cursor = conn.execute(
                self._sql.insert_nx.sql, (self.namespace, key, value, exp, tag_json, now)
            )
            if cursor.rowcount == 0:
                return False
        else:
            conn.execute(self._sql.upsert.sql, (self.namespace, key, value, exp, tag_json))
        if tags or self._tags_in_use(conn):
            self._retag(conn, (key,), tags)
        return True

    def _set_many(
        self,
        conn: sqlite3.Connection,
        items: Sequence[tuple[str, bytes]],
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        now = now_ms()
        exp = None if ttl_ms is None else now + ttl_ms
        tag_json = dump_tags(tags)
        ns = self.namespace
        written: Sequence[str]
        if if_not_exists:
            sql = self._sql.insert_nx.sql
            written = [
                key
                for key, value in items
                if conn.execute(sql, (ns, key, value, exp, tag_json, now)).rowcount
            ]
        else:
            start = 0
            for size in chunk_sizes(len(items)):
                params: list[object] = list(chain.from_iterable(items[start : start + size]))
                params += (ns, exp, tag_json)
                conn.execute(self._sql.upsert_rows(size).sql, params)
                start += size
            written = [key for key, _ in items]
        if written and (tags or self._tags_in_use(conn)):
            self._retag(conn, written, tags)
        return len(written)

    def _delete_many(self, conn: sqlite3.Connection, keys: Sequence[str]) -> int:
        now = now_ms()
        sql, ns = self._sql.delete.sql, self.namespace
        removed = [key for key in keys if conn.execute(sql, (ns, key, now)).rowcount]
        if removed and self._tags_in_use(conn):
            conn.executemany(self._sql.tags_delete.sql, [(ns, key) for key in removed])
        return len(removed)

    def _expire(self, conn: sqlite3.Connection, key: str, ttl_ms: int | None) -> bool:
        now = now_ms()
        if ttl_ms is None:
            cursor = conn.execute(self._sql.persist.sql, (self.namespace, key, now))
        else:
            cursor = conn.execute(self._sql.expire.sql, (now + ttl_ms, self.namespace, key, now))
        return cursor.rowcount > 0

    def _clear(self, conn: sqlite3.Connection) -> int:
        sql, ns = self._sql, self.namespace
        live = int(conn.execute(sql.count_live.sql, (ns, now_ms())).fetchone()[0])
        conn.execute(sql.clear_tags.sql, (ns,))
        conn.execute(sql.clear_kv.sql, (ns,))
        return live

    def _range_args(self, pattern: Pattern, **extra: Any) -> tuple[bool, dict[str, Any]]:
        prefix = pattern.literal_prefix
        hi = upper_bound(prefix)
        values: dict[str, Any] = {"ns": self.namespace, "lo": prefix, "now": now_ms(), **extra}
        if hi is not None:
            values["hi"] = hi
        return hi is not None, values

    def _keys(self, conn: sqlite3.Connection, pattern: Pattern) -> list[str]:
        if pattern.is_exact:
            live, _ = self._exists(conn, pattern.literal_prefix)
            return [pattern.literal_prefix] if live else []
        upper, values = self._range_args(pattern)
        stmt = self._sql.keys[upper]
        cursor = conn.execute(stmt.sql, stmt.args(**values))
        if is_prefix_glob(pattern):
            return [row[0] for row in cursor]
        matches = pattern.matches
        return [row[0] for row in cursor if matches(row[0])]

    def _count(self, conn: sqlite3.Connection, pattern: Pattern) -> int:
        if pattern.is_exact:
            return 1 if self._exists(conn, pattern.literal_prefix)[0] else 0
        upper, values = self._range_args(pattern)
        if is_prefix_glob(pattern):
            stmt = self._sql.count[upper]
            return int(conn.execute(stmt.sql, stmt.args(**values)).fetchone()[0])
        stmt = self._sql.keys[upper]
        matches = pattern.matches
        return sum(1 for row in conn.execute(stmt.sql, stmt.args(**values)) if matches(row[0]))

    def _scan_page(
        self, conn: sqlite3.Connection, pattern: Pattern, after: str | None
    ) -> tuple[list[tuple[str, bytes]], str | None]:
        """One page of matching rows after key ``after``; and the key to continue after
        (None when the range is exhausted). Keyset pagination: no OFFSET, no open cursor
        between pages, constant memory."""
        upper, values = self._range_args(pattern, limit=_PAGE_ROWS)
        if after is not None:
            values["lo"] = after
        stmt = self._sql.scan_page[(after is None, upper)]
        matches, everything = pattern.matches, is_prefix_glob(pattern)
        out: list[tuple[str, bytes]] = []
        size = seen = 0
        last: str | None = None
        cursor = conn.execute(stmt.sql, stmt.args(**values))
        try:
            for key, value in cursor:
                seen += 1
                last = key
                if everything or matches(key):
                    out.append((key, value))
                    size += len(value)
                    if size >= _PAGE_BYTES:
                        return out, last
        finally:
            cursor.close()
        return out, (last if seen == _PAGE_ROWS else None)

    def _find_by_tag(self, conn: sqlite3.Connection, name: str, value: str) -> list[str]:
        rows = conn.execute(self._sql.find_by_tag.sql, (self.namespace, name, value, now_ms()))
        return [key for key, tags in rows if has_tag(tags, name, value)]

    def _get_tags(self, conn: sqlite3.Connection, key: str) -> dict[str, str]:
        row = conn.execute(self._sql.get_tags.sql, (self.namespace, key, now_ms())).fetchone()
        if row is None:
            raise KeyNotFoundError(f"key {key!r} is not live")
        return load_tags(row[0])

    # --- the async API ---------------------------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        entry = await self._w().call(self._get, key)
        return None if entry is None else entry[0]

    async def get_entry(self, key: str) -> Entry | None:
        return await self._w().call(self._get, key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return await self._w().call(self._get_many, keys)

    async def exists(self, key: str) -> bool:
        return (await self._w().call(self._exists, key))[0]

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        limit = self.max_value_bytes
        if limit is not None and len(value) > limit:
            refuse_large_values((value,), limit)
        return await self._w().call(self._set, key, value, ttl_ms, if_not_exists, tags, write=True)

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        if self.max_value_bytes is not None:
            refuse_large_values([value for _, value in items], self.max_value_bytes)
        return await self._w().call(self._set_many, items, ttl_ms, if_not_exists, tags, write=True)

    async def delete(self, key: str) -> bool:
        return await self._w().call(self._delete_many, (key,), write=True) > 0

    async def delete_many(self, keys: Sequence[str]) -> int:
        return await self._w().call(self._delete_many, keys, write=True)

    async def scan(self, pattern: Pattern) -> AsyncIterator[tuple[str, bytes]]:
        after: str | None = None
        while True:
            rows, after = await self._w().call(self._scan_page, pattern, after)
            for row in rows:
                yield row
            if after is None:
                return

    async def keys(self, pattern: Pattern) -> list[str]:
        return await self._w().call(self._keys, pattern)

    async def count(self, pattern: Pattern) -> int:
        return await self._w().call(self._count, pattern)

    async def clear(self) -> int:
        return await self._w().call(self._clear, write=True)

    # --- contract v1.1: each a write job, so its read and write share one BEGIN IMMEDIATE
    # transaction: atomic against every other connection and process on the file ---
    def _live_value(self, conn: sqlite3.Connection, key: str) -> bytes | None:
        row = conn.execute(self._sql.current.sql, (self.namespace, key)).fetchone()
        if row is None or (row[1] is not None and row[1] <= now_ms()):
            return None
        return bytes(row[0])

    def _incr(self, conn: sqlite3.Connection, key: str, delta: int, ttl_ms: int | None) -> int:
        current = self._live_value(conn, key)
        if current is None:  # missing or expired: a new key, with the ttl and no tags
            result = add_to_counter(0, delta)
            self._set(conn, key, encode_counter(result), ttl_ms, False, {})
            return result
        result = add_to_counter(parse_counter(current), delta)
        conn.execute(self._sql.set_value.sql, (encode_counter(result), self.namespace, key))
        return result

    def _compare_and_set(
        self,
        conn: sqlite3.Connection,
        key: str,
        expected: bytes,
        value: bytes,
        ttl_ms: int | None,
        tags: Mapping[str, str],
    ) -> bool:
        if self._live_value(conn, key) != expected:
            return False
        return self._set(conn, key, value, ttl_ms, False, tags)

    def _compare_and_delete(self, conn: sqlite3.Connection, key: str, expected: bytes) -> bool:
        if self._live_value(conn, key) != expected:
            return False
        return self._delete_many(conn, (key,)) > 0

    def _delete_by_tag(self, conn: sqlite3.Connection, name: str, value: str) -> int:
        return self._delete_many(conn, self._find_by_tag(conn, name, value))

    async def incr(self, key: str, delta: int, *, ttl_ms: int | None) -> int:
        return await self._w().call(self._incr, key, delta, ttl_ms, write=True)

    async def compare_and_set(
        self,
        key: str,
        expected: bytes,
        value: bytes,
        *,
        ttl_ms: int | None,
        tags: Mapping[str, str],
    ) -> bool:
        refuse_large_values((value,), self.max_value_bytes)
        return await self._w().call(
            self._compare_and_set, key, expected, value, ttl_ms, tags, write=True
        )

    async def compare_and_delete(self, key: str, expected: bytes) -> bool:
        return await self._w().call(self._compare_and_delete, key, expected, write=True)

    async def delete_by_tag(self, name: str, value: str) -> int:
        return await self._w().call(self._delete_by_tag, name, value, write=True)

    async def footprint(self) -> int:
        """Rows this namespace holds (expired ones not purged yet, tag rows included)."""
        return await self._w().call(self._footprint)

    def _footprint(self, conn: sqlite3.Connection) -> int:
        ns = self.namespace
        return int(conn.execute(self._sql.footprint.sql, (ns, ns)).fetchone()[0])

    async def find_by_tag(self, name: str, value: str) -> list[str]:
        return await self._w().call(self._find_by_tag, name, value)

    async def get_tags(self, key: str) -> dict[str, str]:
        return await self._w().call(self._get_tags, key)

    async def expire(self, key: str, ttl_ms: int) -> bool:
        return await self._w().call(self._expire, key, ttl_ms, write=True)

    async def persist(self, key: str) -> bool:
        return await self._w().call(self._expire, key, None, write=True)

    async def ttl(self, key: str) -> float | None:
        live, left = await self._w().call(self._exists, key)
        if not live:
            raise KeyNotFoundError(f"key {key!r} is not live")
        return None if left is None else left / 1000

    async def health(self) -> HealthStatus:
        start = time.perf_counter()
        details: dict[str, object] = {
            "url": self._config.display,
            "table": self._config.table,
            "namespace": self.namespace,
            "sqlite_version": sqlite3.sqlite_version,
        }
        try:
            worker = self._w()
            mode = await asyncio.wait_for(worker.call(_journal_mode), self._config.timeout)
        except Exception as exc:  # noqa: BLE001 - health never raises
            err = map_error(exc, self._where)
            return HealthStatus(
                "unhealthy", self.name, f"{type(err).__name__}: {err}", None, details
            )
        details["journal_mode"] = mode
        details["synchronous"] = self._config.synchronous
        latency = (time.perf_counter() - start) * 1000
        return HealthStatus("healthy", self.name, "ok", latency, details)


def _journal_mode(conn: sqlite3.Connection) -> str:
    return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
