"""Worker threads that run Chroma's synchronous client for the event loop, with one hop a call.

Why not ``asyncio.to_thread`` / ``run_in_executor`` with ``asyncio.wait_for``: on top of
the thread switch, they build a concurrent future, a work item, a wrapping asyncio
future and (for the timeout) a task per call; measured here, a no-op round trip costs
~78 µs that way against ~30 µs for a bare queue hand-off. A Chroma ``get`` by id takes
~300 µs in-process, so the difference decides whether dmem keeps up with the raw client.

A job is ``(fn, args, future, inbox)`` on a ``SimpleQueue``; a worker runs it and posts
the outcome to the caller's loop through that loop's inbox (:func:`dmem.threads.loop_inbox`:
an ``eventfd`` the loop watches on Linux, ~15 µs quicker than ``call_soon_threadsafe``).

Timeouts: not a ``call_later`` timer per call (arming and cancelling one cost 5-12 µs a call,
measured here), but one :class:`_Watchdog` per loop that knows every call in flight on it and
keeps one timer, at the earliest deadline. A call past its deadline fails with
``ProviderUnavailableError``; its job still finishes in its thread, and its result is dropped.
"""

from __future__ import annotations

import asyncio
import math
import queue
import threading
import weakref
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


class _Watchdog:
    """The calls in flight on one event loop, and one timer that fails those past deadline.

    Holds no reference to its loop (it is the loop's value in ``_WATCHDOGS``, keyed
    weakly by the loop): the loop is passed in. A timer is added only for a deadline
    earlier than every sweep already scheduled, so with one timeout per store a steady
    stream of calls keeps one timer alive, not one per call. A sweep that finds nothing
    due (its calls finished) just schedules the next one, if any call is in flight.
    """

    __slots__ = ("__weakref__", "_next", "_pending")

    def __init__(self) -> None:
        self._pending: dict[asyncio.Future[Any], tuple[float, str, float]] = {}
        self._next = math.inf  # when the earliest scheduled sweep runs

    def watch(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        timeout: float,
        what: str,
    ) -> None:
        deadline = loop.time() + timeout
        self._pending[future] = (deadline, what, timeout)
        if deadline < self._next:
            self._schedule(loop, deadline)

    def forget(self, future: asyncio.Future[Any]) -> None:
        self._pending.pop(future, None)

    def _schedule(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._next = when
        loop.call_at(when, self._sweep, loop, when)

    def _sweep(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if when != self._next:
            return  # superseded: an earlier sweep ran and scheduled its own successor
        now = max(loop.time(), when)  # the loop may run a timer a clock tick early
        for future, (deadline, what, timeout) in list(self._pending.items()):
            if deadline <= now:
                del self._pending[future]
                _expire(future, what, timeout)
        self._next = math.inf
        if self._pending:
            self._schedule(loop, min(deadline for deadline, _, _ in self._pending.values()))


_WATCHDOGS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watchdog]
_WATCHDOGS = weakref.WeakKeyDictionary()


def _watchdog(loop: asyncio.AbstractEventLoop) -> _Watchdog:
    watchdog = _WATCHDOGS.get(loop)
    if watchdog is None:
        watchdog = _WATCHDOGS[loop] = _Watchdog()
    return watchdog


class CallThreads:
    """Up to ``size`` daemon threads, shared by every caller.

    A thread is started when a call finds more calls in flight (queued or running) than
    threads: a caller that calls again as soon as it has its answer keeps one thread,
    and a burst of calls gets up to ``size``.
    """

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._in_flight = 0  # calls queued or running (done once a worker has the result)
        self._guard = threading.Lock()

    async def call(
        self, fn: Callable[..., T], args: tuple[Any, ...], *, timeout: float, what: str
    ) -> T:
        """``fn(*args)`` in a worker; ``ProviderUnavailableError`` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._guard:
            self._in_flight += 1
            started = len(self._threads)
            grow = self._in_flight > started and started < self._size
        self._queue.put((fn, args, future, loop_inbox(loop)))
        if grow:
            self._grow()
        watchdog = _watchdog(loop)
        watchdog.watch(loop, future, timeout, what)
        try:
            return await future
        finally:
            watchdog.forget(future)

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
        guard = self._guard
        while True:
            fn, args, future, inbox = get()
            try:
                value, error = fn(*args), None
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                value, error = None, exc
            # Done before the caller hears back: a caller that calls again as soon as it
            # has its answer must find this thread free, not start another one.
            with guard:
                self._in_flight -= 1
            inbox.post(future, error, value)
            del fn, args, future, inbox, value, error  # hold nothing while idle
