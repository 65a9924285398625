"""What the Cache's invalidation channel costs on the backends the cache helper owns.

* SQLite: a ``set`` on a file whose change log is on (the triggers a ``Cache`` with
  ``invalidation="auto"`` installs) against a ``set`` on a file without it; a Cache hit with
  the ``sqlite-poll`` channel running against an uncached SQLite ``get``.
* memory: a ``set`` through ``memory://NAME`` with another store's Cache listening against
  one with nobody listening; a Cache hit against a memory ``get``.

    python bench/bench_cache_invalidation.py [--quick]

Redis and PostgreSQL (push channels) are in bench/bench_invalidation.py.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dmem

from bench._harness import Bench, parse_args

VALUE = {"name": "Ada", "role": "admin", "score": 42}


async def main() -> None:
    args = parse_args(__doc__ or "")
    ops = 300 if args.quick else 2000
    bench = Bench("Cache invalidation channels: SQLite and memory")
    with tempfile.TemporaryDirectory() as tmp:
        logged = f"sqlite:///{Path(tmp) / 'logged.db'}"
        plain = f"sqlite:///{Path(tmp) / 'plain.db'}"
        async with dmem.open(logged, middleware=[dmem.Cache()]):
            pass  # installs the change log's triggers, which stay with the file
        async with (
            dmem.open(logged, share_connection=False) as writer,
            dmem.open(plain, share_connection=False) as reference,
        ):
            n = iter(range(10**9))
            await bench.compare(
                "set (change log on) vs set (no log)",
                lambda: writer.set(f"k{next(n) % 1000}", VALUE),
                lambda: reference.set(f"k{next(n) % 1000}", VALUE),
                reference="sqlite set, no change log",
                ops=ops,
            )
            async with dmem.open(logged, middleware=[dmem.Cache()]) as cached:
                await bench.compare(
                    "set (log on, a Cache polling) vs set (no log)",
                    lambda: writer.set(f"k{next(n) % 1000}", VALUE),
                    lambda: reference.set(f"k{next(n) % 1000}", VALUE),
                    reference="sqlite set, no change log",
                    ops=ops,
                )
                await cached.set("hot", VALUE)
                await asyncio.sleep(0.1)  # the log's report of that write, before the hits
                await bench.compare(
                    "Cache hit (sqlite-poll) vs sqlite get",
                    lambda: cached.get("hot"),
                    lambda: reference.get("k1"),
                    reference="sqlite get, uncached",
                    ops=ops * 5,
                )
    name = f"memory://bench-{uuid.uuid4().hex}"
    async with (
        dmem.open(name, middleware=[dmem.Cache()]) as cached,
        dmem.open(name) as writer,
        dmem.open(f"memory://bench-{uuid.uuid4().hex}") as alone,
    ):
        n = iter(range(10**9))
        await bench.compare(
            "set (a Cache listening) vs set (none)",
            lambda: writer.set(f"k{next(n) % 1000}", VALUE),
            lambda: alone.set(f"k{next(n) % 1000}", VALUE),
            reference="memory set, nobody listening",
            ops=ops * 5,
        )
        await cached.set("hot", VALUE)
        await bench.compare(
            "Cache hit (memory channel) vs memory get",
            lambda: cached.get("hot"),
            lambda: alone.get("k1"),
            reference="memory get",
            ops=ops * 5,
        )
    bench.report()


if __name__ == "__main__":
    asyncio.run(main())
