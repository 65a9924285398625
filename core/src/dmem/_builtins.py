"""The built-in plugin: the memory backend and the Cache and Compression middleware.

Registered through the same hooks as any third-party plugin.
"""

from __future__ import annotations

from collections.abc import Callable

from ._registry import MiddlewareSpec, ProviderSpec
from .backends.memory import create_memory_provider
from .hookspecs import hookimpl
from .middleware import Cache, Compression

__all__ = ["dmem_register_middleware", "dmem_register_providers"]


@hookimpl
def dmem_register_providers(register: Callable[[ProviderSpec], None]) -> None:
    register(
        ProviderSpec(
            name="memory",
            schemes=("memory",),
            kind="kv",
            factory=create_memory_provider,
            description="in-process dict; memory://NAME is shared within the process",
        )
    )


@hookimpl
def dmem_register_middleware(register: Callable[[MiddlewareSpec], None]) -> None:
    register(MiddlewareSpec("cache", Cache, "in-process LRU cache (ttl, max_entries, max_bytes)"))
    register(
        MiddlewareSpec("compression", Compression, "zlib/zstd/lz4 for values over a threshold")
    )
