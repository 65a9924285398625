"""Entry point module of dmem-redis: registers the ``redis`` provider and its URL schemes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dmem import ProviderSpec, hookimpl

__all__ = ["create_redis_provider", "dmem_register_providers"]


def create_redis_provider(url: str, options: dict[str, Any]) -> Any:
    """Factory for every Redis scheme: validates url and options, does no I/O."""
    # Imported here so `dmem plugins` stays fast and a broken redis install is
    # reported by the registry instead of breaking every other plugin.
    from ._config import parse_config
    from ._provider import RedisProvider

    return RedisProvider(parse_config(url, options))


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
        )
    )
