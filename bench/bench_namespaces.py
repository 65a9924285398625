"""100 namespaces on one backend: what each way of opening them costs.

    python bench/bench_namespaces.py [--count 100] [--backends redis,sqlite]

For each backend, three ways to hold ``--count`` stores on ``--count`` namespaces, each in a
fresh child process (so its memory figures start from the same place):

* ``with_namespace``: one ``dmem.open``, then ``store.with_namespace(name)`` per namespace;
* ``open (shared)``: ``dmem.open(url, namespace=name)`` per namespace (the default: stores
  of the process on one backend share its connection);
* ``open (own)``: the same with ``share_connection=false``: a connection per store, as every
  store had before connections were shared.

After opening, each store does one ``set`` and one ``get`` (so a pool has opened what it
uses). Reported: the connections the Redis server counts (``INFO clients``, less the
measuring client's own) or the process's ``dmem-sqlite`` worker threads, for all the stores
(the first one's included); the time to open
all of them (best of 3 runs of the child); the growth of the process's RSS and of Python's
traced allocations (``tracemalloc``, a separate child: tracing slows the opening) over a
baseline taken after one store was opened and used (imports done). Not a test: it prints.

Starts a throwaway ``redis-server`` from PATH (or uses ``DMEM_BENCH_REDIS_URL``); SQLite
runs on a file in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import redis_url

WAYS = ("with_namespace", "open (shared)", "open (own)")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _redis_clients(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        # Less this measuring connection itself.
        return int(client.info("clients")["connected_clients"]) - 1
    finally:
        client.close()


def _workers() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "dmem-sqlite")


async def _child(backend: str, url: str, way: str, count: int, trace: bool) -> dict[str, Any]:
    import dmem

    def connections() -> int:
        return _redis_clients(url) if backend == "redis" else _workers()

    base_connections = connections()
    root = await dmem.open(url, namespace="bench-root")
    await root.set("k", 0)
    assert await root.get("k") == 0
    if trace:
        tracemalloc.start()
    rss = _rss_bytes()
    start = time.perf_counter()
    stores = []
    for i in range(count):
        name = f"bench-{i}"
        if way == "with_namespace":
            stores.append(await root.with_namespace(name))
        elif way == "open (shared)":
            stores.append(await dmem.open(url, namespace=name))
        else:
            stores.append(await dmem.open(url, namespace=name, share_connection=False))
    opened = time.perf_counter() - start
    for i, store in enumerate(stores):
        await store.set("k", i)
        assert await store.get("k") == i
    result: dict[str, Any] = {
        "open_s": opened,
        "connections": connections() - base_connections,
        "rss": _rss_bytes() - rss,
    }
    if trace:
        result["traced"] = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    for store in [*stores, root]:
        await store.clear()
        await store.aclose()
    return result


def _run_child(backend: str, url: str, way: str, count: int, trace: bool) -> dict[str, Any]:
    args = [sys.executable, __file__, "--child", backend, url, way, str(count)]
    if trace:
        args.append("--trace")
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{backend} {way} failed:\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _measure(backend: str, url: str, count: int) -> list[str]:
    rows = []
    unit = "connection" if backend == "redis" else "thread"
    for way in WAYS:
        runs = [_run_child(backend, url, way, count, trace=False) for _ in range(3)]
        traced = _run_child(backend, url, way, count, trace=True)
        best = min(runs, key=lambda r: r["open_s"])
        rss = sorted(r["rss"] for r in runs)[1]  # the median of three
        rows.append(
            f"| {backend} | `{way}` | {best['connections']} {unit}"
            f"{'' if best['connections'] == 1 else 's'} "
            f"| {best['open_s'] * 1000:,.1f} ms ({best['open_s'] / count * 1e6:,.0f} µs each) "
            f"| {rss / 1024:,.0f} KiB | {traced['traced'] / 1024:,.0f} KiB |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--backends", default="redis,sqlite")
    parser.add_argument("--child", nargs=4, metavar=("BACKEND", "URL", "WAY", "COUNT"))
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args()
    if args.child:
        backend, url, way, count = args.child
        result = asyncio.run(_child(backend, url, way, int(count), args.trace))
        print(json.dumps(result))
        return
    rows: list[str] = []
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    with tempfile.TemporaryDirectory() as workdir:
        for backend in backends:
            if backend == "sqlite":
                rows += _measure("sqlite", f"sqlite:///{Path(workdir) / 'ns.db'}", args.count)
            elif backend == "redis":
                with redis_url() as url:
                    rows += _measure("redis", url, args.count)
            else:
                raise SystemExit(f"unknown backend {backend!r} (redis, sqlite)")
    print(f"\n1 + {args.count} namespaces, opened and each used once (set + get)\n")
    print(
        "| backend | opened with | server connections / worker threads | open time "
        "| RSS growth | traced |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
