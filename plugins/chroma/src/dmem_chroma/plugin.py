"""Entry point module of dmem-chroma: registers the KV and vector providers.

Importing this module does not import chromadb (it is slow to import); the
factories do, lazily, when a store is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dmem
from dmem import ProviderSpec

__all__ = ["dmem_register_providers", "unreachable_twin"]

_SCHEMES = ("chroma", "chroma+http", "chroma+https")


def create_kv_provider(url: str, options: dict[str, Any]) -> Any:
    from ._client import parse_config
    from ._kv import ChromaKVProvider

    return ChromaKVProvider(parse_config(url, options))


def create_vector_provider(url: str, options: dict[str, Any]) -> Any:
    from ._client import parse_config
    from ._vector import ChromaVectorProvider

    config = parse_config(url, options)
    if config.max_value_bytes is not None:
        raise dmem.InvalidArgumentError(
            "chroma option 'max_value_bytes' is for key-value stores (dmem.open), not vector stores"
        )
    return ChromaVectorProvider(config)


def unreachable_twin(url: str) -> str | None:
    """A Chroma server URL, with its options, on a port where nothing listens (127.0.0.1:1:
    refused at once); None for in-process Chroma, which cannot be down. For the suite."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in ("chroma+http", "chroma+https"):
        return None
    query = rest.partition("?")[2]
    return f"{scheme}://127.0.0.1:1" + (f"?{query}" if query else "")


@dmem.hookimpl
def dmem_register_providers(register: Callable[[ProviderSpec], None]) -> None:
    register(
        ProviderSpec(
            name="chroma",
            schemes=_SCHEMES,
            kind="kv",
            factory=create_kv_provider,
            unreachable_url=unreachable_twin,
            creates_storage=True,
            shares_connections=True,
            description="key-value on Chroma: chroma://, chroma:///PATH, chroma+http://HOST:PORT",
        )
    )
    register(
        ProviderSpec(
            name="chroma-vector",
            schemes=_SCHEMES,
            kind="vector",
            factory=create_vector_provider,
            creates_storage=True,
            shares_connections=True,
            description="vectors on Chroma (HNSW, cosine): chroma://, chroma:///PATH, chroma+http://",
        )
    )
