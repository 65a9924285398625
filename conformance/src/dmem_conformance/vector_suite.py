"""``VectorSuite``: the vector part of the contract (CONTRACT.md, "Vector providers") as tests.

A backend's test module supplies a ``vector_store_factory`` fixture, as for
:class:`~dmem_conformance.KVSuite`::

    class TestFooVectors(dmem_conformance.VectorSuite):
        @pytest.fixture
        def vector_store_factory(self, foo_server) -> dmem_conformance.VectorStoreFactory:
            return dmem_conformance.vector_url_factory("foo://...", **options)

``await factory(namespace, embedder=None)`` returns an *initialized*
:class:`dmem.VectorStore` on the backend (create connections inside the call:
the suite runs every coroutine on its own event loop). The suite opens stores
in fresh unique namespaces, empties and closes them afterwards.

Exact providers (``store.exact``) must return the brute-force top k: the same
ids and scores to 1e-5. Approximate ones must reach recall@10 >= 0.95 on 2,000
records, and the scores they return must be the true cosine of those records
(to 1e-3: indexes may store float32).
"""

from __future__ import annotations

import contextlib
import math
import random
import uuid
from collections.abc import Awaitable, Iterator, Sequence
from typing import Any, Protocol

import dmem
import pytest
from dmem import (
    DmemError,
    HealthStatus,
    InvalidArgumentError,
    NotInitializedError,
    VectorRecord,
    VectorStore,
)
from dmem.vector import HashEmbedder, normalize_where, where_matches
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings

from ._arguments import Call, call_lists
from ._bridge import LoopBridge
from ._profiles import profile_settings, selected_profile
from ._vector_arguments import (
    BAD_WHERE,
    CLASSIC_VECTOR_CALLS,
    VECTOR_SIGNATURES,
    check_vector_calls,
)

__all__ = ["VectorStoreFactory", "VectorSuite", "brute_force", "vector_url_factory"]

EXACT_TOLERANCE = 1e-5
APPROX_SCORE_TOLERANCE = 1e-3
RECALL_TARGET = 0.95
RECALL_RECORDS = 2000
RECALL_DIMENSION = 32
RECALL_QUERIES = 25


class VectorStoreFactory(Protocol):
    """``await factory(namespace, embedder=None)`` -> an initialized :class:`dmem.VectorStore`."""

    def __call__(self, namespace: str, *, embedder: Any = None) -> Awaitable[VectorStore]: ...


class _UrlVectorFactory:
    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self.url = url
        self.options = options

    async def __call__(self, namespace: str, *, embedder: Any = None) -> VectorStore:
        return await dmem.open_vector(
            self.url, namespace=namespace, embedder=embedder, **self.options
        )

    def __repr__(self) -> str:
        return f"vector_url_factory({dmem.redact_url(self.url)!r})"


def vector_url_factory(url: str, **options: Any) -> VectorStoreFactory:
    """A factory opening ``dmem.open_vector(url, namespace=..., **options)`` per call."""
    return _UrlVectorFactory(url, options)


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b)))


def brute_force(
    records: Sequence[VectorRecord], query: Sequence[float], k: int, where: Any = None
) -> list[tuple[str, float]]:
    """The reference answer: ``(id, cosine)`` of the top ``k``, highest first, ties by id."""
    canonical = normalize_where(where)
    scored = [
        (record.id, _cosine(query, record.vector or ()))
        for record in records
        if where_matches(canonical, record.metadata)
    ]
    scored.sort(key=lambda item: (-item[1], item[0]))
    return scored[:k]


def _random_vector(rng: random.Random, dimension: int) -> tuple[float, ...]:
    return tuple(rng.gauss(0.0, 1.0) for _ in range(dimension))


class _Pool:
    def __init__(self, factory: VectorStoreFactory, namespace: str) -> None:
        self.factory = factory
        self.namespace = namespace
        self.opened: list[VectorStore] = []

    async def open(self, suffix: str = "", *, embedder: Any = None) -> VectorStore:
        store = await self.factory(self.namespace + suffix, embedder=embedder)
        if not isinstance(store, VectorStore):
            raise TypeError(f"vector_store_factory returned {type(store).__name__}")
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self.opened:
            with contextlib.suppress(NotInitializedError):
                await store.clear()
            await store.aclose()
        self.opened.clear()


# Metadata for the filter tests: every type, missing fields, int/float/bool look-alikes.
_GENRES = ("jazz", "rock", "blues", "", "Jazz")


def _filter_records(rng: random.Random, n: int, dimension: int) -> list[VectorRecord]:
    records = []
    for i in range(n):
        meta: dict[str, Any] = {}
        if i % 7 != 0:
            meta["genre"] = _GENRES[i % len(_GENRES)]
        if i % 5 != 1:
            meta["year"] = 1980 + (i * 7) % 40 if i % 3 else 1980.5 + (i % 40)
        if i % 4 != 2:
            meta["draft"] = bool(i % 2)
        meta["n"] = [0, 1, 1.0, True, "1", -3][i % 6]
        records.append(VectorRecord(f"r{i:03d}", _random_vector(rng, dimension), meta, f"doc {i}"))
    return records


_FILTERS: tuple[Any, ...] = (
    {"genre": "jazz"},
    {"genre": ""},
    {"genre": {"$eq": "Jazz"}},
    {"genre": {"$ne": "jazz"}},
    {"genre": {"$in": ["jazz", "blues"]}},
    {"genre": {"$nin": ["jazz", "rock"]}},
    {"year": {"$gt": 2000}},
    {"year": {"$gte": 1990, "$lt": 2000}},
    {"year": {"$lte": 1985.5}},
    {"year": 1990},
    {"draft": True},
    {"draft": {"$ne": False}},
    {"n": 1},
    {"n": 1.0},
    {"n": True},
    {"n": "1"},
    {"n": {"$in": [0, "1", True]}},
    {"n": {"$nin": [1, True]}},
    {"n": {"$gt": 0}},
    {"genre": "jazz", "draft": False},
    {"$and": [{"genre": {"$in": ["rock", "blues"]}}, {"year": {"$gte": 2000}}]},
    {"$or": [{"genre": "jazz"}, {"year": {"$lt": 1985}}]},
    {"$or": [{"$and": [{"draft": True}, {"n": {"$ne": -3}}]}, {"genre": {"$eq": "rock"}}]},
    {"missing": {"$ne": 1}},
    {"missing": {"$nin": ["a"]}},
    {"missing": "x"},
    {"$and": [{"genre": "jazz"}]},
)

_BAD_IDS: tuple[Any, ...] = ("", "a\x00b", "x" * 1025, "\ud800", 1, None, b"id")
_BAD_VECTORS: tuple[Any, ...] = (
    [],
    [0.0, 0.0, 0.0],
    [1.0, math.nan, 0.0],
    [1.0, math.inf, 0.0],
    [1.0, "2", 0.0],
    [True, 1.0, 0.0],
    "abc",
    None,
)
_BAD_METADATA: tuple[Any, ...] = (
    {"a": None},
    {"a": [1, 2]},
    {"a": {"b": 1}},
    {"a": math.nan},
    {"a": 2**63},
    {"": 1},
    {1: "x"},
    {"a": "\ud800"},
    "not a mapping",
)
_BAD_K: tuple[Any, ...] = (0, -1, True, 1.5, "10", 10_001)


class VectorSuite:
    """The vector contract. Subclass it and provide ``vector_store_factory``."""

    # --- fixtures ---------------------------------------------------------------------------
    @pytest.fixture
    def dmem_bridge(self) -> Iterator[LoopBridge]:
        with LoopBridge() as bridge:
            yield bridge

    @pytest.fixture
    def dmem_profile(self, request: pytest.FixtureRequest) -> str:
        """The Hypothesis profile name: --dmem-profile, DMEM_HYPOTHESIS_PROFILE, or ci."""
        try:
            option = request.config.getoption("dmem_profile")
        except ValueError:  # the pytest plugin is not loaded
            option = None
        return selected_profile(option)

    @pytest.fixture
    def dmem_settings(self, dmem_profile: str) -> hypothesis_settings:
        return profile_settings(dmem_profile)

    @pytest.fixture
    def vector_pool(
        self, dmem_bridge: LoopBridge, vector_store_factory: VectorStoreFactory
    ) -> Iterator[_Pool]:
        pool = _Pool(vector_store_factory, f"dmemv-{uuid.uuid4().hex[:16]}")
        try:
            yield pool
        finally:
            dmem_bridge.run(pool.close_all())

    @pytest.fixture
    def vstore(self, dmem_bridge: LoopBridge, vector_pool: _Pool) -> VectorStore:
        """An initialized, EMPTY vector store in a namespace of its own."""
        store = dmem_bridge.run(vector_pool.open())
        leftover = dmem_bridge.run(store.count())
        if leftover:
            pytest.fail(f"vector_store_factory gave a non-empty store ({leftover} records)")
        return store

    # --- records ----------------------------------------------------------------------------
    def test_upsert_get_roundtrip(self, dmem_bridge: LoopBridge, vstore: VectorStore) -> None:
        records = [
            VectorRecord("a", (1.0, 2.0, 3.0), {"s": "x:y", "i": -(2**62), "f": 0.1, "b": True}),
            VectorRecord("é\u0301 *?[", (-1.5, 0.25, 1e-3), {}, "a document"),
            VectorRecord("c", (0.5, 0.5, -0.5), {"empty": "", "zero": 0}, ""),
        ]

        async def run() -> None:
            assert await vstore.upsert(records) == 3
            assert await vstore.count() == 3
            got = await vstore.get(["c", "missing", "a", "c", "é\u0301 *?["])
            assert [r.id for r in got] == ["c", "a", "é\u0301 *?["]
            by_id = {r.id: r for r in records}
            for record in got:
                want = by_id[record.id]
                assert record.vector is not None and want.vector is not None
                assert len(record.vector) == len(want.vector)
                for x, y in zip(record.vector, want.vector, strict=True):
                    assert math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-7)
                assert dict(record.metadata) == dict(want.metadata)
                for name, value in want.metadata.items():
                    assert type(record.metadata[name]) is type(value), name
                assert record.document == want.document
            assert await vstore.get(["nothing"]) == []

        dmem_bridge.run(run())

    def test_upsert_replaces(self, dmem_bridge: LoopBridge, vstore: VectorStore) -> None:
        """Chroma merges metadata on upsert; the contract replaces the whole record."""

        async def run() -> None:
            await vstore.upsert(
                [VectorRecord("k", (1.0, 0.0), {"a": 1, "b": "x", "keep": True}, "first")]
            )
            await vstore.upsert([VectorRecord("k", (0.0, 1.0), {"keep": False, "c": 2.5})])
            (record,) = await vstore.get(["k"])
            assert dict(record.metadata) == {"keep": False, "c": 2.5}
            assert record.document is None
            assert record.vector is not None
            assert math.isclose(record.vector[1], 1.0, rel_tol=1e-6)
            assert await vstore.query([1.0, 0.0], k=5, where={"a": 1}) == []
            assert await vstore.query([1.0, 0.0], k=5, where={"b": {"$ne": "x"}}) != []
            await vstore.upsert([VectorRecord("k", (0.0, 1.0), None, "second")])  # type: ignore[arg-type]
            (record,) = await vstore.get(["k"])
            assert dict(record.metadata) == {} and record.document == "second"
            assert await vstore.count() == 1

        dmem_bridge.run(run())

    def test_delete(self, dmem_bridge: LoopBridge, vstore: VectorStore) -> None:
        async def run() -> None:
            await vstore.upsert([VectorRecord(f"d{i}", (1.0, float(i) + 1.0)) for i in range(5)])
            assert await vstore.delete(["d1", "d3", "d1", "nope"]) == 2
            assert await vstore.count() == 3
            assert [r.id for r in await vstore.get(["d0", "d1", "d2", "d3", "d4"])] == [
                "d0",
                "d2",
                "d4",
            ]
            hits = await vstore.query([1.0, 2.0], k=10)
            assert sorted(h.id for h in hits) == ["d0", "d2", "d4"]
            assert await vstore.delete(["d1"]) == 0
            assert await vstore.delete([]) == 0
            assert await vstore.clear() == 3
            assert await vstore.count() == 0
            assert await vstore.query([1.0, 2.0], k=10) == []

        dmem_bridge.run(run())

    # --- scores -----------------------------------------------------------------------------
    def test_cosine_scores_highest_first(
        self, dmem_bridge: LoopBridge, vstore: VectorStore
    ) -> None:
        async def run() -> None:
            await vstore.upsert(
                [
                    VectorRecord("same", (2.0, 0.0, 0.0)),
                    VectorRecord("diag", (1.0, 1.0, 0.0)),
                    VectorRecord("ortho", (0.0, 0.0, 3.0)),
                    VectorRecord("opposite", (-5.0, 0.0, 0.0)),
                ]
            )
            hits = await vstore.query([1.0, 0.0, 0.0], k=4)
            assert [h.id for h in hits] == ["same", "diag", "ortho", "opposite"]
            want = [1.0, 1 / math.sqrt(2), 0.0, -1.0]
            for hit, score in zip(hits, want, strict=True):
                assert math.isclose(hit.score, score, abs_tol=1e-5), (hit, score)
            assert [h.id for h in await vstore.query([1.0, 0.0, 0.0], k=2)] == ["same", "diag"]

        dmem_bridge.run(run())

    def test_matches_brute_force(self, dmem_bridge: LoopBridge, vstore: VectorStore) -> None:
        """Exact: same ids, scores to 1e-5. Approximate: recall@10 >= 0.95 on 2,000 records."""
        rng = random.Random(20240611)
        records = [
            VectorRecord(f"v{i:05d}", _random_vector(rng, RECALL_DIMENSION))
            for i in range(RECALL_RECORDS)
        ]
        queries = [_random_vector(rng, RECALL_DIMENSION) for _ in range(RECALL_QUERIES)]

        async def run() -> None:
            await vstore.upsert(records)
            assert await vstore.count() == RECALL_RECORDS
            found = wanted = 0
            for query in queries:
                want = brute_force(records, query, 10)
                hits = await vstore.query(query, k=10)
                assert len(hits) == 10
                scores = [h.score for h in hits]
                assert scores == sorted(scores, reverse=True), "scores must be highest first"
                truth = {r.id: r for r in records}
                for hit in hits:
                    true_score = _cosine(query, truth[hit.id].vector or ())
                    tolerance = EXACT_TOLERANCE if vstore.exact else APPROX_SCORE_TOLERANCE
                    assert math.isclose(hit.score, true_score, abs_tol=tolerance), hit
                if vstore.exact:
                    assert [h.id for h in hits] == [i for i, _ in want]
                    for hit, (_, score) in zip(hits, want, strict=True):
                        assert math.isclose(hit.score, score, abs_tol=EXACT_TOLERANCE)
                found += len({h.id for h in hits} & {i for i, _ in want})
                wanted += len(want)
            recall = found / wanted
            assert recall >= (1.0 if vstore.exact else RECALL_TARGET), f"recall@10 = {recall:.3f}"

        dmem_bridge.run(run())

    # --- filters ----------------------------------------------------------------------------
    def test_where_filters(self, dmem_bridge: LoopBridge, vstore: VectorStore) -> None:
        """Each filter keeps exactly the records the core's evaluator keeps."""
        rng = random.Random(7)
        records = _filter_records(rng, 60, 4)
        query = _random_vector(rng, 4)

        async def run() -> None:
            await vstore.upsert(records)
            for where in _FILTERS:
                want = brute_force(records, query, len(records), where)
                hits = await vstore.query(query, k=len(records), where=where)
                assert sorted(h.id for h in hits) == sorted(i for i, _ in want), where
                for hit in hits:
                    assert where_matches(normalize_where(where), hit.metadata), (where, hit)
                limited = await vstore.query(query, k=3, where=where)
                assert [h.id for h in limited] == [i for i, _ in want[:3]], where

        dmem_bridge.run(run())

    # --- dimensions -------------------------------------------------------------------------
    def test_dimension_fixed(self, dmem_bridge: LoopBridge, vstore: VectorStore) -> None:
        async def run() -> None:
            await vstore.upsert([VectorRecord("a", (1.0, 2.0, 3.0))])
            with pytest.raises(InvalidArgumentError):
                await vstore.upsert([VectorRecord("b", (1.0, 2.0, 3.0, 4.0))])
            with pytest.raises(InvalidArgumentError):
                await vstore.upsert([VectorRecord("a", (1.0, 2.0))])
            with pytest.raises(InvalidArgumentError):
                await vstore.query([1.0, 2.0], k=1)
            with pytest.raises(InvalidArgumentError):
                await vstore.upsert(
                    [VectorRecord("c", (1.0, 2.0, 3.0)), VectorRecord("d", (1.0, 2.0))]
                )
            assert await vstore.count() == 1
            (record,) = await vstore.get(["a"])
            assert record.vector is not None and len(record.vector) == 3

        dmem_bridge.run(run())

    # --- invalid input ----------------------------------------------------------------------
    def test_invalid_input(self, dmem_bridge: LoopBridge, vstore: VectorStore) -> None:
        """Bad ids, vectors, metadata, k and filters: InvalidArgumentError, nothing written."""

        async def run() -> None:
            good = VectorRecord("ok", (1.0, 0.0, 0.0))
            for bad_id in _BAD_IDS:
                with pytest.raises(InvalidArgumentError):
                    await vstore.upsert([good, {"id": bad_id, "vector": [1.0, 0.0, 0.0]}])
                with pytest.raises(InvalidArgumentError):
                    await vstore.get([bad_id])
                with pytest.raises(InvalidArgumentError):
                    await vstore.delete(["ok", bad_id])
            for vector in _BAD_VECTORS:
                with pytest.raises(InvalidArgumentError):
                    await vstore.upsert([good, {"id": "v", "vector": vector}])
                if vector is not None:
                    with pytest.raises(InvalidArgumentError):
                        await vstore.query(vector, k=1)
            for metadata in _BAD_METADATA:
                with pytest.raises(InvalidArgumentError):
                    await vstore.upsert(
                        [good, {"id": "m", "vector": [1, 0, 0], "metadata": metadata}]
                    )
            for bad in ({"id": "x", "vector": [1.0], "extra": 1}, {"vector": [1.0]}, "x", 3):
                with pytest.raises(InvalidArgumentError):
                    await vstore.upsert([good, bad])  # type: ignore[list-item]
            with pytest.raises(InvalidArgumentError):
                await vstore.upsert([good, VectorRecord("ok", (0.0, 1.0, 0.0))])
            with pytest.raises(InvalidArgumentError):
                await vstore.upsert([{"id": "nodoc"}])
            with pytest.raises(InvalidArgumentError):
                await vstore.get("ok")
            assert await vstore.count() == 0
            await vstore.upsert([good])
            for k in _BAD_K:
                with pytest.raises(InvalidArgumentError):
                    await vstore.query([1.0, 0.0, 0.0], k=k)
            for where in BAD_WHERE:
                with pytest.raises(InvalidArgumentError):
                    await vstore.query([1.0, 0.0, 0.0], k=1, where=where)
            assert await vstore.count() == 1

        dmem_bridge.run(run())

    # --- embedders --------------------------------------------------------------------------
    def test_text_needs_embedder(self, dmem_bridge: LoopBridge, vstore: VectorStore) -> None:
        async def run() -> None:
            if vstore.embedder is not None:
                pytest.fail("vector_store_factory must honour embedder=None")
            with pytest.raises(InvalidArgumentError, match="embedder"):
                await vstore.query("what is jazz?", k=3)
            with pytest.raises(InvalidArgumentError, match="embedder"):
                await vstore.upsert([{"id": "t", "document": "text only"}])
            assert await vstore.count() == 0

        dmem_bridge.run(run())

    def test_text_query_with_embedder(self, dmem_bridge: LoopBridge, vector_pool: _Pool) -> None:
        docs = {
            "jazz": "Kind of Blue is a modal jazz album by Miles Davis",
            "rock": "Led Zeppelin IV is a hard rock album",
            "bread": "sourdough bread needs flour, water, salt and time",
        }

        async def run() -> None:
            store = await vector_pool.open("-text", embedder=HashEmbedder(dimension=128))
            await store.upsert(
                [{"id": k, "document": v, "metadata": {"k": k}} for k, v in docs.items()]
            )
            hits = await store.query(docs["bread"], k=3)
            assert hits[0].id == "bread" and math.isclose(hits[0].score, 1.0, abs_tol=1e-4)
            assert hits[0].document == docs["bread"]
            hits = await store.query("a modal jazz album by Miles", k=1)
            assert hits[0].id == "jazz"
            hits = await store.query("album", k=3, where={"k": {"$ne": "jazz"}})
            assert {h.id for h in hits} == {"rock", "bread"}

        dmem_bridge.run(run())

    # --- namespaces -------------------------------------------------------------------------
    def test_namespaces(self, dmem_bridge: LoopBridge, vector_pool: _Pool) -> None:
        async def run() -> None:
            a = await vector_pool.open("-a")
            ab = await vector_pool.open("-ab")
            await a.upsert([VectorRecord("x", (1.0, 0.0)), VectorRecord("y", (0.0, 1.0))])
            # Another namespace has its own dimension and sees nothing of the first.
            await ab.upsert([VectorRecord("x", (1.0, 1.0, 1.0), {"ns": "ab"})])
            assert await a.count() == 2 and await ab.count() == 1
            assert [h.id for h in await ab.query([1.0, 1.0, 1.0], k=10)] == ["x"]
            (record,) = await a.get(["x"])
            assert dict(record.metadata) == {}
            assert await ab.get(["y"]) == []
            assert await ab.delete(["y"]) == 0
            assert await ab.clear() == 1
            assert await a.count() == 2
            again = await vector_pool.open("-a")
            assert await again.count() == 2

        dmem_bridge.run(run())

    # --- lifecycle --------------------------------------------------------------------------
    def test_lifecycle_and_health(self, dmem_bridge: LoopBridge, vector_pool: _Pool) -> None:
        async def run() -> None:
            store = await vector_pool.open("-life")
            report = await store.health()
            assert isinstance(report, HealthStatus) and report.ok, report
            await store.initialize()  # idempotent
            await store.aclose()
            await store.aclose()
            for call in (
                store.count(),
                store.get(["a"]),
                store.query([1.0], k=1),
                store.upsert([VectorRecord("a", (1.0,))]),
                store.delete(["a"]),
            ):
                with pytest.raises(NotInitializedError):
                    await call
            closed = await store.health()
            assert not closed.ok
            with pytest.raises(NotInitializedError):
                await store.initialize()

        dmem_bridge.run(run())

    def test_any_argument(
        self, dmem_bridge: LoopBridge, vstore: VectorStore, dmem_settings: hypothesis_settings
    ) -> None:
        """Every public VectorStore method, called with arguments of any type and value.

        Each call must return a result of its type or raise an InvalidArgumentError,
        and a refused call must leave the records as they were (count, vectors,
        metadata, documents). The store validates before any I/O, so this mostly proves
        the facade on this backend; below it, it catches a backend that fails (a
        ProviderError) on a filter or record the store accepted: Chroma fails on a
        where operand of 2**63 or a lone surrogate (the store refuses both first).
        """

        @dmem_settings
        @given(calls=call_lists(VECTOR_SIGNATURES))
        @example(calls=CLASSIC_VECTOR_CALLS[:4])
        @example(calls=CLASSIC_VECTOR_CALLS[4:])
        def run(calls: list[Call]) -> None:
            dmem_bridge.run(check_vector_calls(vstore, calls))

        run()

    def test_errors_are_dmem_errors(self, dmem_bridge: LoopBridge, vstore: VectorStore) -> None:
        """Whatever the backend raises reaches the caller as a DmemError."""

        async def run() -> None:
            await vstore.upsert([VectorRecord("a", (1.0, 0.0))])
            for call in (
                vstore.query([1.0, 0.0, 0.0], k=1),
                vstore.upsert([VectorRecord("a", (1.0,))]),
            ):
                with pytest.raises(DmemError):
                    await call

        dmem_bridge.run(run())
