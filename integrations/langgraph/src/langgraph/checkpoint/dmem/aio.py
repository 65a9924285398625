"""``AsyncDmemSaver``: a LangGraph checkpointer over an async ``dmem.Store``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager
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

__all__ = ["AsyncDmemSaver"]

T = TypeVar("T")


class AsyncDmemSaver(BaseCheckpointSaver[str]):
    """Checkpoints of LangGraph graphs in any dmem store, natively async.

    ``AsyncDmemSaver(store)`` takes an open ``dmem.Store`` (the caller keeps closing it);
    ``AsyncDmemSaver.from_conn_string(url, **options)`` opens one with ``dmem.open`` and
    closes it on exit::

        async with AsyncDmemSaver.from_conn_string("redis://localhost/0", namespace="lg") as cp:
            graph = builder.compile(checkpointer=cp)

    Every method runs on the loop the store was opened on. The blocking methods (``put``,
    ``get_tuple``...) may be called from other threads while that loop runs; on the loop's
    own thread they raise ``dmem.SyncCallInLoopError``.
    """

    store: dmem.Store

    def __init__(self, store: dmem.Store, *, serde: SerializerProtocol | None = None) -> None:
        if not isinstance(store, dmem.Store):
            raise dmem.InvalidArgumentError(
                f"AsyncDmemSaver takes an open dmem.Store, not {type(store).__name__} "
                "(use AsyncDmemSaver.from_conn_string(url) to open one)"
            )
        super().__init__(serde=serde)
        self.store = store
        self._core = Core(store, self.serde)
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None

    def __repr__(self) -> str:
        return f"<AsyncDmemSaver over {self.store!r}>"

    @classmethod
    @asynccontextmanager
    async def from_conn_string(
        cls, url: str, *, serde: SerializerProtocol | None = None, **options: Any
    ) -> AsyncIterator[AsyncDmemSaver]:
        """A saver over ``dmem.open(url, **options)``, closed on exit."""
        async with dmem.open(url, **options) as store:
            yield cls(store, serde=serde)

    def get_next_version(self, current: str | None, channel: None) -> str:
        return next_version(current)

    # --- async API ---------------------------------------------------------------------------
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._core.get_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,  # noqa: A002 (LangGraph's name)
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        async for item in self._core.search(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._core.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._core.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._core.delete_thread(thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._core.delete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._core.copy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._core.prune(thread_ids, strategy)

    # --- blocking API, from other threads ----------------------------------------------------
    def _block(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            coro.close()
            raise dmem.SyncCallInLoopError(
                "AsyncDmemSaver's blocking methods run only from another thread than its "
                "event loop's; use the async ones (await saver.aget_tuple(...), "
                "graph.ainvoke(...)) or DmemSaver"
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._block(self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,  # noqa: A002 (LangGraph's name)
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        async def collect() -> list[CheckpointTuple]:
            return [t async for t in self.alist(config, filter=filter, before=before, limit=limit)]

        yield from self._block(collect())

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._block(self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._block(self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._block(self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._block(self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._block(self.acopy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._block(self.aprune(thread_ids, strategy=strategy))
