"""The Redis invalidation channel: server-assisted client-side caching, broadcast mode.

One connection per server (one per primary in a Cluster) of the channel's own, never the
pool's, speaks RESP2 whatever the client speaks, and runs::

    CLIENT ID                                      -> id
    CLIENT TRACKING on REDIRECT <id> BCAST PREFIX P1k: [PREFIX P2k: ...]
    SUBSCRIBE __redis__:invalidate

so that Redis itself sends the names of the keys of the namespace's value prefixes that
any client changes (dmem or not, scripts too, expiry and eviction included) to that same
connection, as pub/sub messages; a FLUSHDB/FLUSHALL arrives as a message without keys. Redis
queues them before the writer's reply goes out, so a message is on the wire before the
write returns (a push mode: ``bound`` is None, delivery latency only).

Reading coalesces (:class:`dmem.ReadPause`): after a message the channel leaves its
socket unread for 1 ms, so a burst of writes' messages arrive in one read and wake the
process once. The first message after a quiet millisecond is read at once.

Tracking lives and dies with the connection, so the channel is up exactly while every
connection is: a connection lost (server killed or restarted, failover), a PING (sent
after a second of silence) not answered within the client's ``timeout``, or a Cluster's
primaries changing calls ``listener.channel_down()``, and the channel reconnects with
backoff and calls ``channel_up()`` once every connection is tracking again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import redis.exceptions as rex
from dmem import FollowingChannel, InvalidationListener, ProviderUnavailableError, ReadPause

from ._client import map_error
from ._config import RedisConfig
from ._layout import Layout

__all__ = ["RedisInvalidation"]

log = logging.getLogger("dmem.redis")

_CHANNEL = b"__redis__:invalidate"
_PING_EVERY = 1.0  # seconds of silence after which a connection is asked to answer a PING
_TOPOLOGY_EVERY = 1.0  # how often a Cluster's primaries are compared with those followed
_ERRORS = (rex.RedisError, OSError, asyncio.TimeoutError, ConnectionError)


def _maker(connection_class: Any, kwargs: dict[str, Any]) -> Callable[[], Any]:
    # RESP2 whatever the client speaks: invalidations then arrive as pub/sub messages.
    return lambda: connection_class(**{**kwargs, "protocol": 2})


class _Lost(Exception):
    """A connection stopped answering, or the Cluster's primaries changed."""


class RedisInvalidation(FollowingChannel):
    """An open channel (see the module's docstring); made by ``RedisProvider``."""

    mode = "redis-tracking"

    def __init__(
        self,
        listener: InvalidationListener,
        config: RedisConfig,
        layout: Layout,
        client: Any,
        cluster: bool,
    ) -> None:
        super().__init__(listener, log)
        self._config = config
        self._layout = layout
        self._client = client
        self._cluster = cluster
        self._prefixes = [p.encode() for p in layout.value_prefixes]
        self._timeout = float(config.timeout)

    def __repr__(self) -> str:
        state = "up" if self._up else "down"
        return f"<RedisInvalidation {self._config.shown_url} {state}>"

    # --- the steps of FollowingChannel --------------------------------------------------------
    async def _attach(self) -> list[Any]:
        return await self._connect_all()

    async def _detach(self, connections: list[Any]) -> None:
        for connection in connections:
            with contextlib.suppress(Exception):
                await connection.disconnect()

    async def _before_retry(self) -> None:
        if self._cluster:
            # The node that went away may have been replaced: ask the cluster again.
            with contextlib.suppress(*_ERRORS, rex.RedisClusterException):
                await self._client.nodes_manager.initialize()

    def _open_error(self, exc: Exception) -> BaseException:
        err = map_error(exc, self._config)
        if isinstance(err, ProviderUnavailableError):
            return err
        return ProviderUnavailableError(f"invalidation channel: {err}")

    def _targets(self) -> list[Callable[[], Any]]:
        """How to make a connection of the channel's own to each server to follow."""
        if self._cluster:
            return [
                _maker(node.connection_class, node.connection_kwargs)
                for node in self._client.get_primaries()
            ]
        pool = self._client.connection_pool
        # A Sentinel pool's kwargs name the pool: such a connection asks the sentinels for
        # the primary at every connect.
        return [_maker(pool.connection_class, pool.connection_kwargs)]

    async def _connect_all(self) -> list[Any]:
        connections: list[Any] = []
        try:
            for make in self._targets():
                connection = make()
                connections.append(connection)
                await self._track(connection)
        except BaseException:
            for connection in connections:
                with contextlib.suppress(Exception):
                    await connection.disconnect()
            raise
        return connections

    async def _track(self, connection: Any) -> None:
        await connection.connect()
        await connection.send_command("CLIENT", "ID")
        client_id = await connection.read_response()
        prefixes: list[Any] = []
        for prefix in self._prefixes:
            prefixes += ["PREFIX", prefix]
        await connection.send_command(
            "CLIENT", "TRACKING", "on", "REDIRECT", client_id, "BCAST", *prefixes
        )
        reply = await connection.read_response()
        if reply not in (b"OK", "OK"):
            raise _Lost(f"CLIENT TRACKING answered {reply!r}")
        await connection.send_command("SUBSCRIBE", _CHANNEL)
        reply = await connection.read_response()
        if not (isinstance(reply, list) and reply and reply[0] in (b"subscribe", "subscribe")):
            raise _Lost("SUBSCRIBE was not confirmed")

    async def _follow(self, connections: Sequence[Any]) -> None:
        """Read every connection until one fails (or the topology changes): raises."""
        tasks = []
        for connection in connections:
            heard = [0]  # messages read on the connection, PING's answer included
            tasks.append(asyncio.ensure_future(self._read(connection, heard)))
            tasks.append(asyncio.ensure_future(self._keepalive(connection, heard)))
        if self._cluster:
            names = {node.name for node in self._client.get_primaries()}
            tasks.append(asyncio.ensure_future(self._watch_topology(names)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what ended it
            raise _Lost("a connection stopped")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)

    async def _watch_topology(self, names: set[str]) -> None:
        while True:
            await asyncio.sleep(_TOPOLOGY_EVERY)
            if {node.name for node in self._client.get_primaries()} != names:
                raise _Lost("the cluster's primaries changed")

    async def _read(self, connection: Any, heard: list[int]) -> None:
        # No timeout per read (a timeout context per message costs the writer's process
        # more than the message itself); _keepalive watches the connection instead.
        deliver = self._deliver
        # redis-py keeps the connection's asyncio.StreamWriter as _writer (5.x to 8.x);
        # without it every message is read as it comes.
        pause = ReadPause(getattr(getattr(connection, "_writer", None), "transport", None))
        try:
            while True:
                message = await connection.read_response(timeout=math.inf)
                heard[0] += 1
                if isinstance(message, list) and message:
                    if message[0] == b"message" and message[1] == _CHANNEL:
                        deliver(message[2])
                elif message is None:  # redis-py < 8 ends a timeout-less read so on EOF
                    raise _Lost("the connection closed")
                pause.after_message()
        finally:
            pause.cancel()

    async def _keepalive(self, connection: Any, heard: list[int]) -> None:
        """After a second of silence, PING; no message (pong or other) within the client's
        timeout: the connection is lost."""
        while True:
            seen = heard[0]
            await asyncio.sleep(_PING_EVERY)
            if heard[0] != seen:
                continue
            await connection.send_command("PING")
            await asyncio.sleep(self._timeout)
            if heard[0] == seen:
                raise _Lost("no answer to PING")

    def _deliver(self, raw_keys: Any) -> None:
        if raw_keys is None:  # FLUSHDB / FLUSHALL: every key
            self._listener.invalidate(None)
            return
        if isinstance(raw_keys, bytes):
            raw_keys = [raw_keys]
        parse = self._layout.parse_value_key
        keys = []
        for raw in raw_keys:
            try:
                key = parse(raw)
            except UnicodeDecodeError:  # not written by dmem; not a key a Cache holds
                continue
            if key is not None:
                keys.append(key)
        if keys:
            self._listener.invalidate(keys)
