"""The vector API on the in-memory provider: VectorSuite, and unit tests of its parts."""

from __future__ import annotations

import decimal
import math
from typing import Any

import dmem
import dmem_conformance
import pytest
from dmem import InvalidArgumentError, MemorySystem, PluginNotFoundError, VectorRecord
from dmem.vector import (
    HashEmbedder,
    normalize_where,
    resolve_embedder,
    same_value,
    where_matches,
)


class TestMemoryVectorConformance(dmem_conformance.VectorSuite):
    @pytest.fixture
    def vector_store_factory(self) -> dmem_conformance.VectorStoreFactory:
        # A shared backend, so namespaces matter exactly as on a server.
        return dmem_conformance.vector_url_factory("memory://vector-suite")


# --- where: canonical form -------------------------------------------------------------------
def test_normalize_where_canonical_form() -> None:
    assert normalize_where(None) is None
    assert normalize_where({"a": 1}) == {"a": {"$eq": 1}}
    assert normalize_where({"a": 1, "b": {"$gt": 2, "$lt": 5}}) == {
        "$and": [{"a": {"$eq": 1}}, {"b": {"$gt": 2}}, {"b": {"$lt": 5}}]
    }
    assert normalize_where({"$or": [{"a": "x"}]}) == {"a": {"$eq": "x"}}
    assert normalize_where({"a": {"$in": ("x", 1)}}) == {"a": {"$in": ["x", 1]}}


@pytest.mark.parametrize(
    "where",
    [
        {},
        [],
        {"$not": {"a": 1}},
        {"a": {}},
        {"a": {"$regex": "x"}},
        {"a": {"$gte": "2020"}},
        {"a": {"$lt": math.inf}},
        {"a": {"$nin": []}},
        {"a": {"$in": [None]}},
        {"$and": "a"},
        {"$or": [{}]},
        {1: 2},
        {"": 1},
    ],
)
def test_normalize_where_rejects(where: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        normalize_where(where)


# --- where: the evaluator ----------------------------------------------------------------------
META: dict[str, dmem.vector.MetadataValue] = {"s": "jazz", "i": 3, "f": 2.5, "b": True, "e": ""}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"s": "jazz"}, True),
        ({"s": "Jazz"}, False),
        ({"i": 3.0}, True),  # numbers compare as numbers
        ({"i": True}, False),  # a bool is not a number
        ({"b": 1}, False),
        ({"b": True}, True),
        ({"s": 3}, False),
        ({"e": ""}, True),
        ({"s": {"$ne": "rock"}}, True),
        ({"s": {"$ne": "jazz"}}, False),
        ({"missing": {"$ne": 1}}, True),  # a record without the field is "not equal"
        ({"missing": {"$nin": [1]}}, True),
        ({"missing": 1}, False),
        ({"missing": {"$gt": 0}}, False),
        ({"i": {"$gt": 2.5}}, True),
        ({"i": {"$gte": 3}}, True),
        ({"i": {"$lt": 3}}, False),
        ({"f": {"$lte": 2.5}}, True),
        ({"s": {"$gt": 0}}, False),  # comparisons never match a non-number
        ({"b": {"$gt": 0}}, False),
        ({"s": {"$in": ["rock", "jazz"]}}, True),
        ({"i": {"$in": ["3", 3.0]}}, True),
        ({"i": {"$nin": ["3", True]}}, True),
        ({"i": {"$nin": [3]}}, False),
        ({"$and": [{"s": "jazz"}, {"i": {"$gt": 5}}]}, False),
        ({"$or": [{"s": "rock"}, {"i": {"$gt": 2}}]}, True),
        ({"$or": [{"$and": [{"b": False}, {"s": "jazz"}]}, {"f": {"$gte": 3}}]}, False),
    ],
)
def test_where_matches(where: dict[str, Any], expected: bool) -> None:
    assert where_matches(normalize_where(where), META) is expected


def test_same_value_families() -> None:
    assert same_value(1, 1.0)
    assert not same_value(1, True)
    assert not same_value("1", 1)
    assert same_value(False, False)


# --- validation -------------------------------------------------------------------------------
async def test_records_validated_before_io() -> None:
    vs = await dmem.open_vector("memory://")
    with pytest.raises(InvalidArgumentError, match="appears twice"):
        await vs.upsert([VectorRecord("a", (1.0,)), VectorRecord("a", (2.0,))])
    with pytest.raises(InvalidArgumentError, match="all zeros"):
        await vs.query([0.0, 0.0])
    with pytest.raises(InvalidArgumentError, match="unknown record field"):
        await vs.upsert([{"id": "a", "vector": [1.0], "embedding": [1.0]}])
    with pytest.raises(InvalidArgumentError, match="list of records"):
        await vs.upsert(VectorRecord("a", (1.0,)))  # type: ignore[arg-type]
    assert await vs.count() == 0
    await vs.aclose()


async def test_numpy_like_vectors_accepted() -> None:
    np = pytest.importorskip("numpy")
    vs = await dmem.open_vector("memory://")
    await vs.upsert([{"id": "a", "vector": np.array([0.5, 0.5], dtype=np.float32)}])
    hits = await vs.query(np.array([1.0, 1.0]), k=1)
    assert hits[0].id == "a" and math.isclose(hits[0].score, 1.0, abs_tol=1e-9)
    await vs.aclose()


def _released() -> memoryview:
    view = memoryview(b"gone")
    view.release()
    return view


@pytest.mark.parametrize(
    "call",
    [
        # Not iterable: was a TypeError from iterating.
        lambda vs: vs.upsert(5),
        lambda vs: vs.get(5),
        lambda vs: vs.delete(5),
        lambda vs: vs.upsert(_released()),
        lambda vs: vs.get(b"ab"),
        lambda vs: vs.upsert({"id": "a", "vector": [1.0]}),
        # Record field names of mixed types: sorting them for the message raised TypeError.
        lambda vs: vs.upsert([{"id": "a", "vector": [1.0, 0.0, 0.0], 1: "x"}]),
        # Reprs that fail: a 5000-digit int as k, id or metadata name.
        lambda vs: vs.query([1.0, 0.0, 0.0], k=10**5000),
        lambda vs: vs.upsert([{"id": 10**5000, "vector": [1.0, 0.0, 0.0]}]),
        lambda vs: vs.upsert([{"id": "a", "vector": [1.0, 0.0, 0.0], "metadata": {10**5000: 1}}]),
        lambda vs: vs.query([1.0, 0.0, 0.0], where=10**5000),
        lambda vs: vs.query([1.0, 0.0, 0.0], where={"a": 10**5000}),
        # An int beyond the float range: math.isfinite raised OverflowError.
        lambda vs: vs.query([1.0, 0.0, 0.0], where={"a": {"$gt": 10**400}}),
        # Operands and names no metadata can hold (Chroma failed on some, after I/O).
        lambda vs: vs.query([1.0, 0.0, 0.0], where={"n": 2**63}),
        lambda vs: vs.query([1.0, 0.0, 0.0], where={"n": {"$in": [1, -(2**63) - 1]}}),
        lambda vs: vs.query([1.0, 0.0, 0.0], where={"s": "\ud800"}),
        lambda vs: vs.query([1.0, 0.0, 0.0], where={"s": {"$ne": "a\x00"}}),
        lambda vs: vs.query([1.0, 0.0, 0.0], where={"\ud800": 1}),
        lambda vs: vs.query([1.0, 0.0, 0.0], where={"$or": [{"x" * 1025: 1}, {"a": 1}]}),
        # A set as a query vector was taken in its hash order.
        lambda vs: vs.query({1.0, 0.0, 2.0}),
    ],
)
async def test_bad_vector_arguments_before_io(call: Any) -> None:
    vs = await dmem.open_vector("memory://")
    await vs.upsert([VectorRecord("seed", (1.0, 0.0, 0.0), {"n": 1, "s": "x"})])
    with pytest.raises(InvalidArgumentError):
        await call(vs)
    assert [r.id for r in await vs.get(["seed", "a"])] == ["seed"]
    await vs.aclose()


async def test_query_text_is_checked_before_embedding() -> None:
    vs = await dmem.open_vector("memory://", embedder="hash")
    for text in ("\ud800", "a\x00b"):
        with pytest.raises(InvalidArgumentError, match="query text"):
            await vs.query(text)
    await vs.aclose()


async def test_where_edges_still_accepted() -> None:
    vs = await dmem.open_vector("memory://")
    await vs.upsert([VectorRecord("a", (1.0, 0.0), {"n": 2**63 - 1, "m": -(2**63)})])
    hits = await vs.query([1.0, 0.0], where={"n": 2**63 - 1, "m": {"$in": [-(2**63)]}})
    assert [h.id for h in hits] == ["a"]
    assert await vs.query([1.0, 0.0], where={"s": ""}) == []
    await vs.aclose()


# --- embedders --------------------------------------------------------------------------------
def test_hash_embedder_deterministic_normalized() -> None:
    emb = HashEmbedder(dimension=64)
    a, b, c = emb.embed(["hello world", "hello world", ""])
    assert a == b
    assert len(a) == 64
    assert math.isclose(math.fsum(x * x for x in a), 1.0)
    assert math.isclose(math.fsum(x * x for x in c), 1.0)
    with pytest.raises(InvalidArgumentError):
        HashEmbedder(dimension=1)


def test_hash_embedder_registered_through_hook() -> None:
    assert "hash" in dmem.registry().embedders
    assert isinstance(resolve_embedder("hash"), HashEmbedder)
    with pytest.raises(PluginNotFoundError, match="no embedder named 'nope'"):
        resolve_embedder("nope")
    with pytest.raises(InvalidArgumentError, match="not an embedder"):
        resolve_embedder(object())


async def test_text_query_without_embedder_names_the_fix() -> None:
    vs = await dmem.open_vector("memory://")
    await vs.upsert([VectorRecord("a", (1.0, 0.0))])
    with pytest.raises(InvalidArgumentError) as info:
        await vs.query("anything")
    message = str(info.value)
    assert "embedder=" in message and "dmem_register_embedders" in message
    assert "hash" in message and "never downloads" in message
    await vs.aclose()


async def test_embedder_from_url_option() -> None:
    async with dmem.open_vector("memory://?embedder=hash") as vs:
        assert isinstance(vs.embedder, HashEmbedder)
        await vs.upsert([{"id": "d", "document": "the quick brown fox"}])
        (hit,) = await vs.query("the quick brown fox", k=1)
        assert hit.id == "d" and math.isclose(hit.score, 1.0, abs_tol=1e-9)
    with pytest.raises(InvalidArgumentError, match="given twice"):
        await dmem.open_vector("memory://?embedder=hash", embedder="hash")


async def test_broken_embedder_is_a_provider_error() -> None:
    class Broken:
        name = "broken"

        def embed(self, texts: Any) -> list[list[float]]:
            raise RuntimeError("model exploded")

    vs = await dmem.open_vector("memory://", embedder=Broken())
    with pytest.raises(dmem.ProviderError, match="model exploded"):
        await vs.query("x")
    await vs.aclose()


# --- opening ----------------------------------------------------------------------------------
async def test_memory_system_vector_is_a_vector_store() -> None:
    async with MemorySystem(kv="memory://", vector="memory://", embedder="hash") as memory:
        assert isinstance(memory.vector, dmem.VectorStore)
        await memory.vector.upsert([{"id": "n", "document": "note about cats"}])
        hits = await memory.vector.query("cats", k=1)
        assert hits[0].id == "n"
        reports = await memory.health()
        assert reports["vector"].ok


async def test_unknown_vector_scheme_names_the_extra() -> None:
    with pytest.raises(PluginNotFoundError, match="vector"):
        await dmem.open_vector("nosuch://x")


async def test_memory_vector_options() -> None:
    with pytest.raises(InvalidArgumentError, match="unknown memory:// vector options"):
        await dmem.open_vector("memory://?bogus=1")


@pytest.mark.parametrize(
    ("vector", "expected"),
    [
        ([1, 2.5], (1.0, 2.5)),
        ((0.5,), (0.5,)),
        ([1e308, 1e308], (1e308, 1e308)),  # the sum overflows; every element is finite
        ([0.0, -0.0, 3], (0.0, -0.0, 3.0)),
    ],
)
def test_query_vectors_accepted(vector: Any, expected: tuple[float, ...]) -> None:
    from dmem.vector._validation import check_vector

    got = check_vector(vector)
    assert got == expected and all(type(x) is float for x in got)


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        ([1.0, math.nan], "non-finite"),
        ([math.inf, -math.inf], "non-finite"),
        ([10**400, 1.0], "non-finite"),  # beyond the float range: not an OverflowError
        ([True, 1.0], "non-number"),
        (["1", 1.0], "non-number"),
        ([0, 0.0], "all zeros"),
        ([], "empty"),
        ("12", "sequence of numbers"),
        ([0.5] * 65_537, "dimensions"),
        # Unordered, or iterating keys: not a vector (a set was taken in its hash order).
        ({1.0, 2.0}, "sequence of numbers"),
        ({"a": 1.0}, "sequence of numbers"),
        ([decimal.Decimal("sNaN"), 1.0], "non-number"),  # float() raised ValueError
        ([1j, 1.0], "non-number"),
        (_released(), "cannot be read"),  # iterating raised ValueError
        pytest.param([10**5000, 1.0], "non-finite", id="5000-digits"),
    ],
)
def test_query_vectors_rejected(vector: Any, message: str) -> None:
    from dmem.vector._validation import check_vector

    with pytest.raises(InvalidArgumentError, match=message):
        check_vector(vector)
