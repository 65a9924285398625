"""DmemStore (async) against LangGraph's own stores, in one process.

    python bench/bench_langgraph_store.py [--quick]

Rows (ratio = dmem ops/s / reference ops/s; no targets, these are measurements):

* ``aput``: a new small item each time (a dict of three fields), in one namespace;
* ``aget``: one item of a namespace of 100;
* ``asearch limit=10``: the first page of that namespace, no filter;
* ``asearch filter``: a filter on one field that 10 of the 100 items pass.

PostgreSQL: ``DmemStore`` on ``postgresql://`` vs ``AsyncPostgresStore`` (langgraph-checkpoint-
postgres) on one server (``DMEM_TEST_POSTGRES_URL`` or a throwaway one). Memory:
``DmemStore`` on ``memory://`` vs ``InMemoryStore`` (a dict: the cost of dmem's layers).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langgraph.store.base import BaseStore
from langgraph.store.dmem import DmemStore
from langgraph.store.memory import InMemoryStore

from bench._harness import Bench, ServerUnavailable, parse_args, postgres_url


async def _rows(bench: Bench, label: str, ours: BaseStore, ref: BaseStore, name: str) -> None:
    ops = bench.ops  # type: ignore[attr-defined]
    counter = itertools.count()
    tag = uuid.uuid4().hex[:8]

    async def put(store: BaseStore) -> None:
        await store.aput(("bench", f"put-{tag}"), f"k{next(counter)}", {"a": 1, "b": "x", "c": []})

    for store in (ours, ref):
        for i in range(100):
            await store.aput(("bench", f"read-{tag}"), f"k{i:03}", {"n": i % 10, "text": "t" * 40})

    async def dmem_put() -> None:
        await put(ours)

    async def ref_put() -> None:
        await put(ref)

    def getter(store: BaseStore) -> Any:
        async def get() -> object:
            return await store.aget(("bench", f"read-{tag}"), "k050")

        return get

    def searcher(store: BaseStore, flt: dict[str, Any] | None) -> Any:
        async def search() -> object:
            return await store.asearch(("bench", f"read-{tag}"), filter=flt, limit=10)

        return search

    await bench.compare(f"aput ({label})", dmem_put, ref_put, reference=name, ops=ops)
    await bench.compare(f"aget ({label})", getter(ours), getter(ref), reference=name, ops=ops)
    await bench.compare(
        f"asearch limit=10 ({label})",
        searcher(ours, None),
        searcher(ref, None),
        reference=name,
        ops=max(20, ops // 5),
    )
    await bench.compare(
        f"asearch filter ({label})",
        searcher(ours, {"n": 3}),
        searcher(ref, {"n": 3}),
        reference=name,
        ops=max(20, ops // 5),
    )


async def postgres_rows(bench: Bench, url: str) -> None:
    try:
        from langgraph.store.postgres.aio import AsyncPostgresStore
    except ImportError:
        print("(PostgreSQL rows skipped: pip install langgraph-checkpoint-postgres)")
        return
    ours = DmemStore(url, namespace=f"bench-{uuid.uuid4().hex}")
    try:
        async with AsyncPostgresStore.from_conn_string(url) as ref:
            await ref.setup()
            await _rows(bench, "PostgreSQL", ours, ref, "AsyncPostgresStore")
    finally:
        await ours.aclose()


async def memory_rows(bench: Bench) -> None:
    ours = DmemStore(f"memory://bench-{uuid.uuid4().hex}")
    try:
        await _rows(bench, "memory", ours, InMemoryStore(), "InMemoryStore")
    finally:
        await ours.aclose()


async def main() -> None:
    args = parse_args(__doc__ or "")
    bench = Bench("LangGraph stores", min_seconds=1.0 if args.quick else 3.0)
    bench.ops = 50 if args.quick else 300  # type: ignore[attr-defined]
    await memory_rows(bench)
    try:
        with postgres_url() as url:
            await postgres_rows(bench, url)
    except ServerUnavailable as exc:
        print(f"(PostgreSQL rows skipped: {exc})")
    bench.report()


if __name__ == "__main__":
    asyncio.run(main())
