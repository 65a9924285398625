"""Settling an event loop's futures from worker threads, with one cheap wake-up.

For providers whose client is synchronous (the SQLite and embedded Chroma plugins): they run
each call in a thread of their own, and the thread must settle the caller's
``asyncio.Future`` on the loop's thread. ``loop.call_soon_threadsafe`` does that by writing
to the loop's self-pipe, a socket. On Linux, :func:`loop_inbox` gives each loop an inbox
instead: a deque plus an ``eventfd`` the loop watches (``add_reader``). The worker appends and
writes the eventfd; the loop drains both. That wakes the loop ~15 µs sooner (measured here: a
no-op round trip 22 µs against 35 µs at best, 53-66 µs against 70-83 µs typical), which
decides whether a thread-backed provider keeps up with its raw client. Elsewhere (no
``os.eventfd``), or on a loop without ``add_reader``, the inbox is ``call_soon_threadsafe``.

    inbox = loop_inbox(asyncio.get_running_loop())  # on the loop's thread
    ...                                             # hand (job, future, inbox) to a worker
    inbox.post(future, None, value)                 # in the worker: settle one future
    inbox.post_many([(future, error, None), ...])   # or many, with one wake-up

A future that is already done (cancelled, or failed by a timeout) is left as it is, so a
late result is dropped quietly.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import threading
import weakref
from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["LoopInbox", "Outcome", "loop_inbox"]

Outcome = tuple["asyncio.Future[Any]", "BaseException | None", Any]
"""``(future, error, value)``: fail ``future`` with ``error`` if that is set, else resolve it."""


class LoopInbox(Protocol):
    """One event loop's inbox; its methods are called in worker threads."""

    def post(self, future: asyncio.Future[Any], error: BaseException | None, value: Any) -> None:
        """Settle ``future`` on its loop's thread."""

    def post_many(self, outcomes: Iterable[Outcome]) -> None:
        """Settle each future, in order, with one wake-up of the loop."""


def _settle(future: asyncio.Future[Any], error: BaseException | None, value: Any) -> None:
    if future.done():  # cancelled, or timed out meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _settle_all(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        _settle(*outcome)


class _EventfdInbox:
    """Finished jobs of one loop: workers append and bump an eventfd the loop reads."""

    __slots__ = ("__weakref__", "_done", "_fd")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._done: collections.deque[Outcome] = collections.deque()
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        # Closed when the last holder goes: the loop (through its reader) and any job still
        # running, so a late worker never writes to a closed, perhaps reused, descriptor.
        weakref.finalize(self, os.close, self._fd)
        loop.add_reader(self._fd, self._drain)

    def post(self, future: asyncio.Future[Any], error: BaseException | None, value: Any) -> None:
        self._done.append((future, error, value))  # before the write: no lost wake-up
        os.eventfd_write(self._fd, 1)

    def post_many(self, outcomes: Iterable[Outcome]) -> None:
        self._done.extend(outcomes)
        os.eventfd_write(self._fd, 1)

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._fd)  # resets the counter
        done = self._done
        while done:
            _settle(*done.popleft())


class _CallSoonInbox:
    """The portable inbox: ``call_soon_threadsafe``."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak: this inbox is the loop's value in _INBOXES, which must not keep it alive.
        self._loop = weakref.ref(loop)

    def post(self, future: asyncio.Future[Any], error: BaseException | None, value: Any) -> None:
        self._call(_settle, future, error, value)

    def post_many(self, outcomes: Iterable[Outcome]) -> None:
        self._call(_settle_all, list(outcomes))

    def _call(self, fn: Any, *args: Any) -> None:
        loop = self._loop()
        # Gone, or closed (RuntimeError): nobody is waiting any more.
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn, *args)


_INBOXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopInbox]
_INBOXES = weakref.WeakKeyDictionary()
_INBOXES_GUARD = threading.Lock()


def loop_inbox(loop: asyncio.AbstractEventLoop) -> LoopInbox:
    """The inbox of ``loop`` (made on first use). Call it on the loop's own thread."""
    inbox = _INBOXES.get(loop)
    if inbox is None:
        with _INBOXES_GUARD:
            inbox = _INBOXES.get(loop)
            if inbox is None:
                try:
                    inbox = _EventfdInbox(loop)
                except (AttributeError, NotImplementedError, OSError):
                    # No os.eventfd (not Linux), or a loop without add_reader.
                    inbox = _CallSoonInbox(loop)
                _INBOXES[loop] = inbox
    return inbox
