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

from collections.abc import Collection
from typing import Protocol, runtime_checkable

__all__ = ["InvalidationChannel", "InvalidationListener"]


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
