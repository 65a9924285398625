"""Invalidation channels: how writes made anywhere reach every ``Cache`` on a store.

A provider *may* have one optional member (docs/provider.py's list of optional members)::

    async def open_invalidation(self, listener: InvalidationListener) -> InvalidationChannel

It returns once the channel is up, or raises :class:`~dmem.ProviderUnavailableError`. From
then on the provider calls the listener **on the event loop's thread** that opened it:

* ``listener.invalidate(keys)`` after any write to those keys of the provider's namespace
  (keys as the store's users see them), made by any process or client the channel can see;
  ``keys=None`` means "any key may have changed" (a poll saw a change but not which keys).
* ``listener.channel_down()`` when the channel may have lost messages (connection lost,
  server restarted, a poll failed): the cache must empty itself and serve nothing until...
* ``listener.channel_up()``, once the channel is listening again.

Messages for writes made through the cache itself may arrive too (dropping a fresh entry
costs one read, never correctness). ``InvalidationChannel.bound`` is the staleness bound in
seconds the mode promises once a write has returned (the poll interval for polling modes),
or ``None`` for push modes (delivery latency only); ``mode`` names it for ``health()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "READ_PAUSE",
    "FollowingChannel",
    "InvalidationChannel",
    "InvalidationListener",
    "ReadPause",
]

READ_PAUSE = 0.001
"""Seconds a following channel leaves its socket unread after a message (:class:`ReadPause`)."""


class InvalidationListener(Protocol):
    """What a ``Cache`` gives the provider; every method is called on the loop's thread."""

    def invalidate(self, keys: Collection[str] | None) -> None:
        """These keys (``None``: any key) may have changed; drop what is cached for them."""

    def channel_down(self) -> None:
        """Messages may have been lost: empty the cache and serve nothing until channel_up."""

    def channel_up(self) -> None:
        """The channel is listening again (after a channel_down)."""


@runtime_checkable
class InvalidationChannel(Protocol):
    """An open channel, as ``open_invalidation`` returns it."""

    @property
    def mode(self) -> str:
        """A short name for health(): "redis-tracking", "postgres-notify", "sqlite-poll"..."""

    @property
    def bound(self) -> float | None:
        """Seconds of staleness the mode allows after a write returns (None: push mode)."""

    @property
    def up(self) -> bool:
        """Whether the channel is listening now."""

    async def close(self) -> None:
        """Stop listening and release the channel's connection or task; idempotent."""


class ReadPause:
    """After a message, stop reading a connection for ``pause`` seconds.

    What a follower costs is mostly its wake-ups, not its messages: a Python process woken
    by a socket spends about 50 µs of CPU (measured here) before it reads a byte, and a
    channel that read each message as it came paid that for every write anyone made to
    what it follows; on a machine with fewer cores than busy processes, the writers paid
    it too. Paused, the kernel buffers what arrives, and the next read takes all of it:
    under a stream of writes a follower wakes once per ``pause`` (measured at about 6,000
    writes/s: a Redis follower's CPU per write 44 -> 20 µs, a PostgreSQL one's 50 -> 38 µs
    at 2,700 writes/s). The first message after a quiet ``pause`` is read at once; under a
    stream, an invalidation arrives up to ``pause`` later. What is already buffered is
    still read.

    ``transport`` is the connection's asyncio transport; None (not known): never pauses.
    Call :meth:`after_message` after handling each message and :meth:`cancel` when done.
    """

    __slots__ = ("_pause", "_resuming", "_transport")

    def __init__(self, transport: Any, pause: float = READ_PAUSE) -> None:
        self._transport = transport
        self._pause = pause
        self._resuming: asyncio.TimerHandle | None = None

    def after_message(self) -> None:
        transport = self._transport
        if self._resuming is None and transport is not None and not transport.is_closing():
            transport.pause_reading()
            self._resuming = asyncio.get_running_loop().call_later(self._pause, self._resume)

    def _resume(self) -> None:
        self._resuming = None
        if not self._transport.is_closing():
            self._transport.resume_reading()

    def cancel(self) -> None:
        if self._resuming is not None:
            self._resuming.cancel()
            self._resuming = None


class FollowingChannel:
    """Base of a channel that follows its backend from a task of its own, reconnecting.

    A subclass gives ``mode`` and three steps: ``_attach()`` connects and subscribes (its
    result is the session's handle), ``_follow(handle)`` delivers messages until the session
    is lost (it raises) or the channel is closed (it returns), ``_detach(handle)`` lets the
    session's connections go; ``_before_retry()`` runs between attempts and
    ``_open_error(exc)`` turns the first attempt's failure into the error ``open()`` raises.
    The base keeps up/down: ``channel_down()`` when a session ends, ``channel_up()`` when the
    next one is attached, backoff between attempts (``BACKOFF``), and a ``close()`` that
    always ends the task.
    """

    mode: str = "follow"
    bound: float | None = None
    BACKOFF = (0.05, 2.0)  # first and longest pause between reconnect attempts, seconds

    def __init__(self, listener: InvalidationListener, log: logging.Logger) -> None:
        self._listener = listener
        self._log = log
        self._up = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._opened: asyncio.Future[None] | None = None

    @property
    def up(self) -> bool:
        return self._up

    async def open(self) -> None:
        """Start following; returns once the first session is attached, or raises
        ``_open_error`` of the first attempt's failure."""
        loop = asyncio.get_running_loop()
        self._opened = loop.create_future()
        self._task = loop.create_task(self._run())
        try:
            await asyncio.shield(self._opened)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        # Cancel until it is done: on Python < 3.12, asyncio.wait_for drops a cancellation
        # that arrives as its awaitable completes (a keep-alive answered at that moment), and
        # one cancel would then leave the loop running, and close() waiting, for ever.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=0.1)
        self._up = False

    # --- the steps a subclass gives ----------------------------------------------------------
    async def _attach(self) -> Any:
        raise NotImplementedError

    async def _follow(self, handle: Any) -> None:
        raise NotImplementedError

    async def _detach(self, handle: Any) -> None:
        raise NotImplementedError

    async def _before_retry(self) -> None:
        """Between two attempts, after the pause (default: nothing)."""

    def _open_error(self, exc: Exception) -> BaseException:
        raise NotImplementedError

    # --- the loop ----------------------------------------------------------------------------
    async def _run(self) -> None:
        pause = self.BACKOFF[0]
        while not self._closed:
            handle: Any = None
            try:
                handle = await self._attach()
                pause = self.BACKOFF[0]
                self._set_up()
                await self._follow(handle)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever it was, the channel is down
                if self._opened is not None and not self._opened.done():
                    self._opened.set_exception(self._open_error(exc))
                    return
                self._log.warning(
                    "invalidation channel lost (%s); caches serve nothing until it is back",
                    type(exc).__name__,
                )
            finally:
                self._set_down()
                if handle is not None:
                    await self._detach(handle)
            await asyncio.sleep(pause)
            pause = min(self.BACKOFF[1], pause * 2)
            await self._before_retry()

    def _set_up(self) -> None:
        if self._opened is not None and not self._opened.done():
            self._up = True
            self._opened.set_result(None)
            return
        if not self._up:
            self._up = True
            self._log.info("invalidation channel back")
            self._listener.channel_up()

    def _set_down(self) -> None:
        if self._up:
            self._up = False
            if not self._closed:
                self._listener.channel_down()
