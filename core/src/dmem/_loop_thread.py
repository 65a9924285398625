"""dmem's one background event loop per process, which the sync API runs on.

``run_sync(coro)`` hands a coroutine to that loop and blocks the calling thread until it
is done. The loop's thread is started by the first call, is a daemon, and is stopped at
interpreter exit after the sync stores still open are closed (so SQLite files are
checkpointed and connections said goodbye to). Many threads may call at once: each call
is one task on the loop, so calls from different threads run concurrently there, and one
thread's calls stay in order (it waits for each).

Why a loop thread rather than ``asyncio.run`` per call: providers hold connections,
pools and worker threads that belong to the loop that opened them, so every call on a
store must run on that same loop, and opening a store per call would cost milliseconds.

The cost of a call is two thread switches. The hand-off avoids what it can: the caller
wakes the loop through an eventfd (``call_soon_threadsafe`` where there is none) and then
waits on a bare ``_thread`` lock that the task itself releases when the coroutine is done,
without the condition variable and result plumbing of ``concurrent.futures`` (docs/sync.md
has the figures).

Calling from the loop's own thread (a sync call inside a coroutine or callback that runs
on it) would wait for itself forever; it raises :class:`SyncCallInLoopError` instead. After
``os.fork()`` the child starts a loop thread of its own on its first call; the stores the
parent opened belong to the parent's loop and raise :class:`NotInitializedError` there.
"""

from __future__ import annotations

import _thread
import asyncio
import atexit
import collections
import contextlib
import os
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, TypeVar

from .errors import NotInitializedError, SyncCallInLoopError

__all__ = ["LoopThread", "current_generation", "loop_thread", "run_sync"]

T = TypeVar("T")

_EXIT_CLOSE_TIMEOUT = 10.0  # seconds the exit hook gives the open stores to close


class _Call:
    """One blocking call: the lock the caller waits on, and the outcome the loop leaves."""

    __slots__ = ("error", "lock", "value")

    def __init__(self) -> None:
        self.lock = _thread.allocate_lock()
        self.lock.acquire()
        self.value: Any = None
        self.error: BaseException | None = None

    async def settle(self, coro: Coroutine[Any, Any, Any]) -> None:
        # The task the loop runs: ``coro``, then the caller's lock released from the same
        # step. (A done-callback would run one loop iteration later, ~3-5 us a call.)
        try:
            self.value = await coro
        except BaseException as exc:  # noqa: BLE001 - the caller's to raise, not the loop's
            self.error = exc
        finally:
            self.lock.release()


class LoopThread:
    """An event loop running forever in a daemon thread, with a blocking ``run``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        # Calls reach the loop through a deque and an eventfd the loop watches where Linux
        # has one (the wake-up is ~15 us sooner than call_soon_threadsafe's self-pipe, see
        # dmem.threads), else through call_soon_threadsafe.
        self._inbox: collections.deque[tuple[Coroutine[Any, Any, Any], _Call]] = collections.deque()
        self._eventfd = -1
        if hasattr(os, "eventfd"):
            self._eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self.loop.add_reader(self._eventfd, self._drain)
        self.generation = _generation
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="dmem-sync-loop", daemon=True)
        self._thread.start()
        self._ready.wait()
        self.ident = self._thread.ident
        self._closeables: weakref.WeakSet[Any] = weakref.WeakSet()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            if self._eventfd >= 0:
                self.loop.remove_reader(self._eventfd)
                os.close(self._eventfd)
            self.loop.close()

    def _start(self, coro: Coroutine[Any, Any, Any], call: _Call) -> None:
        self.loop.create_task(call.settle(coro))

    def _drain(self) -> None:
        # The eventfd's reader: start every call posted since the last wake-up.
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._eventfd)
        inbox, create_task = self._inbox, self.loop.create_task
        while inbox:
            coro, call = inbox.popleft()
            create_task(call.settle(coro))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop; block until it is done; its result or its exception."""
        if threading.get_ident() == self.ident:
            coro.close()
            raise SyncCallInLoopError(
                "a dmem sync call was made on dmem's own event-loop thread (from a coroutine "
                "or callback running there), where it would wait for itself forever; use the "
                "async API there"
            )
        if not self._thread.is_alive():
            coro.close()
            raise NotInitializedError("dmem's event-loop thread has stopped (interpreter exit)")
        call = _Call()
        if self._eventfd >= 0:
            self._inbox.append((coro, call))
            os.eventfd_write(self._eventfd, 1)
        else:
            self.loop.call_soon_threadsafe(self._start, coro, call)
        try:
            call.lock.acquire()
        except BaseException:
            # KeyboardInterrupt while waiting: the call goes on to its end on the loop (a
            # write is not torn in half); the caller gets the interrupt now.
            raise
        if call.error is not None:
            error = call.error
            call.error = None  # no reference cycle through the traceback
            raise error
        result: T = call.value
        return result

    def register(self, closeable: Any) -> None:
        """Have ``closeable._close_at_exit()`` awaited at interpreter exit if still alive."""
        self._closeables.add(closeable)

    def stop(self) -> None:
        """Close what is still open (bounded wait), then stop the loop and join its thread."""
        if not self._thread.is_alive():
            return
        pending = list(self._closeables)
        if pending:

            async def close_all() -> None:
                await asyncio.wait_for(
                    asyncio.gather(*(c._close_at_exit() for c in pending), return_exceptions=True),
                    _EXIT_CLOSE_TIMEOUT,
                )

            with contextlib.suppress(BaseException):
                self.run(close_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=_EXIT_CLOSE_TIMEOUT)


_lock = threading.Lock()
_current: LoopThread | None = None
_generation = 0  # bumped in a forked child: objects of the parent's loop are not usable


def loop_thread() -> LoopThread:
    """The process's loop thread, started on first use."""
    current = _current
    if current is not None:
        return current
    return _start_loop_thread()


def _start_loop_thread() -> LoopThread:
    global _current
    with _lock:
        if _current is None:
            _current = LoopThread()
        return _current


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on dmem's background event loop and return its result (blocking).

    The sync API is built on it, and adapters may use it to run async code of their own on
    the loop where the stores they open with it live. Raises :class:`SyncCallInLoopError`
    when called on that loop's own thread.
    """
    if not asyncio.iscoroutine(coro):
        from .errors import InvalidArgumentError

        raise InvalidArgumentError(f"run_sync takes a coroutine, got {type(coro).__name__}")
    return loop_thread().run(coro)


def _after_fork_in_child() -> None:
    # The parent's loop thread does not exist in the child (fork copies only the calling
    # thread), and its loop's selector and connections are shared with the parent: start
    # afresh on the next call, and mark the parent's stores as belonging to another loop.
    global _current, _generation, _lock
    _current = None
    _generation += 1
    _lock = threading.Lock()


def _at_exit() -> None:
    current = _current
    if current is not None and current.generation == _generation:
        current.stop()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
# atexit runs its hooks last-registered-first, and weakref.finalize runs the finalizers still
# pending from a hook of its own, registered when the process makes its first finalize. Make
# sure that one is registered before ours, so ours runs first: the stores close while what
# they need is still there (dmem.threads' inbox eventfd is closed by a finalizer; closed
# first, the SQLite worker died writing to it and the exit hook waited out its 10 s).
weakref.finalize(threading.Event(), int)  # a finalizer of a dead object: only registers
atexit.register(_at_exit)


def current_generation() -> int:
    """How many forks deep this process is; a loop thread of another generation is gone."""
    return _generation
