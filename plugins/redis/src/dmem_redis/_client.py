"""Build the redis-py asyncio client for a :class:`RedisConfig`, and map its errors.

Every client gets the same settings: ``decode_responses=False`` (values are the
core's bytes, returned untouched), socket and connect timeouts, a bounded retry
with exponential backoff, and a bounded pool that waits (up to ``timeout``) for
a free connection instead of failing at once under many concurrent tasks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.exceptions as rex
from dmem import ProviderError, ProviderUnavailableError
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff

from ._config import RedisConfig

__all__ = ["build_client", "map_error"]


def _retry(config: RedisConfig) -> Retry:
    # redis-py's default backoff may sleep for seconds; ours is bounded so a call
    # fails within about (retries + 1) * timeout + retries * retry_backoff_max.
    backoff = ExponentialBackoff(cap=config.retry_backoff_max, base=config.retry_backoff)
    return Retry(backoff, config.retries)


def _connection_kwargs(config: RedisConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "username": config.username,
        "password": config.password,
        "socket_timeout": config.timeout,
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
            max_connections=config.max_connections,
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
            "socket_timeout": config.timeout,
            "socket_connect_timeout": config.connect_timeout,
            "retry": _retry(config),
            **ssl_kwargs,
        }
        sentinel = Sentinel(list(config.hosts), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
        client = sentinel.master_for(
            config.service_name,
            db=config.db,
            max_connections=config.max_connections,
            **kwargs,
            **ssl_kwargs,
        )
        return client, sentinel
    pool_kwargs: dict[str, Any] = {
        **kwargs,
        "db": config.db,
        "max_connections": config.max_connections,
        "timeout": config.timeout,
    }
    if config.socket_path:  # unix://
        pool_kwargs.update(connection_class=UnixDomainSocketConnection, path=config.socket_path)
    else:
        host, port = config.hosts[0]
        pool_kwargs.update(host=host, port=port)
        if config.tls:
            pool_kwargs.update(connection_class=SSLConnection, **config.ssl_options)
    pool = BlockingConnectionPool(**pool_kwargs)
    return Redis(connection_pool=pool), None


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
    if isinstance(exc, _UNAVAILABLE) or (
        isinstance(exc, rex.RedisClusterException) and "connect" in str(exc).lower()
    ):
        return ProviderUnavailableError(f"Redis at {where} is unavailable ({detail})")
    return ProviderError(f"Redis at {where} failed ({detail})")
