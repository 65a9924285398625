"""dmem-chroma: key-value and vector providers on Chroma (embedded or server).

    kv = await dmem.open("chroma:///var/lib/app/chroma", namespace="app")
    vs = await dmem.open_vector("chroma+http://localhost:8000", embedder="hash")

See docs/backends/chroma.md.
"""

from __future__ import annotations

from ._client import ChromaConfig, parse_config
from ._kv import ChromaKVProvider
from ._vector import ChromaVectorProvider, translate_where

__all__ = [
    "ChromaConfig",
    "ChromaKVProvider",
    "ChromaVectorProvider",
    "parse_config",
    "translate_where",
]
