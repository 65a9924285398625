"""``PostgresProvider``: the contract on PostgreSQL, through an asyncpg pool.

Every call is one statement on one pooled connection (``_pgpool``): asyncpg
prepares it once per connection and caches it, so a call is a single round trip
(no BEGIN/COMMIT: writes and their tag changes are data-modifying CTEs of one
statement, atomic by themselves).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import asyncpg
from dmem import (
    DmemError,
    HealthStatus,
    KeyNotFoundError,
    NotInitializedError,
    Pattern,
    ProviderError,
    ProviderUnavailableError,
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
from ._config import PostgresConfig
from ._pg_invalidation import PostgresInvalidation
from ._pg_sql import PostgresStatements
from ._pgbatch import ReadBatcher, WriteBatcher, call_failure, lost, map_error
from ._pgpool import ConnectionPool
from ._pgshared import Purger, Server, open_server

__all__ = ["PostgresProvider"]

_PAGE_ROWS = 512
_FIRST_PAGE_ROWS = 16
_PAGE_BYTES = 128 * 1024  # and about this many value bytes at most (one row if bigger)
# Plain sets of larger values never join a batch (automatic pipelining): such a set goes
# alone, so a batch stays small and none fails for one caller's value.
_BATCHED_VALUE_BYTES = 1024 * 1024
# The asyncpg methods _call runs, looked up once (get and set pass them on every call).
_EXECUTE = asyncpg.Connection.execute
_FETCH = asyncpg.Connection.fetch
_FETCHROW = asyncpg.Connection.fetchrow
_FETCHVAL = asyncpg.Connection.fetchval


@lru_cache(maxsize=16)
def _statements(table: str) -> PostgresStatements:
    return PostgresStatements(table)


class PostgresProvider:
    """A key-value provider on PostgreSQL (asyncpg pool)."""

    name = "postgresql"
    atomic_batches = True  # every batch is one statement: one transaction

    def __init__(self, config: PostgresConfig) -> None:
        self.namespace = config.namespace
        self.max_value_bytes = config.max_value_bytes
        self._config = config
        self._sql = _statements(config.table)
        # (ns, key, value, exp, tags): the plain single-row write, which set() calls directly.
        self._plain_set = self._sql.writes[False, True, False].sql
        self._get_sql = self._sql.get.sql
        self._lease: Lease[Server] | None = None
        self._pool: ConnectionPool | None = None
        # The batched reads shared with the pool's other stores on this table (None:
        # pipelining=false, or not open); see _pgbatch.
        self._reader: ReadBatcher | None = None
        self._writer: WriteBatcher | None = None  # the same for plain sets
        self._purger: Purger | None = None
        self._timeout = config.timeout
        self._where = f"PostgreSQL {config.display} (table {config.table})"

    def __repr__(self) -> str:
        return f"<PostgresProvider {self._config.display} namespace={self.namespace!r}>"

    def _error(self, exc: BaseException) -> BaseException:
        return map_error(self._where, exc)

    def _lost(self, exc: BaseException) -> ProviderUnavailableError:
        return lost(self._where, exc)

    # --- lifecycle -------------------------------------------------------------------------
    async def initialize(self) -> None:
        if self._lease is not None:  # made by with_namespace: open already
            return
        lease = open_server(self._config)
        pool = lease.value.pool
        try:
            try:
                conn = await pool.acquire()  # reachable, or ProviderUnavailableError in time
            except BaseException as exc:
                raise self._error(exc) from exc
            try:
                await self._setup(conn)
            except BaseException as exc:
                pool.release(conn, broken=True)
                raise self._error(exc) from exc
            pool.release(conn)
        except BaseException:
            await lease.release()  # the last one closes the pool
            raise
        self._adopt(lease)

    def _adopt(self, lease: Lease[Server]) -> None:
        server = lease.value
        self._lease, self._pool = lease, server.pool
        self._purger = server.purger(self._config.table, self._sql.purge.sql)
        self._reader = server.reader(self._config.table, self._sql.read_batch.sql, self._where)
        self._writer = server.writer(self._config.table, self._sql.write_batch.sql, self._where)

    def with_namespace(self, namespace: str) -> PostgresProvider:
        """A provider on ``namespace`` (same server and table) sharing this one's pool; open
        already (no I/O), closed on its own."""
        if self._lease is None:
            raise NotInitializedError("the PostgreSQL provider is not initialized")
        derived = PostgresProvider(dataclasses.replace(self._config, namespace=namespace))
        derived._adopt(self._lease.share())
        return derived

    async def _setup(self, conn: asyncpg.Connection) -> None:
        sql = self._sql
        async with conn.transaction():
            # Two processes creating the tables at once would collide on the catalogs;
            # a transaction-scoped advisory lock keyed on the table name serializes them.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"dmem_sqlite:{self._config.table}"
            )
            for statement in sql.ddl:
                await conn.execute(statement)
            await conn.execute(sql.meta_init.sql, "schema_version", str(SCHEMA_VERSION))
            version = int(await conn.fetchval(sql.meta_get.sql, "schema_version"))
        if version > SCHEMA_VERSION:
            raise ProviderError(
                f"{self._where}: schema version {version} was written by a newer dmem-sqlite "
                f"(this one knows {SCHEMA_VERSION}); upgrade dmem-sqlite"
            )

    async def aclose(self) -> None:
        lease, self._lease, self._pool, self._purger = self._lease, None, None, None
        self._reader = self._writer = None
        if lease is not None:
            await lease.release()  # the last store closes the pool (and stops the purge)

    async def open_invalidation(self, listener: InvalidationListener) -> InvalidationChannel:
        """Follow every write to this namespace's rows (``_pg_invalidation``: LISTEN on a
        connection of the channel's own, NOTIFY from triggers installed on first use)."""
        lease = self._lease
        if lease is None:
            raise NotInitializedError("the PostgreSQL provider is not initialized")
        channel = PostgresInvalidation(
            listener,
            lease.value.connect,
            self._config.table,
            self.namespace,
            self._timeout,
            self._error,
        )
        await channel.open()
        return channel

    def _p(self) -> ConnectionPool:
        pool = self._pool
        if pool is None:
            raise NotInitializedError("the PostgreSQL provider is not initialized")
        return pool

    # --- one statement on one pooled connection ---------------------------------------------
    async def _call(
        self, method: Callable[..., Awaitable[Any]], sql: str, args: tuple[Any, ...]
    ) -> Any:
        pool = self._p()
        try:
            conn = pool.acquire_idle() or await pool.acquire_new()
        except DmemError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc
        healthy = False
        try:
            result = await method(conn, sql, *args)
            healthy = True
            return result
        except Exception as exc:
            error, healthy = call_failure(
                pool, conn, exc, self._where, self._config.command_timeout
            )
            raise error from exc
        finally:
            pool.release(conn, broken=not healthy)

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._call(_FETCHROW, sql, args)

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        return list(await self._call(_FETCH, sql, args))

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        return await self._call(_FETCHVAL, sql, args)

    async def _execute(self, sql: str, *args: Any) -> str:
        return str(await self._call(_EXECUTE, sql, args))

    # --- expired rows --------------------------------------------------------------------
    def _after_write(self) -> None:
        """Start the table's background purge, at most every few seconds (``_pgshared``)."""
        purger = self._purger
        if purger is not None:
            purger.after_write()

    # --- reads ---------------------------------------------------------------------------
    # get, get_entry, exists and ttl: while a slot of the reader is free (fewer reads or
    # batches than its slots, min(pool_size, 4), are running), the call's own statement at
    # once; else the next batch carries it (_pgbatch), evaluated at the batch's now_ms().
    async def get(self, key: str) -> bytes | None:
        reader = self._reader
        if reader is not None and not reader.take():
            found = await reader.read(self.namespace, key, True)
            return None if found is None else found[0]
        try:
            # _fetchrow spelled out: one coroutine frame less on the most frequent call.
            row = await self._call(_FETCHROW, self._get_sql, (self.namespace, key, now_ms()))
        finally:
            if reader is not None:
                reader.give()
        return None if row is None else bytes(row[0])

    async def _read(self, key: str, want: bool) -> tuple[bytes | None, int | None, int] | None:
        """(value when ``want``, expires_at, the now it was read at), or None if not live."""
        reader = self._reader
        if reader is not None and not reader.take():
            return await reader.read(self.namespace, key, want)
        try:
            now = now_ms()
            if want:
                row = await self._fetchrow(self._sql.get.sql, self.namespace, key, now)
                return None if row is None else (bytes(row[0]), row[1], now)
            row = await self._fetchrow(self._sql.exists.sql, self.namespace, key, now)
            return None if row is None else (None, row[0], now)
        finally:
            if reader is not None:
                reader.give()

    async def get_entry(self, key: str) -> Entry | None:
        found = await self._read(key, True)
        if found is None:
            return None
        value, expires_at, now = found
        assert value is not None
        return value, None if expires_at is None else max(0, expires_at - now)

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        rows = await self._fetch(self._sql.get_many.sql, self.namespace, list(keys), now_ms())
        return {row[0]: bytes(row[1]) for row in rows}

    async def exists(self, key: str) -> bool:
        return await self._read(key, False) is not None

    async def ttl(self, key: str) -> float | None:
        found = await self._read(key, False)
        if found is None:
            raise KeyNotFoundError(f"key {key!r} is not live")
        _, expires_at, now = found
        return None if expires_at is None else max(0, expires_at - now) / 1000

    # --- writes --------------------------------------------------------------------------
    async def _write(
        self,
        rows: tuple[str, bytes] | tuple[list[str], list[bytes]],
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        """One write statement: ``rows`` is ``(key, value)`` or ``(keys, values)`` lists."""
        now = now_ms()
        exp = None if ttl_ms is None else now + ttl_ms
        single = isinstance(rows[0], str)
        sql = self._sql.writes[if_not_exists, single, bool(tags)].sql
        # Parameters in the statement's order (checked when it was compiled): the row comes
        # before exp and tags in a single-row VALUES, after them in the unnest() form.
        tag_json = dump_tags(tags)
        args: list[Any] = (
            [self.namespace, *rows, exp, tag_json]
            if single
            else [self.namespace, exp, tag_json, *rows]
        )
        if if_not_exists:
            args.append(now)
        if tags:
            args += [list(tags), list(tags.values())]
        if if_not_exists or tags:
            written = int(await self._fetchval(sql, *args))
        else:  # a plain write writes every row and returns nothing (see _pg_sql)
            await self._execute(sql, *args)
            written = 1 if single else len(rows[0])
        self._after_write()
        return written

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
        if if_not_exists or tags:
            return await self._write((key, value), ttl_ms, if_not_exists, tags) > 0
        # The common call, spelled out: the same statement and parameters as _write's
        # plain single-row shape, one coroutine frame and no shape dispatch less (~3 µs of
        # a ~70 µs call here, measured).
        exp = None if ttl_ms is None else now_ms() + ttl_ms
        # While every slot is busy, the next batch carries it (_pgbatch); a large value
        # always goes alone, so that no batch can fail for one caller's value.
        writer = self._writer if len(value) <= _BATCHED_VALUE_BYTES else None
        if writer is not None and not writer.take():
            await writer.write(self.namespace, key, value, exp)
            self._after_write()
            return True
        try:
            await self._call(_EXECUTE, self._plain_set, (self.namespace, key, value, exp, None))
        finally:
            if writer is not None:
                writer.give()
        self._after_write()
        return True

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
        # Sorted, so concurrent batches lock rows in one order and cannot deadlock.
        ordered = sorted(items)
        keys = [key for key, _ in ordered]
        blobs = [value for _, value in ordered]
        return await self._write((keys, blobs), ttl_ms, if_not_exists, tags)

    async def delete(self, key: str) -> bool:
        return await self.delete_many([key]) > 0

    async def delete_many(self, keys: Sequence[str]) -> int:
        sql = self._sql.delete_many.sql
        removed = await self._fetchval(sql, self.namespace, sorted(keys), now_ms())
        return int(removed)

    async def clear(self) -> int:
        return int(await self._fetchval(self._sql.clear.sql, self.namespace, now_ms()))

    # --- contract v1.1: one transaction on one pooled connection each; the row is locked
    # (SELECT ... FOR UPDATE) between its read and its write ---
    async def _locked_value(self, conn: asyncpg.Connection, key: str) -> bytes | None:
        row = await conn.fetchrow(self._sql.current.sql, self.namespace, key)
        if row is None or (row[1] is not None and row[1] <= now_ms()):
            return None
        return bytes(row[0])

    async def _write_on(
        self,
        conn: asyncpg.Connection,
        key: str,
        value: bytes,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        """``_write``'s single-row statement, on ``conn`` (inside its transaction)."""
        now = now_ms()
        exp = None if ttl_ms is None else now + ttl_ms
        sql = self._sql.writes[if_not_exists, True, bool(tags)].sql
        args: list[Any] = [self.namespace, key, value, exp, dump_tags(tags)]
        if if_not_exists:
            args.append(now)
        if tags:
            args += [list(tags), list(tags.values())]
        if if_not_exists or tags:
            return int(await conn.fetchval(sql, *args))
        await conn.execute(sql, *args)
        return 1

    async def _incr_on(
        self, conn: asyncpg.Connection, _sql: str, key: str, delta: int, ttl_ms: int | None
    ) -> int:
        while True:
            async with conn.transaction():
                current = await self._locked_value(conn, key)
                if current is not None:
                    result = add_to_counter(parse_counter(current), delta)
                    await conn.execute(
                        self._sql.set_value.sql, encode_counter(result), self.namespace, key
                    )
                    return result
                result = add_to_counter(0, delta)
                # No row to lock when the key is missing: create it only if still absent;
                # a writer that got there first means another round on its row.
                if await self._write_on(conn, key, encode_counter(result), ttl_ms, True, {}):
                    return result

    async def _compare_and_set_on(
        self,
        conn: asyncpg.Connection,
        _sql: str,
        key: str,
        expected: bytes,
        value: bytes,
        ttl_ms: int | None,
        tags: Mapping[str, str],
    ) -> bool:
        async with conn.transaction():
            if await self._locked_value(conn, key) != expected:
                return False
            await self._write_on(conn, key, value, ttl_ms, False, tags)
            return True

    async def _compare_and_delete_on(
        self, conn: asyncpg.Connection, _sql: str, key: str, expected: bytes
    ) -> bool:
        async with conn.transaction():
            if await self._locked_value(conn, key) != expected:
                return False
            sql = self._sql.delete_many.sql
            return int(await conn.fetchval(sql, self.namespace, [key], now_ms())) > 0

    async def _delete_by_tag_on(
        self, conn: asyncpg.Connection, _sql: str, name: str, value: str
    ) -> int:
        async with conn.transaction():
            rows = await conn.fetch(
                self._sql.find_by_tag_locked.sql, self.namespace, name, value, now_ms()
            )
            keys = sorted(row[0] for row in rows if has_tag(row[1], name, value))
            if not keys:
                return 0
            sql = self._sql.delete_many.sql
            return int(await conn.fetchval(sql, self.namespace, keys, now_ms()))

    async def incr(self, key: str, delta: int, *, ttl_ms: int | None) -> int:
        result = int(await self._call(self._incr_on, "", (key, delta, ttl_ms)))
        self._after_write()
        return result

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
        args = (key, expected, value, ttl_ms, tags)
        written = bool(await self._call(self._compare_and_set_on, "", args))
        self._after_write()
        return written

    async def compare_and_delete(self, key: str, expected: bytes) -> bool:
        return bool(await self._call(self._compare_and_delete_on, "", (key, expected)))

    async def delete_by_tag(self, name: str, value: str) -> int:
        return int(await self._call(self._delete_by_tag_on, "", (name, value)))

    async def footprint(self) -> int:
        """Rows this namespace holds (expired ones not purged yet, tag rows included)."""
        return int(await self._fetchval(self._sql.footprint.sql, self.namespace))

    async def expire(self, key: str, ttl_ms: int) -> bool:
        now = now_ms()
        status = await self._execute(self._sql.expire.sql, now + ttl_ms, self.namespace, key, now)
        return status != "UPDATE 0"

    async def persist(self, key: str) -> bool:
        status = await self._execute(self._sql.persist.sql, self.namespace, key, now_ms())
        return status != "UPDATE 0"

    # --- listing -------------------------------------------------------------------------
    def _range(self, pattern: Pattern) -> tuple[bool, dict[str, Any]]:
        hi = upper_bound(pattern.literal_prefix)
        values: dict[str, Any] = {"ns": self.namespace, "lo": pattern.literal_prefix}
        if hi is not None:
            values["hi"] = hi
        return hi is not None, values

    async def _key_pages(self, pattern: Pattern) -> AsyncIterator[list[str]]:
        """Keys in the pattern's range, a page at a time (keyset pagination)."""
        upper, values = self._range(pattern)
        after: str | None = None
        while True:
            stmt = self._sql.key_page[(after is None, upper)]
            if after is not None:
                values["lo"] = after
            rows = await self._fetch(stmt.sql, *stmt.args(now=now_ms(), limit=_PAGE_ROWS, **values))
            yield [row[0] for row in rows]
            if len(rows) < _PAGE_ROWS:
                return
            after = rows[-1][0]

    async def keys(self, pattern: Pattern) -> list[str]:
        if pattern.is_exact:
            return [pattern.literal_prefix] if await self.exists(pattern.literal_prefix) else []
        if is_prefix_glob(pattern):
            upper, values = self._range(pattern)
            stmt = self._sql.keys[upper]
            rows = await self._fetch(stmt.sql, *stmt.args(now=now_ms(), **values))
            return [row[0] for row in rows]
        matches = pattern.matches
        found: list[str] = []
        async for page in self._key_pages(pattern):
            found.extend(key for key in page if matches(key))
        return found

    async def count(self, pattern: Pattern) -> int:
        if pattern.is_exact:
            return 1 if await self.exists(pattern.literal_prefix) else 0
        if is_prefix_glob(pattern):
            upper, values = self._range(pattern)
            stmt = self._sql.count[upper]
            return int(await self._fetchval(stmt.sql, *stmt.args(now=now_ms(), **values)))
        matches = pattern.matches
        total = 0
        async for page in self._key_pages(pattern):
            total += sum(1 for key in page if matches(key))
        return total

    async def scan(self, pattern: Pattern) -> AsyncIterator[tuple[str, bytes]]:
        upper, values = self._range(pattern)
        matches, everything = pattern.matches, is_prefix_glob(pattern)
        after: str | None = None
        # Start small (values may be large), then size pages to about _PAGE_BYTES.
        limit = _FIRST_PAGE_ROWS
        while True:
            stmt = self._sql.scan_page[(after is None, upper)]
            if after is not None:
                values["lo"] = after
            rows = await self._fetch(stmt.sql, *stmt.args(now=now_ms(), limit=limit, **values))
            size = 0
            for key, value in rows:
                size += len(value)
                if everything or matches(key):
                    yield key, bytes(value)
            if len(rows) < limit:
                return
            after = rows[-1][0]
            # Constant memory with big values too: size the next page to ~_PAGE_BYTES.
            average = max(1, size // len(rows))
            limit = max(1, min(_PAGE_ROWS, _PAGE_BYTES // average))

    # --- tags ----------------------------------------------------------------------------
    async def find_by_tag(self, name: str, value: str) -> list[str]:
        rows = await self._fetch(self._sql.find_by_tag.sql, self.namespace, name, value, now_ms())
        return [row[0] for row in rows if has_tag(row[1], name, value)]

    async def get_tags(self, key: str) -> dict[str, str]:
        row = await self._fetchrow(self._sql.get_tags.sql, self.namespace, key, now_ms())
        if row is None:
            raise KeyNotFoundError(f"key {key!r} is not live")
        return load_tags(row[0])

    async def health(self) -> HealthStatus:
        start = time.perf_counter()
        details: dict[str, object] = {
            "url": self._config.display,
            "table": self._config.table,
            "namespace": self.namespace,
        }
        try:
            version = await asyncio.wait_for(self._fetchval("SHOW server_version"), self._timeout)
        except Exception as exc:  # noqa: BLE001 - health never raises
            err = self._error(exc)
            return HealthStatus(
                "unhealthy", self.name, f"{type(err).__name__}: {err}", None, details
            )
        details["server_version"] = version
        pool = self._pool
        if pool is not None:
            details["connections"] = pool.size
        latency = (time.perf_counter() - start) * 1000
        return HealthStatus("healthy", self.name, "ok", latency, details)
