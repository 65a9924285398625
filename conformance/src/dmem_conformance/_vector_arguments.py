"""Every public ``VectorStore`` method called with arguments of any type (VectorSuite)."""

from __future__ import annotations

import decimal
import math
from collections.abc import Mapping
from typing import Any

from dmem import HealthStatus, InvalidArgumentError, VectorRecord, VectorStore
from hypothesis import strategies as st

from ._arguments import Call, Param, safe_repr
from ._kv_arguments import check_refusal
from .strategies import IntSub, StrSub, huge_int, keys

__all__ = ["BAD_WHERE", "CLASSIC_VECTOR_CALLS", "VECTOR_SIGNATURES", "check_vector_calls"]

_INT64 = (-(2**63), 2**63 - 1)
# Seeded in every example and never drawn: the store is never empty, so its dimension
# (3) stays fixed and a vector of another one is always refused.
_ANCHOR = "anchor-\u2603-dmemc"
_IDS = ("v1", "v2", "v3", "new")
_id = st.one_of(st.sampled_from(_IDS), keys())
_id_bad = st.sampled_from(("", "a\x00b", "x" * 1025, "\ud800", 1, None, b"id", StrSub("v1")))
# Non-zero (the first component is), finite, three dimensions.
_vector = st.tuples(st.floats(0.125, 8.0), st.floats(-8.0, 8.0), st.floats(-8.0, 8.0)).flatmap(
    lambda v: st.sampled_from((v, list(v)))
)
_vector_bad = st.sampled_from(
    (
        [],
        [0.0, 0.0, 0.0],
        [1.0, math.nan, 0.0],
        [1.0, math.inf, 0.0],
        [1.0, "2", 0.0],
        [True, 1.0, 0.0],
        [1.0, 2.0],
        [1.0, 2.0, 3.0, 4.0],
        {1.0, 2.0, 3.0},
        {"a": 1.0, "b": 2.0, "c": 3.0},
        [decimal.Decimal("sNaN"), 1.0, 1.0],
        [10**400, 1.0, 1.0],
        [1j, 1.0, 1.0],
        "abc",
        b"abc",
    )
)
_metadata = st.dictionaries(
    st.one_of(st.sampled_from(("genre", "year", "n")), keys()),
    st.one_of(
        st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=8),
        st.integers(*_INT64),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
    ),
    max_size=3,
)
_metadata_bad = st.sampled_from(
    (
        {"a": None},
        {"a": [1, 2]},
        {"a": {"b": 1}},
        {"a": math.nan},
        {"a": 2**63},
        {"": 1},
        {1: "x"},
        {"a": "\ud800"},
        {"a": "a\x00"},
        "not a mapping",
    )
)
_document = st.one_of(st.none(), st.text(max_size=12).filter(lambda t: "\x00" not in t))
_record = st.one_of(
    st.builds(VectorRecord, _id, _vector, _metadata, _document),
    st.fixed_dictionaries(
        {"id": _id, "vector": _vector}, optional={"metadata": _metadata, "document": _document}
    ),
)
_record_bad = st.one_of(
    st.sampled_from(
        (
            "x",
            3,
            {"vector": [1.0, 0.0, 0.0]},
            {"id": "x", "vector": [1.0, 0.0, 0.0], "extra": 1},
            {"id": "t", "document": "text, and no embedder"},
            {"id": "x", "vector": [1.0, 0.0, 0.0], 1: "mixed field names"},
        )
    ),
    st.fixed_dictionaries({"id": _id_bad, "vector": _vector}),
    st.fixed_dictionaries({"id": _id, "vector": _vector_bad}),
    st.fixed_dictionaries({"id": _id, "vector": _vector, "metadata": _metadata_bad}),
    st.fixed_dictionaries(
        {"id": _id, "vector": _vector, "document": st.sampled_from((5, b"d", "\ud800"))}
    ),
)
_records = st.lists(_record, max_size=3)
_records_bad = st.one_of(
    st.sampled_from(("ab", b"ab", 5)),
    st.builds(VectorRecord, _id, _vector),
    st.lists(st.one_of(_record, _record_bad), min_size=1, max_size=3),
)
_k_bad = st.sampled_from((0, -1, True, 1.5, "10", 10_001, None, IntSub(3), 3.0, 10**400))
_WHERE = (
    {"genre": "jazz"},
    {"genre": {"$ne": "jazz"}},
    {"year": {"$gte": 1990, "$lt": 2000}},
    {"n": {"$in": [0, "1", True]}},
    {"$or": [{"genre": "jazz"}, {"year": {"$lt": 1985}}]},
    {"missing": {"$nin": ["a"]}},
)
BAD_WHERE: tuple[Any, ...] = (
    {},
    {"$bogus": 1},
    {"a": {"$bogus": 1}},
    {"a": {"$gt": "x"}},
    {"a": {"$gt": True}},
    {"a": {"$in": []}},
    {"a": {"$in": "abc"}},
    {"a": {"$eq": [1]}},
    {"a": {"$eq": None}},
    {"$and": []},
    {"$or": {"a": 1}},
    {"a": math.nan},
    "a == 1",
)
"""Filters every vector store must refuse with InvalidArgumentError (also VectorSuite's)."""
_where_bad = st.one_of(
    st.sampled_from(
        (
            *BAD_WHERE,
            {"a": {"$gt": 10**400}},
            {"n": 2**63},
            {"n": {"$in": [2**64, 1]}},
            {"s": "\ud800"},
            {"\ud800": 1},
            {"": 1},
        )
    ),
    st.builds(lambda: {"a": huge_int()}),
)
_ids = st.lists(_id, max_size=4)
_ids_arg = st.one_of(_ids, _ids.map(tuple), st.builds(iter, _ids))
_ids_bad = st.one_of(
    st.sampled_from(("v1", b"v1")), st.lists(st.one_of(_id, _id_bad), min_size=1, max_size=4)
)

IDS = Param("ids", _ids_arg, _ids_bad)
VECTOR_SIGNATURES: dict[str, list[Param]] = {
    "upsert": [Param("records", _records, _records_bad)],
    "query": [
        Param("query", _vector, st.one_of(_vector_bad, st.text(max_size=8))),
        Param("k", st.integers(1, 20), _k_bad, keyword=True),
        Param("where", st.one_of(st.none(), st.sampled_from(_WHERE)), _where_bad, keyword=True),
    ],
    "get": [IDS],
    "delete": [IDS],
    "count": [],
    "health": [],
}
"""The public data methods of :class:`dmem.VectorStore` and their parameters; not
``clear()``: it takes no argument, and an empty store would take a vector of any
dimension (which some backends then keep for the collection)."""

_RESULTS: dict[str, type] = {
    "upsert": int,
    "query": list,
    "get": list,
    "delete": int,
    "count": int,
    "health": HealthStatus,
}

CLASSIC_VECTOR_CALLS: list[Call] = [
    Call("upsert", 5),
    Call("get", 5),
    Call("delete", 5),
    Call("upsert", [{"id": "x", "vector": [1.0, 0.0, 0.0], 1: "x"}]),
    Call("query", [1.0, 0.0, 0.0], k=huge_int()),
    Call("query", [1.0, 0.0, 0.0], where={"n": {"$gt": 10**400}}),
    Call("query", {1.0, 2.0, 3.0}),
    Call("query", [1.0, 0.0, 0.0], where={"n": 2**63}),
    Call("query", [1.0, 0.0, 0.0], where={"s": "\ud800"}),
]
"""The mistakes the vector clause was written for, run first under every profile."""


def _record_ids(records: object) -> set[str]:
    """Ids a successful upsert may have written (to look them up afterwards)."""
    found: set[str] = set()
    for record in records if isinstance(records, (list, tuple)) else ():
        if isinstance(record, VectorRecord):
            found.add(record.id)
        elif isinstance(record, Mapping) and isinstance(record.get("id"), str):
            found.add(record["id"])
    return found


async def _snapshot(store: VectorStore, ids: set[str]) -> tuple[int, dict[str, Any]]:
    records = await store.get(sorted(ids))
    shown = {r.id: (r.vector, sorted(r.metadata.items(), key=repr), r.document) for r in records}
    return await store.count(), shown


async def check_vector_calls(store: VectorStore, drawn: list[Call]) -> None:
    """Run ``drawn`` on ``store`` (emptied and seeded first); fail as the clause says."""
    await store.clear()
    await store.upsert(
        [
            VectorRecord(_ANCHOR, (1.0, 0.0, 0.0), {"genre": "jazz", "year": 1990}, "anchor"),
            VectorRecord("v1", (0.5, 0.5, 0.0), {"n": 1}),
            VectorRecord("v2", (0.0, 1.0, 1.0)),
        ]
    )
    ids = {_ANCHOR, *_IDS}
    before = None
    for call in drawn:
        if before is None:
            before = await _snapshot(store, ids)
        try:
            result = await call.run(store)
        except Exception as exc:  # noqa: BLE001 - what it is, is the test
            check_refusal(call, exc, (InvalidArgumentError,))
            refused: Exception | None = exc
        else:
            refused = None
        if refused is not None:
            after = await _snapshot(store, ids)
            assert after == before, (
                f"{call!r} was refused ({type(refused).__name__}: {refused}) but changed the "
                f"store: (count, records) {before!r} -> {after!r}"
            )
            continue
        wanted = _RESULTS[call.method]
        assert type(result) is wanted, (
            f"{call!r} returned {type(result).__name__} {safe_repr(result)}, not {wanted.__name__}"
        )
        if call.method == "upsert":
            ids |= _record_ids(call.args[0])
        before = None
