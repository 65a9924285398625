"""Embedders: the built-in deterministic :class:`HashEmbedder`, and lookup by name.

dmem never downloads a model. A text query works only with an embedder the
user chose: an instance, or the name of one registered through the
``dmem_register_embedders`` hook (``dmem plugins`` lists them).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

from .._registry import registry
from ..errors import InvalidArgumentError, PluginNotFoundError
from ._protocol import Embedder

__all__ = ["HashEmbedder", "no_embedder_message", "resolve_embedder"]


class HashEmbedder:
    """Hashed character n-grams to a fixed dimension, L2-normalized.

    Deterministic, dependency-free and fast: texts sharing many n-grams get
    close vectors. It knows nothing of meaning (synonyms score low), so it is
    for tests, examples and lexical similarity; use a model embedder for
    semantic search. Registered as ``"hash"``.
    """

    name = "hash"

    def __init__(self, dimension: int = 256, ngram: int = 3) -> None:
        if type(dimension) is not int or not 2 <= dimension <= 65_536:
            raise InvalidArgumentError(
                f"HashEmbedder dimension must be 2..65536, got {dimension!r}"
            )
        if type(ngram) is not int or not 1 <= ngram <= 16:
            raise InvalidArgumentError(f"HashEmbedder ngram must be 1..16, got {ngram!r}")
        self.dimension = dimension
        self.ngram = ngram

    def __repr__(self) -> str:
        return f"HashEmbedder(dimension={self.dimension}, ngram={self.ngram})"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._one(text) for text in texts]

    def _one(self, text: str) -> list[float]:
        vector = [0.0] * self.dimension
        # Pad so short texts (even "") have at least one n-gram and word edges count.
        padded = f" {' '.join(text.lower().split())} "
        n = self.ngram
        for i in range(max(1, len(padded) - n + 1)):
            digest = hashlib.blake2b(
                padded[i : i + n].encode("utf-8", "surrogatepass"), digest_size=8
            ).digest()
            value = int.from_bytes(digest, "little")
            # One bit picks the sign so unrelated n-grams cancel out on average.
            vector[value % self.dimension] += 1.0 if value >> 63 else -1.0
        norm = math.sqrt(sum(x * x for x in vector))
        if norm == 0.0:
            # Every n-gram cancelled out: fall back to a fixed direction.
            vector[0] = norm = 1.0
        return [x / norm for x in vector]


def no_embedder_message() -> str:
    names = sorted(registry().embedders)
    return (
        "a text query (or a record without a vector) needs an embedder, and none is configured: "
        "pass embedder=NAME or an embedder instance to dmem.open_vector(...) "
        "(MemorySystem(..., embedder=...)); installed embedders: "
        f"{', '.join(names) or 'none'}; plugins add more through the dmem_register_embedders "
        "hook. dmem never downloads a model."
    )


def resolve_embedder(embedder: str | Embedder | Any | None) -> Embedder | None:
    """An embedder from an instance or a registered name (None stays None)."""
    if embedder is None:
        return None
    made: Any = embedder
    if isinstance(embedder, str):
        spec = registry().embedders.get(embedder)
        if spec is None:
            known = ", ".join(sorted(registry().embedders)) or "none"
            raise PluginNotFoundError(f"no embedder named {embedder!r} (installed: {known})")
        made = spec.factory()
    if not callable(getattr(made, "embed", None)):
        raise InvalidArgumentError(f"{made!r} is not an embedder (it has no embed(texts))")
    result: Embedder = made
    return result
