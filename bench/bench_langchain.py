"""langchain-dmem's stores against the dmem calls under them, and against redis-py (issue 18).

    python bench/bench_langchain.py [--check] [--quick]

Each row is a batch of 10 keys (values of 100 bytes). What the adapter adds over dmem is
checking the batch (the keys listed once, each value's type, each value read is bytes) and
putting the results in the keys' order: about 1.5 us a call, measured on memory. The targets
say it stays a small part of a call that goes to a backend:

* ``DmemByteStore.amget`` / ``amset`` >= 0.9x ``Store.get_many`` / ``set_many`` (SQLite,
  Redis); on memory (no target) a 10-key ``get_many`` is itself ~5 us, so the same 1.5 us is
  ~0.8x there (``amget``: 0.77x median of 5 runs, 0.76-0.82x);
* ``DmemByteStore.mget`` / ``mset`` (sync) >= 0.9x ``SyncStore.get_many`` / ``set_many``
  (SQLite, Redis): both hop to dmem's loop thread and back, which is most of the time;
* ``DmemByteStore.amget`` on Redis against redis-py's ``MGET`` of the same keys (no target:
  what the whole dmem stack costs over the raw client, for the record).

Redis: a throwaway redis-server from PATH, or ``DMEM_BENCH_REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dmem
import redis.asyncio as redis_asyncio
from langchain_dmem import DmemByteStore

from bench._harness import Bench, parse_args, redis_url

KEYS = [f"doc:{i}" for i in range(10)]
PAIRS = [(key, bytes(100)) for key in KEYS]


async def _rows(bench: Bench, label: str, url: str, ops: int, sync: bool) -> None:
    target = None if label == "memory" else 0.9
    namespace = f"bench-langchain-{uuid.uuid4().hex[:8]}"
    async with (
        DmemByteStore(url, namespace=namespace) as store,
        dmem.open(url, namespace=namespace) as kv,
    ):
        await store.amset(PAIRS)
        await bench.compare(
            f"amget 10 ({label})",
            lambda: store.amget(KEYS),
            lambda: kv.get_many(KEYS),
            reference="Store.get_many",
            ops=ops,
            items_per_op=10,
            target=target,
        )
        await bench.compare(
            f"amset 10 ({label})",
            lambda: store.amset(PAIRS),
            lambda: kv.set_many(PAIRS),
            reference="Store.set_many",
            ops=ops,
            items_per_op=10,
            target=target,
        )
        if not sync:
            return
        sync_kv = dmem.open_sync(url, namespace=namespace)
        try:
            # The sync calls block this loop for their length, the same on both sides.
            async def mget() -> object:
                return store.mget(KEYS)

            async def get_many() -> object:
                return sync_kv.get_many(KEYS)

            async def mset() -> None:
                store.mset(PAIRS)

            async def set_many() -> object:
                return sync_kv.set_many(PAIRS)

            await bench.compare(
                f"mget 10, sync ({label})",
                mget,
                get_many,
                reference="SyncStore.get_many",
                ops=ops,
                items_per_op=10,
                target=0.9,
            )
            await bench.compare(
                f"mset 10, sync ({label})",
                mset,
                set_many,
                reference="SyncStore.set_many",
                ops=ops,
                items_per_op=10,
                target=0.9,
            )
        finally:
            sync_kv.close()


async def _redis_py_row(bench: Bench, url: str, ops: int) -> None:
    namespace = f"bench-langchain-{uuid.uuid4().hex[:8]}"
    client = redis_asyncio.Redis.from_url(url)
    raw_keys = [f"raw:{key}" for key in KEYS]
    try:
        await client.mset({key: bytes(100) for key in raw_keys})
        async with DmemByteStore(url, namespace=namespace) as store:
            await store.amset(PAIRS)
            await bench.compare(
                "amget 10 (Redis)",
                lambda: store.amget(KEYS),
                lambda: client.mget(raw_keys),
                reference="redis-py MGET",
                ops=ops,
                items_per_op=10,
            )
        await client.delete(*raw_keys)
    finally:
        await client.aclose()


async def run(quick: bool, redis: str) -> bool:
    ops = 200 if quick else 1000
    bench = Bench("langchain-dmem: DmemByteStore vs the dmem calls under it", rounds=5)
    await _rows(bench, "memory", "memory://bench-langchain", ops, sync=False)
    with tempfile.TemporaryDirectory() as tmp:
        await _rows(bench, "SQLite", f"sqlite:///{Path(tmp) / 'bench.db'}", ops, sync=True)
    await _rows(bench, "Redis", redis, ops, sync=True)
    await _redis_py_row(bench, redis, ops)
    return bench.report()


def main() -> int:
    args = parse_args(__doc__ or "")
    with redis_url() as url:
        ok = asyncio.run(run(args.quick, url))
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
