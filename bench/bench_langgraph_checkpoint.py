"""AsyncDmemSaver against LangGraph's own savers on the same database, in one process.

    python bench/bench_langgraph_checkpoint.py [--quick]

Rows (ratio = dmem ops/s / reference ops/s; no targets, these are measurements):

* ``aput``: a checkpoint with three channel values, each put a new checkpoint of one thread;
* ``aget_tuple``: the latest checkpoint of a thread of 20 (with its values and 2 writes);
* ``alist limit=10``: the 10 newest of that thread.

SQLite: ``AsyncDmemSaver`` on ``sqlite://`` vs ``AsyncSqliteSaver`` (langgraph-checkpoint-
sqlite), each on its own file. PostgreSQL: vs ``AsyncPostgresSaver`` (langgraph-checkpoint-
postgres) on one server (``DMEM_TEST_POSTGRES_URL`` or a throwaway one). A reference whose
package is missing is skipped.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.dmem import AsyncDmemSaver

from bench._harness import Bench, ServerUnavailable, parse_args, postgres_url

VALUES = {
    "messages": [{"role": "user", "content": "hello " * 20}] * 4,
    "count": 7,
    "profile": {"name": "Ada", "tags": ["a", "b"]},
}


def _config(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    conf: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


class _Thread:
    """Puts successive checkpoints of one thread, as a running graph does."""

    def __init__(self, saver: BaseCheckpointSaver[Any], thread_id: str) -> None:
        self.saver = saver
        self.thread_id = thread_id
        self.parent: str | None = None
        self.version: Any = None

    async def put(self) -> None:
        self.version = self.saver.get_next_version(self.version, None)
        cp = empty_checkpoint()
        cp["channel_values"] = dict(VALUES)
        cp["channel_versions"] = {k: self.version for k in VALUES}
        config = _config(self.thread_id, self.parent)
        versions = dict(cp["channel_versions"])
        stored = await self.saver.aput(config, cp, {"source": "loop", "step": 1}, versions)
        self.parent = stored["configurable"]["checkpoint_id"]


async def _rows(
    bench: Bench, label: str, ours: AsyncDmemSaver, ref: BaseCheckpointSaver[Any], name: str
) -> None:
    ops = bench.ops  # type: ignore[attr-defined]
    a, b = _Thread(ours, f"put-{uuid.uuid4().hex}"), _Thread(ref, f"put-{uuid.uuid4().hex}")
    await bench.compare(f"aput ({label})", a.put, b.put, reference=name, ops=ops)
    readers: list[Callable[[], Awaitable[object]]] = []
    lists: list[Callable[[], Awaitable[object]]] = []
    for saver in (ours, ref):
        thread = _Thread(saver, f"read-{uuid.uuid4().hex}")
        for _ in range(20):
            await thread.put()
        assert thread.parent is not None
        writes = [("messages", {"content": "w"}), ("count", 8)]
        await saver.aput_writes(_config(thread.thread_id, thread.parent), writes, "task-1")
        config = _config(thread.thread_id)

        async def read(s: BaseCheckpointSaver[Any] = saver, c: RunnableConfig = config) -> object:
            return await s.aget_tuple(c)

        async def listed(s: BaseCheckpointSaver[Any] = saver, c: RunnableConfig = config) -> object:
            return [t async for t in s.alist(c, limit=10)]

        readers.append(read)
        lists.append(listed)
    await bench.compare(f"aget_tuple ({label})", *readers, reference=name, ops=ops)
    await bench.compare(f"alist limit=10 ({label})", *lists, reference=name, ops=max(20, ops // 5))


async def sqlite_rows(bench: Bench, tmp: Path) -> None:
    try:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    except ImportError:
        print("(SQLite rows skipped: pip install langgraph-checkpoint-sqlite)")
        return
    async with (
        AsyncDmemSaver.from_conn_string(f"sqlite:///{tmp / 'dmem.db'}") as ours,
        AsyncSqliteSaver.from_conn_string(str(tmp / "ref.db")) as ref,
    ):
        await ref.setup()
        await _rows(bench, "SQLite", ours, ref, "AsyncSqliteSaver")


async def postgres_rows(bench: Bench, url: str) -> None:
    try:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    except ImportError:
        print("(PostgreSQL rows skipped: pip install langgraph-checkpoint-postgres)")
        return
    async with (
        AsyncDmemSaver.from_conn_string(url, namespace=f"bench-{uuid.uuid4().hex}") as ours,
        AsyncPostgresSaver.from_conn_string(url) as ref,
    ):
        await ref.setup()
        await _rows(bench, "PostgreSQL", ours, ref, "AsyncPostgresSaver")


async def main() -> None:
    args = parse_args(__doc__ or "")
    bench = Bench("LangGraph checkpointers", min_seconds=1.0 if args.quick else 3.0)
    bench.ops = 50 if args.quick else 300  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        await sqlite_rows(bench, Path(tmp))
    try:
        with postgres_url() as url:
            await postgres_rows(bench, url)
    except ServerUnavailable as exc:
        print(f"(PostgreSQL rows skipped: {exc})")
    bench.report()


if __name__ == "__main__":
    asyncio.run(main())
