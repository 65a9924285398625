"""Automatic pipelining: calls that arrive while the backend is busy go out together.

An agent server runs hundreds of tasks on one event loop. Sent one by one, each call pays
the client library's per-command Python (a pooled connection, a write, a read, a release):
that, not the server, caps throughput. A :class:`Coalescer` lets a provider send a call at
once while fewer than ``slots`` calls or batches of its are running, and makes the calls
that arrive while every slot is busy wait; when a slot frees, all of them (up to
``max_batch``) go to the backend together, as one batch that the provider runs in one round
trip (one Redis pipeline, one ``= ANY($1)`` query)::

    coalescer: Coalescer[str, bytes | None] = Coalescer(fetch_batch, slots=2)

    async def get(key):
        if coalescer.take():            # a slot is free: this call goes out alone, now
            try:
                return await fetch_one(key)
            finally:
                coalescer.give()        # frees the slot; starts a batch if calls wait
        return await coalescer.submit(key)  # waits for the next batch's result

Nothing waits on a timer: a lone call goes out at once, with no added latency; a batch
forms only from calls that would otherwise have waited for a connection or queued behind
each other. ``fetch_batch(items)`` gets the waiting calls' items in arrival order and
returns one outcome per item, in the same order: its result, or an exception instance that
only that caller raises (so give each caller its own, mapped, instance). If it raises
instead, every caller of the batch raises that one exception object: a provider should
catch what it can and return outcomes.

Each batch runs in a task of its own, so a caller cancelled while it waits (its own
timeout, say) never disturbs the others: its item is left out if the batch has not started
yet, its result is dropped if it has. A caller's calls stay in order because it waits for
each before making the next.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from .errors import InvalidArgumentError

__all__ = ["Coalescer"]

T = TypeVar("T")
R = TypeVar("R")

# What fetch_batch returns: per item, its result or the exception its caller raises.
BatchRunner = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[T, R]):
    """Up to ``slots`` calls or batches at a time; see the module docstring."""

    __slots__ = ("_free", "_max_batch", "_queue", "_run_batch", "_running", "batches", "items")

    def __init__(
        self, run_batch: BatchRunner[T, R], *, slots: int = 1, max_batch: int = 1024
    ) -> None:
        if slots < 1 or max_batch < 1:
            raise InvalidArgumentError("Coalescer: slots and max_batch must be at least 1")
        self._run_batch = run_batch
        self._free = slots
        self._max_batch = max_batch
        self._queue: collections.deque[tuple[T, asyncio.Future[R]]] = collections.deque()
        self._running: set[asyncio.Task[None]] = set()  # strong references to batch tasks
        self.batches = 0  # batches run so far, and the items they carried (for tests, stats)
        self.items = 0

    def take(self) -> bool:
        """Take a free slot for a call of the caller's own (then :meth:`give` it back
        exactly once); False when every slot is busy: :meth:`submit` the call instead."""
        if self._free and not self._queue:
            self._free -= 1
            return True
        return False

    def give(self) -> None:
        """Give back a slot taken by :meth:`take`; starts a batch if calls are waiting."""
        self._free += 1
        while self._queue and self._free:  # each _start takes a slot or empties the queue
            self._start()

    async def submit(self, item: T) -> R:
        """Wait for the next batch to carry ``item``; its outcome."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._free:  # every slot was given back before this call queued
            self._start()
        return await future

    def _start(self) -> None:
        queue = self._queue
        batch: list[tuple[T, asyncio.Future[R]]] = []
        while queue and len(batch) < self._max_batch:
            item, future = queue.popleft()
            if not future.done():  # a cancelled caller's item is left out
                batch.append((item, future))
        if not batch:
            return
        self._free -= 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            outcomes = await self._run_batch([item for item, _ in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(
                    f"a batch of {len(batch)} calls returned {len(outcomes)} outcomes"
                )
        except asyncio.CancelledError:  # the loop is closing: so are the callers' waits
            for _, future in batch:
                future.cancel()
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        finally:
            self.give()

    async def aclose(self) -> None:
        """Wait for the running batches (their callers get their outcomes)."""
        while self._running:
            await asyncio.wait(list(self._running))
