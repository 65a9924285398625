"""LangGraph checkpointers over dmem: ``DmemSaver`` (blocking) and ``AsyncDmemSaver``.

Both keep checkpoints, channel values and pending writes as dmem keys (layout in
``_keys.py``), serialized with the saver's ``serde``, in any dmem backend: SQLite,
PostgreSQL, Redis, memory...
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

import dmem

from ._core import Core, next_version
from .aio import AsyncDmemSaver

__all__ = ["AsyncDmemSaver", "DmemSaver"]

T = TypeVar("T")


class DmemSaver(BaseCheckpointSaver[str]):
    """Checkpoints of LangGraph graphs in any dmem store, with blocking methods.

    ``DmemSaver(kv)`` takes an open ``dmem.SyncStore`` (from ``dmem.open_sync``; the caller
    keeps closing it); ``DmemSaver.from_conn_string(url, **options)`` opens one and closes it
    on exit::

        with DmemSaver.from_conn_string("sqlite:///graph.db", namespace="lg") as checkpointer:
            graph = builder.compile(checkpointer=checkpointer)
            graph.invoke(inputs, {"configurable": {"thread_id": "1"}})

    The work runs on dmem's loop thread (``dmem.run_sync``). The async methods (``aput``...)
    run the blocking ones in a worker thread, so a graph's ``ainvoke`` works too; for
    async code ``AsyncDmemSaver`` is the native one.
    """

    kv: dmem.SyncStore

    def __init__(self, kv: dmem.SyncStore, *, serde: SerializerProtocol | None = None) -> None:
        if not isinstance(kv, dmem.SyncStore):
            raise dmem.InvalidArgumentError(
                f"DmemSaver takes an open dmem.SyncStore, not {type(kv).__name__} "
                "(use DmemSaver.from_conn_string(url) to open one, or AsyncDmemSaver for a "
                "dmem.Store)"
            )
        super().__init__(serde=serde)
        self.kv = kv
        # kv.store lives on dmem's loop thread; the core's coroutines run only there.
        self._core = Core(kv.store, self.serde)

    def __repr__(self) -> str:
        return f"<DmemSaver over {self.kv.store!r}>"

    @classmethod
    @contextmanager
    def from_conn_string(
        cls, url: str, *, serde: SerializerProtocol | None = None, **options: Any
    ) -> Iterator[DmemSaver]:
        """A saver over ``dmem.open_sync(url, **options)``, closed on exit."""
        with dmem.open_sync(url, **options) as kv:
            yield cls(kv, serde=serde)

    def get_next_version(self, current: str | None, channel: None) -> str:
        return next_version(current)

    # --- blocking API ------------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return dmem.run_sync(coro)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._run(self._core.get_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,  # noqa: A002 (LangGraph's name)
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        async def collect() -> list[CheckpointTuple]:
            items = self._core.search(config, filter=filter, before=before, limit=limit)
            return [t async for t in items]

        yield from self._run(collect())

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._run(self._core.put(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._run(self._core.put_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._run(self._core.delete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._run(self._core.delete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._run(self._core.copy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._run(self._core.prune(thread_ids, strategy))

    # --- async API: the blocking one in a worker thread --------------------------------------
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,  # noqa: A002 (LangGraph's name)
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        def collect() -> list[CheckpointTuple]:
            return list(self.list(config, filter=filter, before=before, limit=limit))

        for item in await asyncio.to_thread(collect):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)
