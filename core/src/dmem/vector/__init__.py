"""The vector API: records, queries by vector or text, ``where`` filters, embedders.

    vs = await dmem.open_vector("memory://", embedder="hash")
    await vs.upsert([VectorRecord("a", (0.1, 0.9), {"genre": "jazz"}, "Kind of Blue")])
    hits = await vs.query([0.2, 0.8], k=5, where={"genre": {"$in": ["jazz", "blues"]}})

Layers as for key-value: :class:`VectorStore` (validates, embeds, wraps
errors) over a :class:`VectorProvider` from a plugin. See docs/vector.md.
"""

from __future__ import annotations

from ._embed import HashEmbedder, resolve_embedder
from ._memory import MemoryVectorProvider, create_memory_vector_provider
from ._minilm import MiniLMEmbedder, minilm_installed
from ._open import make_vector_store, open_vector
from ._protocol import Embedder, VectorProvider
from ._store import VectorStore
from ._types import MetadataValue, VectorMatch, VectorRecord
from ._validation import (
    MAX_DIMENSION,
    MAX_K,
    check_ids,
    check_k,
    check_metadata,
    check_record,
    check_vector,
)
from ._where import Where, normalize_where, same_value, where_matches

__all__ = [
    "MAX_DIMENSION",
    "MAX_K",
    "Embedder",
    "HashEmbedder",
    "MemoryVectorProvider",
    "MetadataValue",
    "MiniLMEmbedder",
    "VectorMatch",
    "VectorProvider",
    "VectorRecord",
    "VectorStore",
    "Where",
    "check_ids",
    "check_k",
    "check_metadata",
    "check_record",
    "check_vector",
    "create_memory_vector_provider",
    "make_vector_store",
    "minilm_installed",
    "normalize_where",
    "open_vector",
    "resolve_embedder",
    "same_value",
    "where_matches",
]
