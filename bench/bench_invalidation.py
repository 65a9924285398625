"""What cross-process cache coherence costs (issue 19), in one process.

    python bench/bench_invalidation.py [--check] [--quick]

Rows and targets (ratio = dmem ops/s / reference ops/s):

* Redis: a ``Cache(invalidation="auto")`` hit (``Store.get``, channel up) >= 20x a redis-py
  ``GET`` of the same key;
* Redis: ``Store.set`` on a namespace a ``Cache`` in another process follows (CLIENT
  TRACKING on: the server sends a message per write) >= 0.9x ``Store.set`` on a namespace
  nobody tracks: invalidation costs a write at most 10 %;
* PostgreSQL: the same, ``Store.set`` on a table with the invalidation triggers, a
  ``Cache`` in another process listening, >= 0.9x ``Store.set`` on a table without them.

Rows without a target: the same with the ``Cache`` in the writing process (it receives and
handles each write's message on the writer's event loop too).

Redis: a throwaway redis-server from PATH, or ``DMEM_BENCH_REDIS_URL``; PostgreSQL: a
throwaway server (initdb/pg_ctl), or ``DMEM_TEST_POSTGRES_URL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dmem
import redis.asyncio as aioredis
from dmem.middleware import Cache

from bench._harness import Bench, ServerUnavailable, parse_args, postgres_url, redis_url

VALUE = {"name": "Ada", "role": "admin", "score": 42}
# The follower process: a Cache store on the namespace (and table), its channel up, idle.
_FOLLOWER = """
import asyncio, sys, dmem
from dmem.middleware import Cache
async def main():
    opts = {"table": sys.argv[3]} if sys.argv[3] else {}
    async with dmem.open(sys.argv[1], namespace=sys.argv[2], middleware=[Cache()], **opts) as kv:
        mode = (await kv.health()).details["cache"]["invalidation"]
        print(mode, flush=True)
        await asyncio.to_thread(sys.stdin.read)
asyncio.run(main())
"""


@contextlib.contextmanager
def follower_process(url: str, namespace: str, table: str = "") -> Iterator[str]:
    """Another process with a Cache following ``namespace``; yields its invalidation mode."""
    process = subprocess.Popen(
        [sys.executable, "-c", _FOLLOWER, url, namespace, table],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(30)


async def _write_cost(
    bench: Bench,
    label: str,
    url: str,
    ops: int,
    expected_mode: str,
    followed_table: str = "",
) -> None:
    """Store.set where a Cache follows the namespace vs where nobody does (PostgreSQL: on a
    table with the triggers vs one without)."""
    options = {"table": followed_table} if followed_table else {}
    followed = await dmem.open(url, namespace="followed", **options)
    alone_options = {"table": "bench_inv_alone"} if followed_table else {}
    alone = await dmem.open(url, namespace="alone", **alone_options)
    follower: dmem.Store | None = None
    try:
        with follower_process(url, "followed", followed_table) as mode:
            assert mode == expected_mode, f"the other process's Cache runs in mode {mode!r}"
            await bench.compare(
                f"set, a Cache in another process follows ({label})",
                lambda: followed.set("k", VALUE),
                lambda: alone.set("k", VALUE),
                reference="Store.set, nobody follows",
                ops=ops,
                target=0.9,
            )
        # The second row's follower: a cached store on the written namespace in this
        # process, its channel up; it receives every write's message on this loop, so its
        # handling is in the timing too. (Opened only now: in the first row it would
        # add its cost to the other process's.)
        follower = await dmem.open(
            url,
            namespace="followed",
            middleware=[Cache(invalidation="auto")],
            **options,
        )
        cache = (await follower.health()).details["cache"]
        own_mode = cache["invalidation"] if isinstance(cache, dict) else None
        assert own_mode == expected_mode, f"the Cache runs in mode {own_mode!r}"
        await follower.get("k")
        await bench.compare(
            f"set, a Cache in this process follows ({label})",
            lambda: followed.set("k", VALUE),
            lambda: alone.set("k", VALUE),
            reference="Store.set, nobody follows",
            ops=ops,
        )
    finally:
        for store in (follower, alone, followed):
            if store is not None:
                await store.aclose()


async def redis_rows(bench: Bench, url: str, ops: int) -> None:
    async with dmem.open(url, middleware=[Cache(invalidation="auto")]) as cached:
        await cached.set("hot", VALUE)
        await cached.get("hot")
        raw = aioredis.Redis.from_url(url)
        try:
            await raw.set("raw-hot", b'{"name":"Ada","role":"admin","score":42}')
            await bench.compare(
                "Cache hit, invalidation channel up (redis)",
                lambda: cached.get("hot"),
                lambda: raw.get("raw-hot"),
                reference="redis-py GET",
                ops=ops,
                target=20,
            )
        finally:
            await raw.aclose()
    await _write_cost(bench, "redis", url, ops, "redis-tracking")


async def postgres_rows(bench: Bench, url: str, ops: int) -> None:
    # Two tables: only the followed one gets the triggers (installed by the first channel).
    await _write_cost(
        bench, "postgresql", url, ops, "postgres-notify", followed_table="bench_inv_followed"
    )


def main() -> int:
    args = parse_args(__doc__ or "")
    ops = 300 if args.quick else 2000
    bench = Bench("Invalidation channels", rounds=3 if args.quick else 5)
    with redis_url() as url:
        asyncio.run(redis_rows(bench, url, ops))
    try:
        with postgres_url() as url:
            asyncio.run(postgres_rows(bench, url, ops // 2))
    except ServerUnavailable as exc:
        print(f"PostgreSQL rows skipped: {exc}")
    ok = bench.report()
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
