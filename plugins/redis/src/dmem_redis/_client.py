"""Build the redis-py asyncio client for a :class:`RedisConfig`, and map its errors.

Every client gets the same settings: ``decode_responses=False`` (values are the
core's bytes, returned untouched), the socket and connect timeouts that
``_config.split_timeout`` derived from ``timeout``, and a bounded retry with exponential
backoff whose loops do not nest (``_Retry``), so that a call against an unresponsive server
gives up within ``timeout``. The pool is redis-py's default (unbounded) unless
``max_connections`` is set; then it is a blocking pool that waits up to its share of
``timeout`` for a free connection instead of failing at once under many concurrent tasks.

Standalone connections pack commands with hiredis (``hiredis.pack_command``, C) instead
of redis-py's asyncio packer, which is pure Python and copies its buffer once per
argument: MGET/MSET-sized commands (and the set_many script) pack 25-30 % faster. They also
send within the socket timeout without a task per command (``_send``).

Sentinel: every connection to the primary is made to the address the sentinels give at
that moment (``_SentinelConnection``), and the pool follows the sentinels' ``+switch-master``
announcements (``_SentinelPool``), so that after a failover no call keeps writing to the
old primary. See docs/backends/redis-sentinel.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import logging
import weakref
from contextvars import ContextVar
from typing import Any

import redis.exceptions as rex
from dmem import ProviderError, ProviderUnavailableError
from hiredis import pack_command
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import AbstractBackoff, ExponentialBackoff, NoBackoff

from ._config import RedisConfig
from ._send import InlineSendTimeout

__all__ = ["build_client", "close_quietly", "execute_once", "map_error", "retry_backoff"]

log = logging.getLogger("dmem.redis")


class _HiredisPacking:
    """Mixin: pack commands in C when hiredis can (it takes str, bytes, int, float)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str) and " " in first:  # "SCRIPT LOAD" -> two arguments
            args = (*first.split(), *args[1:])
        try:
            return [pack_command(args)]
        except TypeError:
            pass  # e.g. a memoryview: redis-py's own packer knows it
        packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]
        return packed


_UNBOUNDED = 2**31


class _TCP(InlineSendTimeout, _HiredisPacking, Connection):
    pass


class _TLS(InlineSendTimeout, _HiredisPacking, SSLConnection):
    pass


class _Unix(InlineSendTimeout, _HiredisPacking, UnixDomainSocketConnection):
    pass


# Set while a retry loop of this task runs its attempt; see _Retry.
_RETRYING: ContextVar[bool] = ContextVar("dmem_redis_retrying", default=False)


class _Retry(Retry):
    """redis-py's Retry, except that a retry loop started inside another one's attempt makes
    a single attempt: the outer loop does the retrying.

    redis-py nests them: a command's loop reconnects inside its attempt with the connection's
    own loop, and Sentinel asks the sentinels with theirs while connecting. Nested, a server
    that drops connection attempts could cost (retries + 1)² of them, and ``timeout`` could
    not be split into static per-attempt timeouts (``_config.split_timeout``).
    """

    async def call_with_retry(self, do: Any, fail: Any, *args: Any, **kwargs: Any) -> Any:
        if _RETRYING.get():
            once = copy.copy(self)
            once._retries = 0
            return await Retry.call_with_retry(once, do, fail, *args, **kwargs)
        token = _RETRYING.set(True)

        async def logged_fail(error: Exception, *count: int) -> None:
            # redis-py calls this after each failed attempt (with the failure count when
            # asked to), the last one too; the error's type says what happened.
            log.debug("attempt failed (%s); retried while attempts remain", type(error).__name__)
            await fail(error, *count)

        try:
            return await super().call_with_retry(do, logged_fail, *args, **kwargs)
        finally:
            _RETRYING.reset(token)


class _SentinelConnection(SentinelManagedConnection):
    """A connection to the primary of a Sentinel service that asks the sentinels for the
    primary's address at every socket connect.

    redis-py asks them only when the pool hands out a connection that is not connected.
    A command that fails on a pooled connection and is retried reconnects inside its retry
    loop to the address that connection had: after a failover, the old primary. Killed, it
    refuses (the call fails although the new primary is up); demoted by a manual failover,
    it answers a write with READONLY (the call fails with "The previous master is now a
    slave"). Here that reconnect goes to the primary the sentinels name.
    """

    _asked = False  # connect_to() was given the address the sentinels named just now

    async def connect_to(self, address: Any) -> None:
        self._asked = True
        try:
            await super().connect_to(address)  # type: ignore[no-untyped-call, unused-ignore]
        finally:
            self._asked = False

    async def _connect(self) -> None:
        if not self._asked and self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super()._connect()  # type: ignore[no-untyped-call, unused-ignore]


class _SentinelTLSConnection(_SentinelConnection, SSLConnection):
    pass


_SWITCH = "+switch-master"  # what a sentinel publishes when it names a new primary
_LISTEN = 1.0  # seconds a watcher waits for a message before it checks its pool is alive
_WATCH_BACKOFF = (0.1, 5.0)  # first and longest pause before a watcher subscribes again


class _SentinelPool(SentinelConnectionPool):
    """redis-py's Sentinel pool, which also follows the sentinels' ``+switch-master``.

    redis-py only learns of a new primary when it connects. After a manual failover
    (``SENTINEL FAILOVER``) the old primary stays up and a primary for about ten more
    seconds, until the sentinels turn it into a replica; connections already open keep
    writing to it, and Redis throws those writes away when it resyncs from the new
    primary. So, from the first connect on, a task subscribes to ``+switch-master`` on
    every sentinel; when one names a new primary of this service, the pool takes that
    address, asks that sentinel first from then on (another may not know yet), closes its
    idle connections and has those in use closed when they come back. It is best effort
    (a sentinel that cannot be subscribed to is tried again, with backoff, until the
    client closes); without it the pool still reaches the new primary at its next connect.
    """

    def __init__(self, service_name: str, sentinel_manager: Any, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call, unused-ignore]
        self._watcher: asyncio.Task[None] | None = None

    async def get_master_address(self) -> Any:
        if self._watcher is None and self.is_master:
            self._watcher = asyncio.get_running_loop().create_task(
                _watch_switches(weakref.ref(self), list(self.sentinel_manager.sentinels))
            )
        return await super().get_master_address()  # type: ignore[no-untyped-call, unused-ignore]

    async def stop_watching(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.wait([watcher])  # its end, without raising its CancelledError

    async def switched(self, sentinel: Any, address: tuple[str, int]) -> None:
        """A sentinel announced ``address`` as the service's primary."""
        sentinels = self.sentinel_manager.sentinels
        if sentinel in sentinels:  # ask the one that knows first (as redis-py does)
            sentinels.remove(sentinel)
            sentinels.insert(0, sentinel)
        if self.master_address == address:
            return
        log.info("the sentinels named a new primary; moving connections to it")
        self.master_address = address
        for connection in list(self._in_use_connections):
            # Closed when released (redis-py >= 6); older pools close a connection to
            # another address than master_address when it is released.
            mark = getattr(connection, "mark_for_reconnect", None)
            if mark is not None:
                mark()
        await self.disconnect(inuse_connections=False)


async def _watch_switches(pool: weakref.ref[_SentinelPool], sentinels: list[Any]) -> None:
    _RETRYING.set(False)  # this task's own context: not inside a command's retry loop
    await asyncio.gather(*(_watch_one(pool, sentinel) for sentinel in sentinels))


async def _watch_one(pool: weakref.ref[_SentinelPool], sentinel: Any) -> None:
    """Follow ``+switch-master`` on one sentinel until the pool is gone or the task is
    cancelled; subscribe again, with backoff, whenever the subscription fails."""
    pause = _WATCH_BACKOFF[0]
    while pool() is not None:
        pubsub = sentinel.pubsub()
        try:
            await pubsub.subscribe(_SWITCH)
            pause = _WATCH_BACKOFF[0]
            while pool() is not None:  # the task does not keep the pool alive
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=_LISTEN)
                if message is not None and message.get("type") == "message":
                    await _announce(pool, sentinel, message.get("data"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - best effort: subscribe again later
            log.debug("cannot follow %s on a sentinel (%s)", _SWITCH, type(exc).__name__)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        await asyncio.sleep(pause)
        pause = min(pause * 2, _WATCH_BACKOFF[1])


async def _announce(pool: weakref.ref[_SentinelPool], sentinel: Any, data: Any) -> None:
    """Pass a ``+switch-master`` message (``<name> <old ip> <old port> <new ip> <new
    port>``) of the pool's service on to the pool."""
    owner = pool()
    text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
    parts = text.split()
    if owner is None or len(parts) != 5 or parts[0] != owner.service_name:
        return
    if parts[4].isdigit():
        await owner.switched(sentinel, (parts[3], int(parts[4])))


def retry_backoff(config: RedisConfig) -> ExponentialBackoff:
    """The sleeps between a call's attempts. redis-py's default backoff may sleep for
    seconds; ours is bounded, and its sleeps are counted in the call's timeout
    (_config.split_timeout)."""
    return ExponentialBackoff(cap=config.retry_backoff_max, base=config.retry_backoff)


def _retry(config: RedisConfig) -> Retry:
    return _Retry(retry_backoff(config), config.retries)


def _connection_kwargs(config: RedisConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "username": config.username,
        "password": config.password,
        "socket_timeout": config.socket_timeout,
        "socket_connect_timeout": config.connect_timeout,
        "retry": _retry(config),
        "decode_responses": False,
        "client_name": config.client_name,
    }
    return kwargs


def build_client(config: RedisConfig) -> tuple[Any, Sentinel | None]:
    """The client (``Redis`` or ``RedisCluster``) and, in sentinel mode, the Sentinel."""
    kwargs = _connection_kwargs(config)
    if config.mode == "cluster":
        ssl_kwargs = {"ssl": True, **config.ssl_options} if config.tls else {}
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in config.hosts],
            max_connections=config.max_connections or _UNBOUNDED,
            require_full_coverage=True,
            **kwargs,
            **ssl_kwargs,
        )
        return cluster, None
    if config.mode == "sentinel":
        ssl_kwargs = {"ssl": True, **config.ssl_options} if config.tls else {}
        sentinel_kwargs = {
            "username": config.sentinel_username,
            "password": config.sentinel_password,
            "socket_timeout": config.sentinel_timeout,
            "socket_connect_timeout": config.sentinel_timeout,
            "retry": _retry(config),
            **ssl_kwargs,
        }
        sentinel = Sentinel(list(config.hosts), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call, unused-ignore]
        client = sentinel.master_for(
            config.service_name,
            connection_pool_class=_SentinelPool,
            # The connection class says TLS or not: no "ssl" flag for the pool.
            connection_class=_SentinelTLSConnection if config.tls else _SentinelConnection,
            db=config.db,
            max_connections=config.max_connections or _UNBOUNDED,
            **kwargs,
            **(config.ssl_options if config.tls else {}),
        )
        return client, sentinel
    pool_kwargs: dict[str, Any] = {**kwargs, "db": config.db, "connection_class": _TCP}
    if config.socket_path:  # unix://
        pool_kwargs.update(connection_class=_Unix, path=config.socket_path)
    else:
        host, port = config.hosts[0]
        pool_kwargs.update(host=host, port=port)
        if config.tls:
            pool_kwargs.update(connection_class=_TLS, **config.ssl_options)
    pool: ConnectionPool
    if config.max_connections:
        pool = BlockingConnectionPool(
            max_connections=config.max_connections, timeout=config.pool_timeout, **pool_kwargs
        )
    else:
        # redis-py's asyncio pool fails at its default of 100; "unbounded" must mean it.
        pool = ConnectionPool(max_connections=_UNBOUNDED, **pool_kwargs)
    # from_pool: the client owns the pool, so closing the client closes its connections
    # (Redis(connection_pool=pool) leaves them open until garbage collection).
    return Redis.from_pool(pool), None


async def execute_once(
    client: Any, *args: Any, retries: int = 0, backoff: AbstractBackoff | None = None
) -> Any:
    """Run one keyed command (``args[3]`` is its first key, as in EVALSHA) with no re-send.

    redis-py retries a command after a timeout or a lost connection by sending it again, even
    when the server had already run it and only the reply was lost. That is harmless for
    idempotent writes, not for ``SET NX``: the re-sent one finds the key the first one wrote and
    answers "not written". Here connecting (and redis-py's retries of connecting, and its
    check that a pooled connection is still alive) happens before the command is sent; once
    it is sent, any failure is raised as is, so the caller learns "outcome unknown" instead of
    a wrong answer.

    Standalone and Sentinel: a live connection from the client's pool, one send, one read
    (the connection is dropped after a failure: a late reply must never be read by the next
    command). Cluster: the command goes to the key's node with redis-py's cluster retries off
    (``target_nodes``); MOVED/ASK redirections, which are answers, are still followed.
    redis-py's cluster connections never retry connecting and send on a connection the
    server closed, so the connection is checked and connected first, up to ``retries``
    times with ``backoff`` between (``_ready_connection``); the call's last connection
    attempt is redis-py's own, which asks for a topology refresh if it fails too.
    """
    if isinstance(client, RedisCluster):
        await client.initialize()  # a no-op unless a failure asked for a topology refresh
        node = client.get_node_from_key(args[3])
        if node is not None:
            await _ready_connection(node, retries, backoff or NoBackoff())
        return await client.execute_command(*args, target_nodes=node)
    pool = client.connection_pool
    connection = await pool.get_connection()
    try:
        # redis-py's pool skips its own check of pooled connections when maintenance
        # notifications are "auto" (its default), so check here. Reconnect first.
        if await _closed_by_server(connection):
            await connection.disconnect()
            await connection.connect()  # with the connection's retries: nothing is sent yet
        await connection.send_command(*args)
        return await client.parse_response(connection, args[0])
    except rex.ResponseError:
        raise  # a complete reply (an error): the connection is in a clean state
    except BaseException:
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)


async def _ready_connection(node: ClusterNode, retries: int, backoff: AbstractBackoff) -> None:
    """Leave a live connection at the front of ``node``'s free connections, where the command
    that follows takes it, in up to ``retries`` connection attempts.

    Nothing is sent here, so a failed attempt is safe to repeat. A pooled connection the
    server closed (a restart, an idle timeout, CLIENT KILL) is reconnected first: sent on,
    it would fail the call with an unknown outcome although nothing ran. When every attempt
    fails the connection goes back unconnected and the command's own connect is the last
    attempt, after which redis-py asks for a topology refresh. Between the hand-back and
    redis-py's ``acquire_connection`` nothing yields to the loop (with ``target_nodes`` given,
    redis-py resolves no policy and needs no topology unless a refresh is due), so the
    command takes this very connection.
    """
    for failures in range(1, retries + 2):
        connection: Any = node.acquire_connection()
        try:
            if (
                connection.is_connected
                and not _marked_for_reconnect(connection)
                and not await _closed_by_server(connection)
            ):
                return
            await connection.disconnect()
            if failures > retries:
                return  # the command connects: the call's last attempt
            await connection.connect()
            return
        except rex.AuthenticationError:
            raise  # an answer: trying again would get the same one
        except (rex.ConnectionError, rex.TimeoutError, OSError, asyncio.TimeoutError) as exc:
            log.debug("connecting failed (%s); tried again before sending", type(exc).__name__)
            await connection.disconnect()
        finally:
            _put_first(node, connection)
        await asyncio.sleep(backoff.compute(failures))


async def _closed_by_server(connection: Any) -> bool:
    """Whether an idle pooled connection was closed by the server (e.g. a restart): bytes or
    EOF waiting on an idle RESP2 connection mean it was."""
    try:
        stale = bool(await connection.can_read())
    except (rex.ConnectionError, OSError):
        stale = True
    if stale:
        log.debug("a pooled connection was closed by the server: reconnecting first")
    return stale


def _marked_for_reconnect(connection: Any) -> bool:
    should_reconnect = getattr(connection, "should_reconnect", None)  # redis-py 6+
    return bool(should_reconnect()) if should_reconnect is not None else False


def _put_first(node: ClusterNode, connection: Any) -> None:
    """Back into ``node``'s free connections, first in line (``acquire_connection`` takes
    from the left); a redis-py without that deque gets it back its own way."""
    free = getattr(node, "_free", None)
    if isinstance(free, collections.deque):
        free.appendleft(connection)
    else:
        node.release(connection)


_UNAVAILABLE = (
    rex.ConnectionError,
    rex.TimeoutError,
    rex.ClusterDownError,
    rex.TryAgainError,
    rex.MasterDownError,
    rex.SlotNotCoveredError,
    OSError,
    asyncio.TimeoutError,
)


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def map_error(exc: BaseException, config: RedisConfig) -> ProviderError:
    """A dmem error for a redis-py (or socket) exception; never shows a secret."""
    detail = _scrub(f"{type(exc).__name__}: {exc}", config.secrets)
    where = config.shown_url
    if isinstance(exc, (rex.AuthenticationError, rex.AuthenticationWrongNumberOfArgsError)):
        return ProviderError(f"Redis at {where} refused the credentials ({detail})")
    if isinstance(exc, rex.AuthorizationError | rex.NoPermissionError):
        return ProviderError(f"Redis at {where} denied a command ({detail})")
    if (
        isinstance(exc, _UNAVAILABLE)
        or (isinstance(exc, rex.RedisClusterException) and "connect" in str(exc).lower())
        # A primary with min-replicas-to-write refuses writes while too few replicas are
        # connected (e.g. during a failover): a state of the servers, like MASTERDOWN.
        or (isinstance(exc, rex.ResponseError) and str(exc).startswith("NOREPLICAS"))
    ):
        return ProviderUnavailableError(f"Redis at {where} is unavailable ({detail})")
    return ProviderError(f"Redis at {where} failed ({detail})")


async def close_quietly(client: Any, sentinel: Any) -> None:
    """Close the client, its connection pool(s) and the Sentinel's own connections.

    ``Redis(connection_pool=pool)`` does not own its pool, and ``aclose()`` alone left every
    connection open until the garbage collector found it (with a ResourceWarning): the pool
    is closed explicitly. A cluster client closes every node's connections itself.
    """
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, _SentinelPool):
        await pool.stop_watching()
    # Closing a dead connection may fail; there is nothing left to do about it.
    with contextlib.suppress(Exception):
        if isinstance(client, RedisCluster):
            await client.aclose()
        else:
            await client.aclose(close_connection_pool=True)
    if sentinel is not None:
        for node in sentinel.sentinels:
            with contextlib.suppress(Exception):
                await node.aclose(close_connection_pool=True)
