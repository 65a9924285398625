"""dmem on Redis against raw redis-py (same connection settings) and aiocache's RedisCache.

    python bench/bench_redis.py [--check] [--quick]

Starts a throwaway ``redis-server`` (from PATH) on a free loopback port, or uses
``DMEM_BENCH_REDIS_URL``. The raw client is stock ``redis.asyncio.Redis`` with the
settings dmem-redis uses for the same URL (host, port, db, socket and connect timeouts,
retry policy, decode_responses=False, unbounded pool); dmem-redis differs only in
what it does itself (key prefixes, Lua scripts, hiredis command packing).

Targets (issue 5): single get/set >= 0.85x raw redis-py; get_many of 100 >= 0.8x raw
MGET; set_many of 100 >= 0.8x raw MSET (>= 0.8x a raw pipeline of SET PX with a ttl);
both single ops faster than aiocache's RedisCache (ratio > 1); a Cache hit >= 20x a
Redis get.

The set_many references encode their values with orjson, as a user's code must (dmem is
handed Python values); the pre-encoded MSET is shown beside them, for information only.

Issue 21 (automatic pipelining): 200 concurrent tasks on one loop doing get, or set, give
>= 3x the throughput of raw redis-py with its unbounded pool (a connection per concurrent
command), with a p99 call latency no worse than raw's (printed under the table).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dmem
from dmem import Cache

from bench._harness import Bench, parse_args, redis_url

VALUE = {"name": "Ada", "role": "admin", "score": 42, "tags": ["a", "b", "c"]}


async def run(url: str, quick: bool) -> bool:
    import redis.asyncio as aioredis
    from aiocache import RedisCache
    from dmem_redis import parse_config
    from dmem_redis._client import _retry

    ops = 1_000 if quick else 4_000
    batch_ops = 200 if quick else 800
    bench = Bench(
        "dmem-redis vs redis-py and aiocache",
        rounds=3 if quick else 7,
        min_seconds=0 if quick else 3.0,
    )
    host_port = url.split("://", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)

    store = await dmem.open(url, namespace="bench")
    config = parse_config(url, {"namespace": "bench"})
    raw = aioredis.Redis(
        host=config.hosts[0][0],
        port=config.hosts[0][1],
        db=config.db,
        socket_timeout=config.timeout,
        socket_connect_timeout=config.connect_timeout,
        retry=_retry(config),
        decode_responses=False,
        max_connections=2**31,
    )
    # Opened just before its row: a Cache follows the namespace's writes (CLIENT TRACKING),
    # so while it is open every dmem write in "bench" also costs the server an invalidation
    # message and this loop its handling; that cost is bench_invalidation.py's to measure.
    cached: dmem.Store | None = None
    aio = RedisCache(endpoint=host, port=int(port), namespace="aiocache-bench")
    try:
        await store.clear()
        encoded = dmem.encode(VALUE)
        await store.set("user:1", VALUE)
        await raw.set("raw:user:1", encoded)
        await aio.set("user:1", VALUE)

        await bench.compare(
            "get",
            lambda: store.get("user:1"),
            lambda: raw.get("raw:user:1"),
            reference="redis-py GET",
            ops=ops,
            target=0.85,
        )
        await bench.compare(
            "set",
            lambda: store.set("user:1", VALUE),
            lambda: raw.set("raw:user:1", encoded),
            reference="redis-py SET",
            ops=ops,
            target=0.85,
        )

        keys = [f"many:{i}" for i in range(100)]
        raw_keys = [f"raw:many:{i}" for i in range(100)]
        items = {key: {**VALUE, "i": i} for i, key in enumerate(keys)}
        raw_items = {rk: dmem.encode(items[k]) for k, rk in zip(keys, raw_keys, strict=True)}
        await store.set_many(items)
        await raw.mset(raw_items)

        await bench.compare(
            "get_many x100",
            lambda: store.get_many(keys),
            lambda: raw.mget(raw_keys),
            reference="redis-py MGET",
            ops=batch_ops,
            items_per_op=100,
            target=0.8,
        )
        raw_values = {rk: items[k] for k, rk in zip(keys, raw_keys, strict=True)}
        dumps = orjson.dumps

        await bench.compare(
            "set_many x100",
            lambda: store.set_many(items),
            lambda: raw.mset({key: dumps(value) for key, value in raw_values.items()}),
            reference="redis-py MSET (orjson)",
            ops=batch_ops,
            items_per_op=100,
            target=0.8,
        )
        await bench.compare(
            "set_many x100 pre-encoded",
            lambda: store.set_many(items),
            lambda: raw.mset(raw_items),
            reference="redis-py MSET of bytes",
            ops=batch_ops,
            items_per_op=100,
        )

        async def raw_set_px() -> Any:
            pipe = raw.pipeline(transaction=False)
            for key, value in raw_values.items():
                pipe.set(key, dumps(value), px=60_000)
            return await pipe.execute()

        await bench.compare(
            "set_many x100 ttl",
            lambda: store.set_many(items, ttl=60),
            raw_set_px,
            reference="redis-py pipeline SET PX (orjson)",
            ops=batch_ops,
            items_per_op=100,
            target=0.8,
        )

        # Many tasks on one loop (issue 21): 200 keys, each task's calls spread over them.
        await store.set_many({f"c:{i}": {**VALUE, "i": i} for i in range(200)})
        await raw.mset({f"raw:c:{i}": dmem.encode({**VALUE, "i": i}) for i in range(200)})
        calls = 10 if quick else 25
        await bench.compare_concurrent(
            "get x200 concurrent",
            lambda i: store.get(f"c:{i % 200}"),
            lambda i: raw.get(f"raw:c:{i % 200}"),
            reference="redis-py GET, unbounded pool",
            tasks=200,
            calls_per_task=calls,
            target=3.0,
        )
        await bench.compare_concurrent(
            "set x200 concurrent",
            lambda i: store.set(f"c:{i % 200}", VALUE),
            lambda i: raw.set(f"raw:c:{i % 200}", dumps(VALUE)),
            reference="redis-py SET, unbounded pool",
            tasks=200,
            calls_per_task=calls,
            target=3.0,
        )

        await bench.compare(
            "get vs aiocache",
            lambda: store.get("user:1"),
            lambda: aio.get("user:1"),
            reference="aiocache RedisCache.get",
            ops=ops,
            target=1.0,
        )
        await bench.compare(
            "set vs aiocache",
            lambda: store.set("user:1", VALUE),
            lambda: aio.set("user:1", VALUE),
            reference="aiocache RedisCache.set",
            ops=ops,
            target=1.0,
        )

        cached = await dmem.open(url, namespace="bench", middleware=[Cache(ttl=300)])
        await cached.get("user:1")  # warm the cache
        await bench.compare(
            "Cache hit vs Redis get",
            lambda: cached.get("user:1"),
            lambda: store.get("user:1"),
            reference="dmem get on Redis",
            ops=ops,
            target=20.0,
        )
        await store.clear()
        await raw.delete("raw:user:1", *raw_keys, *(f"raw:c:{i}" for i in range(200)))
        await aio.clear()
    finally:
        await store.aclose()
        if cached is not None:
            await cached.aclose()
        await raw.aclose()
        await aio.close()
    return bench.report()


def main() -> int:
    args = parse_args(__doc__ or "")
    with redis_url() as url:
        ok = asyncio.run(run(url, args.quick))
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
