"""One redis-py client per server as the stores of one process (and event loop) share it.

Stores opened with the same URL and connection options (``dmem.open`` twice, or
``Store.with_namespace``), whatever their namespace, take a lease on one
:class:`SharedClient` (``dmem.sharing``, per event loop: redis.asyncio connections belong
to the loop that made them): one client, one connection pool (or one cluster client, one
Sentinel), closed with the last store. Scripts are loaded and the server's value limit read
when the first store reaches it; every later ``dmem.open`` checks the server answers
(``PING``), ``with_namespace`` sends nothing. ``share_connection=false`` gives a store a
client of its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any

from dmem.sharing import Lease, SharedConnections

from ._client import build_client, close_quietly
from ._config import RedisConfig
from ._pipelining import Pipeliner

__all__ = ["SharedClient", "open_client"]

_CLIENTS: SharedConnections[SharedClient] = SharedConnections("redis", per_loop=True)

# Fields of RedisConfig that are the store's, not the connection's.
_NOT_CONNECTION = frozenset(
    ("namespace", "max_value_bytes", "buckets", "shown_url", "share_connection")
)


def _hashable(value: Any) -> Hashable:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value if isinstance(value, Hashable) else repr(value)


def connection_key(config: RedisConfig) -> Hashable | None:
    """What makes two stores' clients the same one (None: a client of its own). Credentials
    are part of it: the key stays in this process's memory, never shown."""
    if not config.share_connection:
        return None
    return tuple(
        (field.name, _hashable(getattr(config, field.name)))
        for field in dataclasses.fields(config)
        if field.name not in _NOT_CONNECTION
    )


def open_client(config: RedisConfig) -> Lease[SharedClient]:
    """A lease on the client for ``config``; building it does no I/O (redis-py connects on
    first use)."""
    return _CLIENTS.acquire(connection_key(config), lambda: SharedClient(config), _close)


async def _close(shared: SharedClient) -> None:
    if shared.pipeliner is not None:
        await shared.pipeliner.coalescer.aclose()  # batches in flight end first
    await close_quietly(shared.client, shared.sentinel)


class SharedClient:
    """The client, and what its first store learned of the server."""

    def __init__(self, config: RedisConfig) -> None:
        self.client, self.sentinel = build_client(config)
        self.pipeliner = Pipeliner(self.client, config) if config.pipelining else None
        self.prepared = False  # scripts loaded and server_limit read
        self.server_limit: int | None = None  # proto-max-bulk-len, None where not readable
