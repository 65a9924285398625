"""Worker threads that run Chroma's synchronous client for the event loop, with one hop a call.

Why not ``asyncio.to_thread`` / ``run_in_executor`` with ``asyncio.wait_for``: on top of
the thread switch, they build a concurrent future, a work item, a wrapping asyncio
future and (for the timeout) a task per call; measured here, a no-op round trip costs
~78 µs that way against ~30 µs for a bare queue hand-off. A Chroma ``get`` by id takes
~300 µs in-process, so the difference decides whether dmem keeps up with the raw client.

A job is ``(fn, args, future, inbox)`` on a ``SimpleQueue``; a worker runs it and posts
the outcome to the caller's loop through that loop's inbox. On Linux the inbox is a deque
plus an ``eventfd`` the loop watches (``add_reader``): the worker appends and writes the
eventfd, the loop drains both. That wakes the loop ~15 µs sooner than
``call_soon_threadsafe``, whose self-pipe is a socket (measured here: a no-op round trip
22 µs against 35 µs at best, 53-66 µs against 70-83 µs typical). Elsewhere, or on a loop
without ``add_reader``, the inbox is ``call_soon_threadsafe``. The timeout is one timer on
the loop that fails the future with ``ProviderUnavailableError``; a job that outlives it
still finishes in its thread, and its result is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from dmem import ProviderUnavailableError

__all__ = ["CallThreads"]

T = TypeVar("T")


class _Inbox(Protocol):
    def post(self, future: asyncio.Future[Any], error: BaseException | None, value: Any) -> None:
        """Called in a worker thread: settle ``future`` on its loop's thread."""


_Job = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]", _Inbox]


def _settle(future: asyncio.Future[Any], error: BaseException | None, value: Any) -> None:
    if future.done():  # timed out or cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _expire(future: asyncio.Future[Any], what: str, timeout: float) -> None:
    if not future.done():
        future.set_exception(
            ProviderUnavailableError(f"{what} did not answer within {timeout:g} s")
        )


class _EventfdInbox:
    """One loop's finished jobs: workers append and bump an eventfd the loop reads."""

    __slots__ = ("__weakref__", "_done", "_fd")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._done: collections.deque[tuple[asyncio.Future[Any], BaseException | None, Any]]
        self._done = collections.deque()
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        # Closed when the last holder goes: the loop (through its reader) and any job still
        # running, so a late worker never writes to a closed, perhaps reused, descriptor.
        weakref.finalize(self, os.close, self._fd)
        loop.add_reader(self._fd, self._drain)

    def post(self, future: asyncio.Future[Any], error: BaseException | None, value: Any) -> None:
        self._done.append((future, error, value))  # before the write: no lost wake-up
        os.eventfd_write(self._fd, 1)

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._fd)  # resets the counter
        done = self._done
        while done:
            _settle(*done.popleft())


class _LoopInbox:
    """The portable inbox: ``call_soon_threadsafe``."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak: this inbox is the loop's value in _INBOXES, which must not keep it alive.
        self._loop = weakref.ref(loop)

    def post(self, future: asyncio.Future[Any], error: BaseException | None, value: Any) -> None:
        loop = self._loop()
        # Gone, or closed (RuntimeError): nobody is waiting any more.
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, error, value)


_INBOXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox] = weakref.WeakKeyDictionary()
_INBOXES_GUARD = threading.Lock()


def _inbox(loop: asyncio.AbstractEventLoop) -> _Inbox:
    inbox = _INBOXES.get(loop)
    if inbox is None:
        with _INBOXES_GUARD:
            inbox = _INBOXES.get(loop)
            if inbox is None:
                try:
                    inbox = _EventfdInbox(loop)
                except (AttributeError, NotImplementedError, OSError):
                    # No os.eventfd (not Linux), or a loop without add_reader.
                    inbox = _LoopInbox(loop)
                _INBOXES[loop] = inbox
    return inbox


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
        self._queue.put((fn, args, future, _inbox(loop)))
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
