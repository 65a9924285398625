"""Entry point module of dmem-redis: registers the ``redis`` provider and its URL schemes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dmem import ProviderSpec, hookimpl

__all__ = ["create_redis_provider", "dmem_register_providers", "unreachable_twin"]


def create_redis_provider(url: str, options: dict[str, Any]) -> Any:
    """Factory for every Redis scheme: validates url and options, does no I/O."""
    # Imported here so `dmem plugins` stays fast and a broken redis install is
    # reported by the registry instead of breaking every other plugin.
    from ._config import parse_config
    from ._provider import RedisProvider

    return RedisProvider(parse_config(url, options))


def unreachable_twin(url: str) -> str | None:
    """The same kind of Redis URL, with its options, on a port where nothing listens.

    127.0.0.1:1 (tcpmux: never served here, so a connection is refused at once); a unix
    socket path that does not exist. For the conformance suite's down-backend clauses.
    """
    scheme, _, rest = url.partition("://")
    query = rest.partition("?")[2]
    suffix = f"?{query}" if query else ""
    scheme = scheme.lower()
    if scheme == "unix":
        return f"unix:///nonexistent/dmem-down.sock{suffix}"
    if scheme.endswith("+sentinel"):
        return f"{scheme}://127.0.0.1:1/dmem-down{suffix}"
    if scheme.endswith("+cluster"):
        return f"{scheme}://127.0.0.1:1{suffix}"
    return f"{scheme}://127.0.0.1:1/0{suffix}"


@hookimpl
def dmem_register_providers(register: Callable[[ProviderSpec], None]) -> None:
    from ._config import SCHEMES

    register(
        ProviderSpec(
            name="redis",
            schemes=SCHEMES,
            kind="kv",
            factory=create_redis_provider,
            description="Redis: standalone, TLS (rediss://), unix sockets, Sentinel, Cluster",
            unreachable_url=unreachable_twin,
            shares_connections=True,
        )
    )
