"""dmem-sqlite against the raw drivers, in one run: SQLite file (WAL) and PostgreSQL.

    .venv/bin/python bench/bench_sqlite.py [--quick] [--check] [--synchronous normal]

References, written the way people usually write them:

* raw aiosqlite: ``async with db.execute(SELECT) as cur: await cur.fetchone()`` for get,
  ``await db.execute(INSERT OR REPLACE); await db.commit()`` for set;
* SQLAlchemy async Core (``sqlite+aiosqlite``): ``engine.connect()`` + ``execute`` for
  get, ``engine.begin()`` + ``execute`` for set;
* sync sqlite3 ``executemany`` + ``commit`` for set_many of 1,000 (values pre-encoded:
  the reference does no serialization work at all, dmem encodes every value);
* raw asyncpg on one connection: ``fetchrow`` for get, ``execute`` of an upsert for set;
* "get x200 concurrent" / "set x200 concurrent": 200 tasks on one loop each doing gets
  (sets) (``Bench.compare_concurrent``) against raw asyncpg's ``asyncpg.create_pool`` of the
  same size as the store's pool (``pool_size``, 10), ``pool.fetchrow`` (``pool.execute`` of
  the upsert) per call; the store pipelines the calls that arrive while its slots are busy
  (option ``pipelining``, on by default). The p99 latencies are printed beside the table.

Every SQLite reference uses a file of its own with the same pragmas as the dmem store
(WAL, same ``synchronous``), so each commit costs the same fsync. PostgreSQL: a throwaway
server (initdb/pg_ctl on PATH), or ``DMEM_TEST_POSTGRES_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiosqlite
import dmem
from _harness import Bench, ServerUnavailable, postgres_url

VALUE = {"name": "Ada Lovelace", "visits": 12, "tags": ["a", "b"], "score": 0.5}
ENCODED = dmem.encode(VALUE)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    parser.add_argument("--synchronous", choices=("full", "normal"), default="normal")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    return parser.parse_args()


def _raw_file(path: Path, synchronous: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
    conn.close()


async def bench_sqlite(args: argparse.Namespace, tmp: Path) -> Bench:
    from sqlalchemy import Column, LargeBinary, MetaData, Table, Text, select
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert
    from sqlalchemy.ext.asyncio import create_async_engine

    rounds = 2 if args.quick else 5
    ops = 300 if args.quick else 2000
    bench = Bench(
        f"SQLite file, WAL, synchronous={args.synchronous}",
        rounds=rounds,
        min_seconds=0 if args.quick else 3.0,
    )
    sync_pragma = f"PRAGMA synchronous={args.synchronous.upper()}"

    kv = await dmem.open(f"sqlite:///{tmp / 'dmem.db'}", synchronous=args.synchronous)
    raw_path = tmp / "raw.db"
    _raw_file(raw_path, args.synchronous)
    db = await aiosqlite.connect(raw_path)
    await db.execute(sync_pragma)

    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp / 'sqla.db'}")
    metadata = MetaData()
    table = Table(
        "kv", metadata, Column("key", Text, primary_key=True), Column("value", LargeBinary)
    )
    async with engine.begin() as conn:
        await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        await conn.run_sync(metadata.create_all)

    await kv.set("user:1", VALUE)
    await db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", ("user:1", ENCODED))
    await db.commit()
    async with engine.begin() as conn:
        await conn.execute(sqlite_insert(table).values(key="user:1", value=ENCODED))

    async def dmem_get() -> object:
        return await kv.get("user:1")

    async def raw_get() -> object:
        async with db.execute("SELECT value FROM kv WHERE key = ?", ("user:1",)) as cursor:
            return await cursor.fetchone()

    get_stmt = select(table.c.value).where(table.c.key == "user:1")

    async def sqla_get() -> object:
        async with engine.connect() as conn:
            return (await conn.execute(get_stmt)).first()

    counter = itertools.count()

    async def dmem_set() -> object:
        return await kv.set(f"user:{next(counter) % 1000}", VALUE)

    async def raw_set() -> object:
        await db.execute(
            "INSERT OR REPLACE INTO kv VALUES (?, ?)", (f"user:{next(counter) % 1000}", ENCODED)
        )
        await db.commit()
        return None

    upsert = sqlite_insert(table)
    upsert = upsert.on_conflict_do_update(
        index_elements=[table.c.key], set_={"value": upsert.excluded.value}
    )

    async def sqla_set() -> object:
        async with engine.begin() as conn:
            await conn.execute(upsert, {"key": f"user:{next(counter) % 1000}", "value": ENCODED})
        return None

    await bench.compare("get", dmem_get, raw_get, reference="raw aiosqlite", ops=ops, target=2.0)
    await bench.compare("get", dmem_get, sqla_get, reference="SQLAlchemy async Core", ops=ops)
    set_ops = ops // 4 if args.synchronous == "full" else ops
    await bench.compare(
        "set", dmem_set, raw_set, reference="raw aiosqlite", ops=set_ops, target=1.5
    )
    await bench.compare("set", dmem_set, sqla_set, reference="SQLAlchemy async Core", ops=set_ops)

    batch = {f"batch:{i}": VALUE for i in range(1000)}
    rows = [(key, ENCODED) for key in batch]
    sync_db = sqlite3.connect(tmp / "sync.db", isolation_level=None)
    sync_db.execute("PRAGMA journal_mode=WAL")
    sync_db.execute(sync_pragma)
    sync_db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")

    async def dmem_set_many() -> object:
        return await kv.set_many(batch)

    async def sync_set_many() -> object:
        sync_db.execute("BEGIN")
        sync_db.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", rows)
        sync_db.execute("COMMIT")
        return None

    await bench.compare(
        "set_many(1000)",
        dmem_set_many,
        sync_set_many,
        reference="sync sqlite3 executemany",
        ops=max(5, ops // 100),
        items_per_op=1000,
        target=0.7,
    )

    # Concurrency: 50 tasks setting at once; group commit shares one fsync among them.
    async def dmem_concurrent() -> object:
        return await asyncio.gather(*(kv.set(f"c:{i}", VALUE) for i in range(50)))

    async def raw_concurrent() -> object:
        async def one(i: int) -> None:
            await db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (f"c:{i}", ENCODED))
            await db.commit()

        return await asyncio.gather(*(one(i) for i in range(50)))

    await bench.compare(
        "50 concurrent sets",
        dmem_concurrent,
        raw_concurrent,
        reference="raw aiosqlite, one connection",
        ops=max(5, ops // 100),
        items_per_op=50,
    )

    await kv.aclose()
    await db.close()
    sync_db.close()
    await engine.dispose()
    return bench


async def bench_postgres(args: argparse.Namespace, url: str) -> Bench:
    import asyncpg

    rounds = 2 if args.quick else 5
    ops = 300 if args.quick else 2000
    bench = Bench("PostgreSQL (asyncpg)", rounds=rounds, min_seconds=0 if args.quick else 3.0)
    kv = await dmem.open(url, table="dmem_bench", namespace="bench")
    conn = await asyncpg.connect(url)
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS raw_bench (key text PRIMARY KEY, value bytea NOT NULL)"
    )
    await kv.set("user:1", VALUE)
    upsert = (
        "INSERT INTO raw_bench (key, value) VALUES ($1, $2) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    )
    await conn.execute(upsert, "user:1", ENCODED)

    async def dmem_get() -> object:
        return await kv.get("user:1")

    async def raw_get() -> object:
        return await conn.fetchrow("SELECT value FROM raw_bench WHERE key = $1", "user:1")

    counter = itertools.count()

    async def dmem_set() -> object:
        return await kv.set(f"user:{next(counter) % 1000}", VALUE)

    async def raw_set() -> object:
        return await conn.execute(upsert, f"user:{next(counter) % 1000}", ENCODED)

    await bench.compare("get", dmem_get, raw_get, reference="raw asyncpg", ops=ops, target=0.7)
    await bench.compare("set", dmem_set, raw_set, reference="raw asyncpg", ops=ops, target=0.7)
    await _concurrent(bench, kv, url, conn, quick=args.quick)
    await kv.clear()
    await kv.aclose()
    await conn.execute("DROP TABLE raw_bench")
    await conn.close()
    return bench


async def _concurrent(bench: Bench, kv: dmem.Store, url: str, conn: Any, *, quick: bool) -> None:
    """200 tasks doing gets, then sets, on one loop: dmem (pool_size connections, pipelining)
    against an asyncpg pool of as many connections."""
    import asyncpg

    keys = 1000
    await kv.set_many({f"user:{i}": VALUE for i in range(keys)})
    await conn.executemany(
        "INSERT INTO raw_bench (key, value) VALUES ($1, $2) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [(f"user:{i}", ENCODED) for i in range(keys)],
    )
    size = kv.provider._config.pool_size  # type: ignore[attr-defined]
    pool = await asyncpg.create_pool(url, min_size=size, max_size=size)
    get_sql = "SELECT value FROM raw_bench WHERE key = $1"

    async def dmem_get(i: int) -> object:
        return await kv.get(f"user:{i % keys}")

    async def raw_get(i: int) -> object:
        return await pool.fetchrow(get_sql, f"user:{i % keys}")

    await bench.compare_concurrent(
        "get x200 concurrent",
        dmem_get,
        raw_get,
        reference=f"raw asyncpg pool of {size}",
        tasks=200,
        calls_per_task=5 if quick else 25,
        target=2.0,
    )
    upsert = (
        "INSERT INTO raw_bench (key, value) VALUES ($1, $2) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    )

    async def dmem_set(i: int) -> object:
        return await kv.set(f"user:{i % keys}", VALUE)

    async def raw_set(i: int) -> object:
        return await pool.execute(upsert, f"user:{i % keys}", ENCODED)

    await bench.compare_concurrent(
        "set x200 concurrent",
        dmem_set,
        raw_set,
        reference=f"raw asyncpg pool of {size}",
        tasks=200,
        calls_per_task=5 if quick else 25,
    )
    await pool.close()


def main() -> int:
    args = _args()
    benches: list[Bench] = []
    with tempfile.TemporaryDirectory(prefix="dmem-bench-") as tmp:
        if not args.no_sqlite:
            benches.append(asyncio.run(bench_sqlite(args, Path(tmp))))
        if not args.no_postgres:
            try:
                with postgres_url() as url:
                    benches.append(asyncio.run(bench_postgres(args, url)))
            except ServerUnavailable as exc:
                print(f"\n(PostgreSQL rows skipped: {exc})")
    ok = all([bench.report() for bench in benches])
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
