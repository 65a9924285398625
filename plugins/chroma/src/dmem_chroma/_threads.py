"""Worker threads that run Chroma's synchronous client for the event loop, with one hop a call.

Why not ``asyncio.to_thread`` / ``run_in_executor`` with ``asyncio.wait_for``: on top of
the thread switch, they build a concurrent future, a work item, a wrapping asyncio
future and (for the timeout) a task per call; measured here, a no-op round trip costs
~78 µs that way against ~30 µs for a bare queue hand-off. A Chroma ``get`` by id takes
~300 µs in-process, so the difference decides whether dmem keeps up with the raw client.

A job is ``(fn, args, future, inbox)`` on a ``SimpleQueue``; a worker runs it and posts
the outcome to the caller's loop through that loop's inbox (:func:`dmem.threads.loop_inbox`:
an ``eventfd`` the loop watches on Linux, ~15 µs quicker than ``call_soon_threadsafe``). The
timeout is one timer on the loop that fails the future with ``ProviderUnavailableError``; a
job that outlives it still finishes in its thread, and its result is dropped.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from dmem import ProviderUnavailableError
from dmem.threads import LoopInbox, loop_inbox

__all__ = ["CallThreads"]

T = TypeVar("T")

_Job = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]", LoopInbox]


def _expire(future: asyncio.Future[Any], what: str, timeout: float) -> None:
    if not future.done():
        future.set_exception(
            ProviderUnavailableError(f"{what} did not answer within {timeout:g} s")
        )


class CallThreads:
    """Up to ``size`` daemon threads, started on first use, shared by every caller."""

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._guard = threading.Lock()

    async def call(
        self, fn: Callable[..., T], args: tuple[Any, ...], *, timeout: float, what: str
    ) -> T:
        """``fn(*args)`` in a worker; ``ProviderUnavailableError`` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, args, future, loop_inbox(loop)))
        if self._idle == 0 and len(self._threads) < self._size:
            self._grow()
        timer = loop.call_later(timeout, _expire, future, what, timeout)
        try:
            return await future
        finally:
            timer.cancel()

    def _grow(self) -> None:
        with self._guard:
            if len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _work(self) -> None:
        get = self._queue.get
        while True:
            with self._guard:
                self._idle += 1
            fn, args, future, inbox = get()
            with self._guard:
                self._idle -= 1
            try:
                value, error = fn(*args), None
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                value, error = None, exc
            inbox.post(future, error, value)
            del fn, args, future, inbox, value, error  # hold nothing while idle
