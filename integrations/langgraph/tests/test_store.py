"""DmemStore: semantic search, ttl, timestamps, errors, lifecycle; sync and async paths.

Every backend test runs on memory, a SQLite file, PostgreSQL and Redis (real servers, see
``store_support``). Semantic search uses a deterministic hash embedding and is compared with
LangGraph's InMemoryStore given the same embedder: the same items, the same order, the same
cosine scores. Vectors go to dmem's memory vector provider (``vector_url``), the key-value
side to the backend under test.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dmem
import pytest
from dmem_conformance import backend_missing
from langgraph.store.base import GetOp, InvalidNamespaceError, PutOp, SearchOp
from langgraph.store.dmem import DmemStore
from langgraph.store.memory import InMemoryStore

if TYPE_CHECKING:  # mypy names this directory's modules from the repository root
    from integrations.langgraph.tests.store_support import (
        DIMS,
        BackendTarget,
        aembed,
        embed,
        store_target,
    )
else:  # pytest (importlib mode) imports the helpers from this directory
    sys.path.insert(0, str(Path(__file__).parent))
    from store_support import DIMS, BackendTarget, aembed, embed, store_target

__all__ = ["store_target"]

DOCS: dict[str, dict[str, Any]] = {
    "py": {"text": "Python is a programming language", "topic": "code", "n": 1},
    "ts": {"text": "TypeScript adds types to JavaScript", "topic": "code", "n": 2},
    "cook": {"text": "Slow cooking a tomato sauce", "topic": "food", "n": 3},
    "bake": {"text": "Baking sourdough bread at home", "topic": "food", "n": 4},
    "run": {"text": "Training for a marathon run", "topic": "sport", "n": 5},
}


def _index(fields: list[str] | None = None, use_async: bool = False) -> Any:
    config: dict[str, Any] = {"dims": DIMS, "embed": aembed if use_async else embed}
    if fields is not None:
        config["fields"] = fields
    return config


def _store(target: BackendTarget, **kwargs: Any) -> DmemStore:
    if "index" in kwargs:
        kwargs.setdefault("vector_url", f"memory://vec-{uuid.uuid4().hex[:12]}")
    return DmemStore(target.url, namespace=target.namespace, **kwargs)


def _fill(store: DmemStore | InMemoryStore, docs: dict[str, dict[str, Any]] = DOCS) -> None:
    for key, value in docs.items():
        store.put(("docs", value["topic"]), key, value)


def _ranked(items: list[Any]) -> list[tuple[str, float | None]]:
    return [(i.key, None if i.score is None else round(i.score, 9)) for i in items]


# --- semantic search ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "kwargs"),
    [
        ("python programming", {}),
        ("bread baking", {"limit": 2}),
        ("bread baking", {"limit": 2, "offset": 1}),
        ("cooking tomato", {"filter": {"topic": "food"}}),
        ("marathon", {"filter": {"n": {"$gte": 3}}, "limit": 3}),
    ],
)
def test_semantic_search_ranks_as_in_memory_store(
    store_target: BackendTarget, query: str, kwargs: dict[str, Any]
) -> None:
    model = InMemoryStore(index=_index(["text"]))
    _fill(model)
    with _store(store_target, index=_index(["text"])) as store:
        _fill(store)
        for prefix in [(), ("docs",), ("docs", "food")]:
            want = model.search(prefix, query=query, **kwargs)
            got = store.search(prefix, query=query, **kwargs)
            assert _ranked(got) == _ranked(want)
            assert [i.value for i in got] == [i.value for i in want]
            assert all(isinstance(i.score, float) for i in got)


async def test_semantic_search_async(store_target: BackendTarget) -> None:
    model = InMemoryStore(index=_index(["text"], use_async=True))
    store = _store(store_target, index=_index(["text"], use_async=True))
    try:
        for key, value in DOCS.items():
            await model.aput(("docs", value["topic"]), key, value)
            await store.aput(("docs", value["topic"]), key, value)
        want = await model.asearch(("docs",), query="sourdough bread", limit=3)
        got = await store.asearch(("docs",), query="sourdough bread", limit=3)
        assert _ranked(got) == _ranked(want)
        assert got[0].key == "bake"
    finally:
        await store.aclose()


def test_semantic_search_fields_and_index_argument(store_target: BackendTarget) -> None:
    # Two fields (max pooling over them), a list field (one vector per element), an item
    # put with index=False (unscored, filling the page after the scored ones), and a put's
    # own index= paths; all as InMemoryStore does them.
    docs: list[tuple[str, dict[str, Any], Any]] = [
        ("a", {"title": "garden tools", "body": "a rake and a spade"}, None),
        ("b", {"title": "kitchen", "body": "knives for the garden party"}, None),
        ("c", {"title": "music", "body": "violin", "tags": ["garden", "tools"]}, ["tags[*]"]),
        ("d", {"title": "garden tools", "body": "not indexed"}, False),
    ]
    index = _index(["title", "body"])
    model = InMemoryStore(index=index)
    with _store(store_target, index=index) as store:
        for key, value, idx in docs:
            model.put(("n",), key, value, index=idx)
            store.put(("n",), key, value, index=idx)
        for limit in (2, 3, 4, 10):
            want = model.search(("n",), query="garden tools", limit=limit)
            got = store.search(("n",), query="garden tools", limit=limit)
            assert _ranked(got) == _ranked(want)
        assert store.search(("n",), query="garden tools", limit=10)[-1].score is None


def test_reput_and_delete_drop_their_vectors(store_target: BackendTarget) -> None:
    vector_url = f"memory://vec-{uuid.uuid4().hex[:12]}"
    with _store(store_target, index=_index(["text"]), vector_url=vector_url) as store:
        _fill(store)
        store.put(("docs", "code"), "py", {"topic": "code", "n": 1})  # no text any more
        store.delete(("docs", "food"), "cook")
        hits = store.search(("docs",), query="Python programming language", limit=10)
        scored = [i.key for i in hits if i.score is not None]
        assert "py" not in scored and "cook" not in [i.key for i in hits]
        assert hits[-1].key == "py" and hits[-1].score is None  # unscored, after the others

        async def count() -> int:
            async with dmem.open_vector(vector_url, namespace=store_target.namespace) as vs:
                return await vs.count()

        # memory://NAME vector stores of one process share their data.
        assert asyncio.run(count()) == len(DOCS) - 2


def test_query_without_index_is_ignored(store_target: BackendTarget) -> None:
    with _store(store_target) as store:
        _fill(store)
        got = store.search(("docs",), query="anything", limit=3)
        assert [i.key for i in got] == ["py", "ts", "bake"]  # (namespace, key) order
        assert all(i.score is None for i in got)


# --- items, timestamps, filters ------------------------------------------------------------


def test_items_and_timestamps(store_target: BackendTarget) -> None:
    with _store(store_target) as store:
        store.put(("u", "1"), "prefs", {"theme": "dark"})
        first = store.get(("u", "1"), "prefs")
        assert first is not None
        assert first.namespace == ("u", "1") and first.key == "prefs"
        assert first.value == {"theme": "dark"}
        assert first.created_at == first.updated_at
        assert first.created_at.tzinfo is not None
        time.sleep(0.01)
        store.put(("u", "1"), "prefs", {"theme": "light"})
        second = store.get(("u", "1"), "prefs")
        assert second is not None
        assert second.created_at == first.created_at  # kept on update
        assert second.updated_at > first.updated_at
        assert second.dict()["value"] == {"theme": "light"}
        store.delete(("u", "1"), "prefs")
        assert store.get(("u", "1"), "prefs") is None
        store.put(("u", "1"), "prefs", {"theme": "dark"})
        third = store.get(("u", "1"), "prefs")
        assert third is not None and third.created_at > first.created_at  # a new item


def test_filters(store_target: BackendTarget) -> None:
    with _store(store_target) as store:
        _fill(store)
        store.put(("docs", "x"), "odd", {"n": "not a number", "topic": "x"})

        def keys(flt: dict[str, Any]) -> list[str]:
            return sorted(i.key for i in store.search((), filter=flt, limit=100))

        assert keys({"topic": "food"}) == ["bake", "cook"]
        assert keys({"n": {"$gt": 2, "$lte": 4}}) == ["bake", "cook"]
        assert keys({"n": {"$ne": 1}, "topic": "code"}) == ["ts"]
        assert keys({"n": {"$lt": 100}}) == sorted(DOCS)  # "not a number" does not match
        assert keys({"missing": None}) == sorted([*DOCS, "odd"])  # as InMemoryStore: get() is None


def test_list_namespaces_max_depth_dedupes(store_target: BackendTarget) -> None:
    with _store(store_target) as store:
        for ns in [("a", "b", "c"), ("a", "b", "d"), ("a", "x"), ("b", "b")]:
            store.put(ns, "k", {"v": 1})
        assert store.list_namespaces(max_depth=2) == [("a", "b"), ("a", "x"), ("b", "b")]
        assert store.list_namespaces(prefix=("a", "*"), max_depth=1) == [("a",)]
        assert store.list_namespaces(suffix=("b",)) == [("b", "b")]
        assert store.list_namespaces(prefix=("*", "b")) == [
            ("a", "b", "c"),
            ("a", "b", "d"),
            ("b", "b"),
        ]
        assert store.list_namespaces(limit=1, offset=1) == [("a", "b", "d")]


# --- ttl --------------------------------------------------------------------------------------

TTL = 0.02  # minutes: 1.2 s; the checks leave 0.4 s or more either side of every expiry


def test_ttl_refresh_on_read(store_target: BackendTarget) -> None:
    with _store(store_target, ttl={"default_ttl": TTL, "refresh_on_read": True}) as store:
        store.put(("t",), "read", {"v": 1})
        store.put(("t",), "unread", {"v": 2})
        store.put(("t",), "no-refresh", {"v": 3})
        store.put(("t",), "forever", {"v": 4}, ttl=None)
        time.sleep(0.8)
        assert store.get(("t",), "read") is not None  # refreshed: 1.2 s from now
        assert store.get(("t",), "no-refresh", refresh_ttl=False) is not None
        time.sleep(0.8)  # 1.6 s after the puts
        assert store.get(("t",), "unread", refresh_ttl=False) is None
        assert store.get(("t",), "no-refresh") is None
        assert store.get(("t",), "read") is not None
        assert store.get(("t",), "forever") is not None
        assert [i.key for i in store.search(("t",))] == ["forever", "read"]


async def test_ttl_search_refreshes_async(store_target: BackendTarget) -> None:
    store = _store(store_target, ttl={"default_ttl": TTL})
    try:
        await store.aput(("t",), "a", {"v": 1})
        await store.aput(("t",), "b", {"v": 2}, ttl=TTL * 10)
        await asyncio.sleep(0.8)
        assert [i.key for i in await store.asearch(("t",), filter={"v": 1})] == ["a"]
        await asyncio.sleep(0.8)
        assert await store.aget(("t",), "a", refresh_ttl=False) is not None  # refreshed
        await asyncio.sleep(0.8)
        assert await store.aget(("t",), "a") is None
        assert await store.alist_namespaces() == [("t",)]
        await store.adelete(("t",), "b")
        assert await store.alist_namespaces() == []
    finally:
        await store.aclose()


def test_sweeper_removes_vectors_of_expired_items(store_target: BackendTarget) -> None:
    store = _store(store_target, index=_index(["text"]), ttl={"sweep_interval_minutes": 1})
    with store:
        store.put(("s",), "short", {"text": "gone soon"}, ttl=0.005)  # 0.3 s
        store.put(("s",), "long", {"text": "stays"})
        time.sleep(0.6)
        assert [i.key for i in store.search(("s",), query="gone soon")] == ["long"]
        assert store.sweep_ttl() == 1
        assert store.sweep_ttl() == 0
        future = store.start_ttl_sweeper(sweep_interval_minutes=1)
        assert not future.done()
        assert store.stop_ttl_sweeper(timeout=5)
        future.result(timeout=5)


# --- errors -----------------------------------------------------------------------------------


def test_bad_input_fails_before_any_write(store_target: BackendTarget) -> None:
    with _store(store_target) as store:
        bad_batches: list[list[Any]] = [
            [PutOp(("e",), "k", {"v": 1}), SearchOp(("e",), filter={"v": {"$regex": "x"}})],
            [PutOp(("e",), "k", {"v": 1}), SearchOp(("e",), limit=-1)],
            [PutOp(("e",), "k", {"v": 1}), PutOp(("e",), "k2", {"v": 1}, ttl=0)],
            [PutOp(("e",), "k", {"v": 1}), PutOp(("e",), "k2", {"v": 1}, ttl=float("nan"))],
            [PutOp(("e",), "k", {"v": 1}), PutOp(("e",), "k2", ["not", "a", "dict"])],  # type: ignore[arg-type]
            [PutOp(("e",), "k", {"v": 1}), GetOp(("e",), 3)],  # type: ignore[arg-type]
            [PutOp(("e",), "k", {"v": 1}), "not an op"],
        ]
        for ops in bad_batches:
            with pytest.raises(dmem.InvalidArgumentError):
                store.batch(ops)
        assert store.search(("e",)) == []
        with pytest.raises(dmem.InvalidValueError):
            store.put(("e",), "k", {"v": "lone \ud800 surrogate"})
        with pytest.raises(dmem.InvalidValueError):
            store.put(("e",), "k", {"v": float("inf")})
        with pytest.raises(dmem.InvalidKeyError):
            store.put(("e",), "k" * 2000, {"v": 1})
        with pytest.raises(InvalidNamespaceError):
            store.put(("a.b",), "k", {"v": 1})
        assert store.search(("e",)) == []


def test_constructor_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(dmem.InvalidArgumentError, match="vector_url"):
        DmemStore(url, index=_index())
    with pytest.raises(dmem.InvalidArgumentError):
        DmemStore(url, ttl={"default_ttl": -1})
    with pytest.raises(dmem.InvalidArgumentError):
        DmemStore(url, ttl={"refresh_on_reed": True})  # type: ignore[arg-type]
    with pytest.raises(dmem.InvalidArgumentError):
        DmemStore(url, index={"dims": 0, "embed": embed}, vector_url="memory://")  # type: ignore[arg-type]
    with pytest.raises(dmem.InvalidArgumentError):
        DmemStore(url, namespace=3)  # type: ignore[arg-type]
    with pytest.raises(dmem.PluginNotFoundError):
        DmemStore("nosuch://x").get(("a",), "k")


def test_wrong_dims_is_refused(tmp_path: Path) -> None:
    index = {"dims": DIMS + 1, "embed": embed}
    with DmemStore(f"sqlite:///{tmp_path / 'x.db'}", index=index, vector_url="memory://") as s:  # type: ignore[arg-type]
        with pytest.raises(dmem.InvalidArgumentError, match="dimensions"):
            s.put(("a",), "k", {"text": "hello"})
        assert s.get(("a",), "k") is None


def test_closed_store_and_repr(postgres_url: str) -> None:
    store = DmemStore("postgresql://ada:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in repr(store)
    store.close()
    with pytest.raises(dmem.NotInitializedError):
        store.get(("a",), "k")
    with DmemStore.from_conn_string(postgres_url, namespace=f"lg-{uuid.uuid4().hex}") as s:
        s.put(("a",), "k", {"v": 1})
        assert s.get(("a",), "k") is not None
    with pytest.raises(dmem.NotInitializedError):
        s.search(("a",))


async def test_afrom_conn_string_and_unreachable_backend(redis_url: str) -> None:
    async with DmemStore.afrom_conn_string(redis_url, namespace=f"lg-{uuid.uuid4().hex}") as s:
        await s.aput(("a",), "k", {"v": 1})
        item = await s.aget(("a",), "k")
        assert item is not None and item.value == {"v": 1}
        assert s.get(("a",), "k") == item  # the sync path sees the same data
    down = DmemStore("redis://127.0.0.1:1/0", timeout=1, retries=0)
    with pytest.raises(dmem.ProviderError):
        await down.aget(("a",), "k")
    await down.aclose()


def test_chroma_vectors_rank_as_in_memory_store(tmp_path: Path) -> None:
    # Any dmem vector URL: Chroma (embedded) beside a SQLite file; Chroma keeps float32
    # vectors, so scores agree to 1e-6.
    try:
        import dmem_chroma  # noqa: F401
    except ImportError:
        backend_missing("dmem-chroma is not installed")
    index = _index(["text"])
    model = InMemoryStore(index=index)
    _fill(model)
    url = f"sqlite:///{tmp_path / 'kv.db'}"
    with DmemStore(url, index=index, vector_url=f"chroma://{tmp_path / 'chroma'}") as store:
        _fill(store)
        for query in ("python programming", "bread", "marathon training"):
            want = model.search(("docs",), query=query, limit=4)
            got = store.search(("docs",), query=query, limit=4)
            assert [i.key for i in got] == [i.key for i in want]
            for a, b in zip(got, want, strict=True):
                assert a.score == pytest.approx(b.score, abs=1e-6)


def test_async_calls_from_successive_event_loops(sqlite_url: str) -> None:
    # Each asyncio.run is a new loop: the store opens its async connection again there.
    store = DmemStore(sqlite_url)
    asyncio.run(store.aput(("a",), "k", {"v": 1}))
    got = asyncio.run(store.aget(("a",), "k"))
    assert got is not None and got.value == {"v": 1}
    asyncio.run(store.aclose())
    with pytest.raises(dmem.NotInitializedError):
        asyncio.run(store.aget(("a",), "k"))


def test_foreign_data_is_corrupt_value_error(sqlite_url: str) -> None:
    # Another program's key shaped like an item, in the store's dmem namespace.
    with dmem.open_sync(sqlite_url, namespace="shared") as kv:
        kv.set("a/k", {"not": "an item"})
        kv.set("lock-without-slash", "x")  # never taken for an item
    with DmemStore(sqlite_url, namespace="shared") as store:
        with pytest.raises(dmem.CorruptValueError, match="'a/k'"):
            store.get(("a",), "k")
        with pytest.raises(dmem.CorruptValueError):
            store.search(("a",))
        assert store.list_namespaces() == [("a",)]
        store.put(("b",), "k", {"v": 1})
        assert [i.key for i in store.search(("b",))] == ["k"]
