"""Suite test of the optional invalidation channel (``open_invalidation``, dmem._invalidation).

A provider that has one promises that a write made through *another* store (an
independent connection, as ``store_factory`` gives them) reaches the listener, naming the
key (or ``None``: any key), on the loop's thread, within the channel's ``bound`` (push
channels: promptly). A provider without it, or one that raises NotSupportedError in this
configuration, gets the clause reported as not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any, ClassVar

import dmem
import pytest
from dmem._invalidation import InvalidationChannel

from ._base import StorePool, SuiteBase
from ._marks import clause

__all__ = ["InvalidationTests"]

ALLOWANCE = 1.0  # seconds beyond the bound (push: beyond 0) on a loaded machine
CLOSE_WITHIN = 10.0  # seconds close() may take


def _loop_thread() -> int:
    """This thread's id when an event loop is running on it, else 0."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return 0
    return threading.get_ident()


class _Recorder:
    """A listener that writes down every call: (when, loop thread or 0, what, keys)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, int, str, frozenset[str] | None]] = []
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop the calls come on

    def invalidate(self, keys: Collection[str] | None) -> None:
        seen = None if keys is None else frozenset(keys)
        self.calls.append((time.monotonic(), _loop_thread(), "invalidate", seen))
        if self.loop is None:
            with contextlib.suppress(RuntimeError):
                self.loop = asyncio.get_running_loop()

    def channel_down(self) -> None:
        self.calls.append((time.monotonic(), _loop_thread(), "down", None))

    def channel_up(self) -> None:
        self.calls.append((time.monotonic(), _loop_thread(), "up", None))


Write = Callable[[dmem.Store], Awaitable[Any]]
_WRITES: list[tuple[str, str, Write]] = [
    ("set", "a", lambda s: s.set("a", 1)),
    ("set_many", "b", lambda s: s.set_many({"b": 1, "c": 2})),
    ("overwrite", "a", lambda s: s.set("a", 2, ttl=600)),
    ("expire", "a", lambda s: s.expire("a", 300)),
    ("persist", "a", lambda s: s.persist("a")),
    ("delete", "a", lambda s: s.delete("a")),
    ("delete_many", "c", lambda s: s.delete_many(["b", "c"])),
    ("clear", "d", lambda s: s.clear()),
]


class InvalidationTests(SuiteBase):
    _dmem_suite_class: ClassVar[bool] = True

    @clause("invalidation.delivery", requires="shared_connections")
    async def test_writes_elsewhere_reach_the_listener(
        self, store: dmem.Store, dmem_stores: StorePool
    ) -> None:
        opener = getattr(store.provider, "open_invalidation", None)
        if opener is None:
            self.lacks_optional("open_invalidation", "the provider has no invalidation channel")
        listener = _Recorder()
        try:
            channel = await opener(listener)
        except dmem.NotSupportedError as exc:
            self.lacks_optional("open_invalidation", f"it raised NotSupportedError ({exc})")
        try:
            assert isinstance(channel, InvalidationChannel), (
                f"open_invalidation returned {type(channel).__name__}, not an InvalidationChannel"
            )
            assert isinstance(channel.mode, str) and channel.mode, "the channel names no mode"
            bound = channel.bound
            assert bound is None or (isinstance(bound, float) and bound >= 0), (
                f"bound = {bound!r}: seconds as a float >= 0, or None for a push channel"
            )
            assert channel.up, "open_invalidation returned before the channel was up"
            other = await dmem_stores.open(middleware=())
            within = (bound or 0.0) + ALLOWANCE
            for name, key, write in _WRITES:
                if name == "clear":
                    await other.set("d", 1)
                seen = len(listener.calls)
                await write(other)
                deadline = time.monotonic() + within
                while not _covered(listener.calls[seen:], key):
                    if time.monotonic() > deadline:
                        pytest.fail(
                            f"{name} of {key!r} through another store did not reach the "
                            f"listener within {within:g} s (mode {channel.mode}, bound {bound})"
                            f"; calls seen: {[(c[2], c[3]) for c in listener.calls[seen:]]}"
                        )
                    await asyncio.sleep(0.005)
            # The loop that opened the channel: this test's, or the one a sync adapter runs
            # the store on; either way one thread, running an event loop.
            threads = {c[1] for c in listener.calls}
            assert 0 not in threads, "the listener was called off an event loop's thread"
            assert len(threads) == 1, "the listener was called from several threads"
            assert channel.up
        finally:
            await _close(channel, listener)
        await _close(channel, listener)  # idempotent


async def _close(channel: InvalidationChannel, listener: _Recorder) -> None:
    """``channel.close()`` on the loop that opened it: the one its calls came on, which is
    not this test's when a sync adapter runs the store on a loop thread of its own."""
    loop = listener.loop
    if loop is None or loop is asyncio.get_running_loop():
        await asyncio.wait_for(channel.close(), CLOSE_WITHIN)
        return
    done = asyncio.run_coroutine_threadsafe(_closing(channel), loop)
    await asyncio.wait_for(asyncio.wrap_future(done), CLOSE_WITHIN)


async def _closing(channel: InvalidationChannel) -> None:
    await channel.close()


def _covered(calls: list[tuple[float, int, str, frozenset[str] | None]], key: str) -> bool:
    # A channel_down covers every key too: the cache empties and stops serving.
    return any(
        what == "down" or (what == "invalidate" and (keys is None or key in keys))
        for _, _, what, keys in calls
    )
