"""Contract v1.1 calls against what users write by hand, in one process (issue 17).

    python bench/bench_coordination.py [--check] [--quick]

Rows and targets (ratio = dmem ops/s / reference ops/s):

* ``get_or_set`` hit >= 0.9x a plain ``Store.get`` (memory, SQLite, Redis);
* ``@dmem.cached`` hit on ``memory://`` >= 0.7x a hand-written ``get`` + ``if`` + call;
* SQLite ``incr`` >= 1.5x raw aiosqlite ``UPDATE ... RETURNING`` (commit each);
* Redis ``incr`` >= 0.85x redis-py ``INCR``;
* Redis ``lock`` acquire + release >= 0.8x redis-py's ``Lock``.

Redis: a throwaway redis-server from PATH, or ``DMEM_BENCH_REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiosqlite
import dmem

from bench._harness import Bench, parse_args, redis_url

VALUE = {"name": "Ada", "role": "admin", "score": 42}


async def _hits(bench: Bench, label: str, store: dmem.Store, ops: int) -> None:
    await store.set("hot", VALUE)

    def factory() -> dict[str, Any]:
        return VALUE

    await bench.compare(
        f"get_or_set hit ({label})",
        lambda: store.get_or_set("hot", factory),
        lambda: store.get("hot"),
        reference="Store.get of the same key",
        ops=ops,
        target=0.9,
    )


async def memory_rows(bench: Bench, ops: int) -> None:
    async with dmem.open("memory://") as store:
        await _hits(bench, "memory", store, ops)

        @dmem.cached(store)
        async def profile(user_id: int) -> dict[str, Any]:
            return {"id": user_id}

        await profile(7)

        async def by_hand(user_id: int) -> dict[str, Any]:
            key = f"profile:{user_id}"
            value = await store.get(key)
            if value is None:
                value = {"id": user_id}
                await store.set(key, value)
            return value  # type: ignore[no-any-return]

        await by_hand(7)
        await bench.compare(
            "@dmem.cached hit (memory)",
            lambda: profile(7),
            lambda: by_hand(7),
            reference="get + if + call by hand",
            ops=ops,
            target=0.7,
        )


async def sqlite_rows(bench: Bench, ops: int, tmp: Path) -> None:
    path = tmp / "coord.db"
    async with dmem.open(f"sqlite:///{path}") as store:
        await _hits(bench, "SQLite", store, ops)
        await store.set("n", 0)
        raw = await aiosqlite.connect(tmp / "raw.db")
        await raw.execute("PRAGMA journal_mode=WAL")
        await raw.execute("PRAGMA synchronous=NORMAL")
        await raw.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value INTEGER)")
        await raw.execute("INSERT INTO kv VALUES ('n', 0)")
        await raw.commit()

        async def raw_incr() -> int:
            async with raw.execute(
                "UPDATE kv SET value = value + 1 WHERE key = 'n' RETURNING value"
            ) as cursor:
                row = await cursor.fetchone()
            await raw.commit()
            return int(row[0]) if row else 0

        try:
            await bench.compare(
                "incr (SQLite)",
                lambda: store.incr("n"),
                raw_incr,
                reference="aiosqlite UPDATE ... RETURNING + commit",
                ops=max(200, ops // 10),
                target=1.5,
            )
        finally:
            await raw.close()


async def redis_rows(bench: Bench, ops: int, url: str) -> None:
    import redis.asyncio as aioredis

    raw = aioredis.Redis.from_url(url)
    async with dmem.open(url, namespace="bench-coord") as store:
        await _hits(bench, "Redis", store, ops)
        if not callable(getattr(store.provider, "incr", None)):
            print("(Redis incr and lock rows: dmem-redis has no v1.1 operations yet)")
            await raw.aclose()
            return
        await store.set("n", 0)
        await raw.set("raw:n", 0)
        await bench.compare(
            "incr (Redis)",
            lambda: store.incr("n"),
            lambda: raw.incr("raw:n"),
            reference="redis-py INCR",
            ops=ops,
            target=0.85,
        )

        async def dmem_lock() -> None:
            async with store.lock("job", ttl=10):
                pass

        async def raw_lock() -> None:
            async with raw.lock("raw:job", timeout=10):
                pass

        await bench.compare(
            "lock acquire + release (Redis)",
            dmem_lock,
            raw_lock,
            reference="redis-py Lock",
            ops=max(200, ops // 5),
            target=0.8,
        )
        await store.clear()
    await raw.delete("raw:n", "raw:job")
    await raw.aclose()


async def run(quick: bool, url: str) -> bool:
    ops = 1_000 if quick else 10_000
    bench = Bench(
        "contract v1.1: get_or_set, @cached, incr, lock",
        rounds=3 if quick else 5,
        min_seconds=0 if quick else 2.0,
    )
    await memory_rows(bench, ops)
    with tempfile.TemporaryDirectory() as tmp:
        await sqlite_rows(bench, ops // 2, Path(tmp))
    await redis_rows(bench, ops // 2, url)
    return bench.report()


def main() -> int:
    args = parse_args(__doc__ or "")
    with redis_url() as url:
        ok = asyncio.run(run(args.quick, url))
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
