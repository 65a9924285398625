"""dmem.integrations.pykv: DmemStore, a py-key-value store over dmem, on memory, SQLite and Redis.

Two parts, both on every backend (a real SQLite file, a real redis-server: nothing mocked):

- The adapter's own tests: py-key-value's interface (values, ttl, batches, keys, collections,
  destroy_collection), where dmem is stricter and how it says so (py-key-value's errors), what it
  adds (put_if_absent, atomic across connections; the dmem store behind a collection), its
  lifecycle, and the way FastMCP stacks py-key-value's own adapters and wrappers on a store.
- py-key-value's own ``BaseStoreTests`` (its repository's ``tests/stores/base.py``), run on the
  adapter when ``DMEM_PYKV_UPSTREAM`` names a py-key-value source checkout. No py-key-value
  release ships its tests (neither the wheel nor the sdist), so they are not part of this
  repository; docs/integrations/pykv.md says how to run them and lists the one test excluded as
  peer-specific, with its reason (``UPSTREAM_EXCLUDED`` below).

Redis: ``DMEM_TEST_REDIS_URL``, or a throwaway redis-server on a free loopback port. Each test
uses its own ``namespace_prefix`` there, so tests never see each other's collections.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import importlib
import math
import os
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import dmem
import pytest
from dmem.integrations.pykv import DmemStore, namespace_of
from dmem_conformance import backend_missing, testkit
from key_value.aio import errors as kv_errors
from key_value.aio.protocols.key_value import (
    AsyncCullProtocol,
    AsyncDestroyCollectionProtocol,
    AsyncDestroyStoreProtocol,
    AsyncEnumerateCollectionsProtocol,
    AsyncEnumerateKeysProtocol,
    AsyncKeyValue,
)

BACKENDS = ("memory", "sqlite", "redis")
TEN_YEARS = 10 * 365.25 * 24 * 3600


REDIS_SERVER = ["redis-server", "--port", "{port}", "--bind", "127.0.0.1", "--save", ""]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of the backend: one that several adapters of the test can share."""
    if request.param == "memory":
        return f"memory://pykv-{uuid.uuid4().hex}"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pykv.db'}"
    return str(request.getfixturevalue("redis_url"))


Make = Callable[..., DmemStore]


@pytest.fixture
async def make(url: str) -> AsyncIterator[Make]:
    """DmemStore(url, ...) with this test's own namespace prefix; all closed after the test."""
    prefix = f"pykv-test-{uuid.uuid4().hex[:8]}/"
    made: list[DmemStore] = []

    def factory(**kwargs: Any) -> DmemStore:
        kwargs.setdefault("namespace_prefix", prefix)
        store = DmemStore(url, **kwargs)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.close()


@pytest.fixture
async def store(make: Make) -> AsyncIterator[DmemStore]:
    async with make() as opened:
        yield opened


async def _raises(error: type[Exception], call: Awaitable[Any]) -> Exception:
    with pytest.raises(error) as info:
        await call
    return info.value


# --- the interface ---------------------------------------------------------------------------


def test_protocols_it_offers_and_the_ones_it_does_not() -> None:
    store = DmemStore("memory://")
    assert isinstance(store, AsyncKeyValue)
    assert isinstance(store, AsyncEnumerateKeysProtocol)  # FastMCP's cache clear() uses these
    assert isinstance(store, AsyncDestroyCollectionProtocol)
    # dmem keeps no list of namespaces, so it cannot list collections or destroy them all;
    # expiry is purged by every backend itself.
    assert not isinstance(store, AsyncEnumerateCollectionsProtocol)
    assert not isinstance(store, AsyncDestroyStoreProtocol)
    assert not isinstance(store, AsyncCullProtocol)


VALUES: list[dict[str, Any]] = [
    {},
    {"null": None, "t": True, "f": False, "s": "", "unicode": "Hello 世界 🌍 é"},
    {"int64": [2**63 - 1, -(2**63), 0, 10**18], "floats": [1.5, -0.0, 1e308, 5e-324]},
    {"nested": {"a": [{"b": [None, {"c": "d"}]}]}, "123": "123", "true": "true"},
    {"list": list(range(1000)), "big": "x" * 100_000},
]


async def test_values_round_trip(store: DmemStore) -> None:
    for number, value in enumerate(VALUES):
        await store.put(f"k{number}", value, collection="values")
    keys = [f"k{n}" for n in range(len(VALUES))]
    for key, value in zip(keys, VALUES, strict=True):
        got = await store.get(key, collection="values")
        assert got == value
        assert repr(got) == repr(value)  # types too: -0.0 stays -0.0, ints stay ints
    assert await store.get_many([*keys, "missing", "k0"], collection="values") == [
        *VALUES,
        None,
        VALUES[0],
    ]
    assert await store.ttl("k1", collection="values") == (VALUES[1], None)
    assert await store.ttl_many(["k1", "missing"], collection="values") == [
        (VALUES[1], None),
        (None, None),
    ]
    # A tuple comes back as a list, as with json.
    await store.put("tuple", {"t": (1, "two", 3.0)}, collection="values")
    assert await store.get("tuple", collection="values") == {"t": [1, "two", 3.0]}


async def test_get_returns_a_fresh_dict(store: DmemStore) -> None:
    await store.put("k", {"list": [1]})
    first = await store.get("k")
    assert first is not None
    first["list"].append(2)
    assert await store.get("k") == {"list": [1]}


async def test_default_collection(make: Make) -> None:
    async with make(default_collection="mine") as store:
        await store.put("k", {"v": 1})
        assert await store.get("k", collection="mine") == {"v": 1}
        assert await store.keys() == ["k"]
        assert await store.get("k", collection="other") is None


async def test_batches(store: DmemStore) -> None:
    await store.put_many(["a", "b", "c"], [{"n": 1}, {"n": 2}, {"n": 3}], collection="batch")
    assert await store.get_many(["a", "b", "c"], collection="batch") == [
        {"n": 1},
        {"n": 2},
        {"n": 3},
    ]
    assert await store.delete_many(["a", "b", "zz", "a"], collection="batch") == 2
    assert await store.delete_many(["a", "b"], collection="batch") == 0
    assert await store.delete("c", collection="batch") is True
    assert await store.delete("c", collection="batch") is False
    with pytest.raises(ValueError, match="different number"):
        await store.put_many(["a"], [{"n": 1}, {"n": 2}], collection="batch")


async def test_a_refused_batch_writes_nothing(store: DmemStore) -> None:
    with pytest.raises(kv_errors.SerializationError):
        await store.put_many(["a", "b"], [{"ok": 1}, {"bad": math.nan}], collection="batch")
    with pytest.raises(kv_errors.InvalidKeyError):
        await store.put_many(["a", ""], [{"ok": 1}, {"ok": 2}], collection="batch")
    assert await store.keys("batch") == []


async def test_ttl_is_reported_and_applied(store: DmemStore) -> None:
    await store.put("long", {"v": 1}, ttl=100)
    value, left = await store.ttl("long")
    assert value == {"v": 1}
    assert left is not None
    assert 98 < left <= 100
    await store.put_many(["s1", "s2"], [{"v": 1}, {"v": 2}], ttl=0.25)
    await store.put("s3", {"v": 3}, ttl=0.25)
    [(_, left1), (_, left3)] = await store.ttl_many(["s1", "s3"])
    assert left1 is not None
    assert left3 is not None
    assert 0 < left1 <= 0.25
    assert 0 < left3 <= 0.25
    await store.put("long", {"v": 2})  # a put without ttl removes the expiry
    assert await store.ttl("long") == ({"v": 2}, None)
    await asyncio.sleep(0.4)
    assert await store.get_many(["s1", "s2", "s3"]) == [None, None, None]
    assert await store.ttl("s1") == (None, None)
    assert sorted(await store.keys()) == ["long"]


async def test_tiny_and_ten_year_ttls(store: DmemStore) -> None:
    await store.put("tiny", {"v": 1}, ttl=1e-9)  # dmem's resolution: 1 ms, rounded up
    await store.put("decade", {"v": 1}, ttl=TEN_YEARS)
    await store.put_many(["decade2"], [{"v": 1}], ttl=TEN_YEARS)
    await asyncio.sleep(0.05)
    assert await store.get("tiny") is None
    _, left = await store.ttl("decade2")
    assert left is not None
    assert TEN_YEARS - 5 < left <= TEN_YEARS


# --- collections are namespaces ----------------------------------------------------------------


async def test_collections_are_separate_namespaces(make: Make, url: str) -> None:
    async with make(namespace_prefix="app/") as store:
        await store.put("k", {"in": "a"}, collection="a")
        await store.put("k", {"in": "ab"}, collection="ab")
        await store.put("k2", {"in": "ab"}, collection="ab")
        assert await store.get("k", collection="a") == {"in": "a"}
        assert await store.keys("a") == ["k"]
        assert sorted(await store.keys("ab")) == ["k", "k2"]
        # The namespace is namespace_prefix + collection: a plain dmem store sees the data.
        async with dmem.open(url, namespace="app/ab") as plain:
            assert await plain.get("k") == {"in": "ab"}
            await plain.set("from-dmem", {"v": 1})
        assert await store.get("from-dmem", collection="ab") == {"v": 1}
        assert await store.destroy_collection("ab") is True
        assert await store.destroy_collection("ab") is False
        assert await store.keys("ab") == []
        assert await store.get("k", collection="a") == {"in": "a"}  # untouched
        await store.destroy_collection("a")


async def test_keys_limit(store: DmemStore) -> None:
    await store.put_many([f"k{i}" for i in range(30)], [{"i": i} for i in range(30)])
    every = await store.keys()
    assert sorted(every) == sorted(f"k{i}" for i in range(30))
    limited = await store.keys(limit=7)
    assert len(limited) == 7
    assert set(limited) <= set(every)
    assert await store.keys(limit=0) == []


@pytest.mark.parametrize(
    "collection",
    ["c" * 1500, "!@#$%^&*()[]?\\-_/:", "é and 世界 🌍", "*", "a b\tc\nd"],
    ids=["long", "punctuation-and-glob", "unicode", "star", "whitespace"],
)
async def test_collection_names(store: DmemStore, collection: str) -> None:
    await store.put("k", {"v": collection}, collection=collection)
    await store.put("k", {"v": "other"}, collection="other")
    assert await store.get("k", collection=collection) == {"v": collection}
    assert await store.keys(collection) == ["k"]
    assert await store.destroy_collection(collection) is True
    assert await store.get("k", collection="other") == {"v": "other"}


async def test_collections_too_long_for_a_namespace(make: Make, url: str) -> None:
    long_a, long_b = "é" * 600 + "a", "é" * 600 + "b"  # 1201 bytes each, the same first 1200
    async with make(namespace_prefix="p/") as store:
        await store.put("k", {"v": "a"}, collection=long_a)
        await store.put("k", {"v": "b"}, collection=long_b)
        assert await store.get("k", collection=long_a) == {"v": "a"}
        assert await store.get("k", collection=long_b) == {"v": "b"}
        namespace = namespace_of("p/", long_a)
        assert len(namespace.encode("utf-8")) <= 1024
        assert namespace.startswith("p/éé")
        assert namespace.endswith("#sha256:" + hashlib.sha256(long_a.encode()).hexdigest())
        async with dmem.open(url, namespace=namespace) as plain:
            assert await plain.get("k") == {"v": "a"}
        assert await store.destroy_collection(long_a) is True
        assert await store.get("k", collection=long_b) == {"v": "b"}


def test_namespace_of() -> None:
    assert namespace_of("app/", "users") == "app/users"
    assert namespace_of("", "x" * 1024) == "x" * 1024
    hashed = namespace_of("", "x" * 1025)
    assert len(hashed) == 1024
    assert hashed == "x" * (1024 - 72) + "#sha256:" + hashlib.sha256(b"x" * 1025).hexdigest()
    # Cut on a character boundary: a 2-byte character that does not fit is left out whole.
    assert len(namespace_of("p", "é" * 600).encode()) == 1023
    assert "\x00" in namespace_of("", "a\x00" * 600)  # still refused by dmem, for its NUL
    assert namespace_of("", "\udc00" * 600) == "\udc00" * 600  # likewise, lone surrogates


async def test_keys_are_byte_exact(store: DmemStore) -> None:
    keys = ["é", "e\u0301", "key!@#$%^&*()", "x" * 1024, "é" * 512, "[a]", "*"]
    for key in keys:
        await store.put(key, {"key": key})
    for key in keys:
        assert await store.get(key) == {"key": key}
    assert sorted(await store.keys()) == sorted(keys)


# --- where dmem is stricter, in py-key-value's errors -----------------------------------------


@pytest.mark.parametrize(
    "key",
    ["", "x" * 1025, "é" * 513, "a\x00b", "\ud800"],
    ids=["empty", "1025-bytes", "1026-bytes-utf8", "nul", "surrogate"],
)
async def test_keys_dmem_refuses(store: DmemStore, key: str) -> None:
    error = await _raises(kv_errors.InvalidKeyError, store.put(key, {"v": 1}))
    assert isinstance(error.__cause__, dmem.InvalidKeyError)
    with pytest.raises(kv_errors.InvalidKeyError):
        await store.get(key)
    with pytest.raises(kv_errors.InvalidKeyError):
        await store.put_if_absent(key, {"v": 1})
    assert await store.keys() == []


@pytest.mark.parametrize(
    "value",
    [
        {"v": math.nan},
        {"v": [math.inf]},
        {"v": -math.inf},
        {"v": 2**63},
        {"v": -(2**63) - 1},
        {"v": {1: "int key"}},
        {"v": dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)},
        {"v": uuid.UUID(int=1)},
        {"v": {1, 2}},
        {"v": b"nested bytes"},
    ],
    ids=["nan", "inf", "-inf", "2**63", "-2**63-1", "int-key", "datetime", "uuid", "set", "bytes"],
)
async def test_values_dmem_refuses(store: DmemStore, value: dict[str, Any]) -> None:
    error = await _raises(kv_errors.SerializationError, store.put("k", value))
    assert isinstance(error.__cause__, dmem.InvalidValueError)
    with pytest.raises(kv_errors.SerializationError):
        await store.put_many(["k"], [value])
    with pytest.raises(kv_errors.SerializationError):
        await store.put_if_absent("k", value)
    assert await store.keys() == []


async def test_deep_values_are_refused(store: DmemStore) -> None:
    deep: Any = "leaf"
    for _ in range(70):
        deep = {"d": deep}
    with pytest.raises(kv_errors.SerializationError):
        await store.put("k", deep)


async def test_a_value_that_is_not_a_mapping_is_refused(store: DmemStore) -> None:
    with pytest.raises(kv_errors.SerializationError):
        await store.put_if_absent("k", "not a mapping")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "ttl",
    [0, -1, -0.5, math.nan, math.inf, TEN_YEARS + 1, 10**400, True, "60"],
    ids=["0", "-1", "-0.5", "nan", "inf", "over-ten-years", "huge-int", "bool", "str"],
)
async def test_ttls_dmem_refuses(store: DmemStore, ttl: Any) -> None:
    with pytest.raises(kv_errors.InvalidTTLError):
        await store.put("k", {"v": 1}, ttl=ttl)
    with pytest.raises(kv_errors.InvalidTTLError):
        await store.put_many(["k"], [{"v": 1}], ttl=ttl)
    with pytest.raises(kv_errors.InvalidTTLError):
        await store.put_if_absent("k", {"v": 1}, ttl=ttl)
    assert await store.keys() == []


async def test_collection_dmem_refuses(store: DmemStore) -> None:
    for collection in ("a\x00b", "\udc00"):
        error = await _raises(
            kv_errors.InvalidKeyError, store.put("k", {"v": 1}, collection=collection)
        )
        assert "cannot be a dmem namespace" in str(error)
        assert isinstance(error.__cause__, dmem.InvalidArgumentError)
    await store.close()  # reopened on use, the bad collection first: still the collection's fault
    with pytest.raises(kv_errors.InvalidKeyError):
        await store.get("k", collection="a\x00b")


async def test_a_value_not_written_as_a_mapping_is_a_deserialization_error(
    store: DmemStore,
) -> None:
    plain = await store.collection_store("mixed")
    await plain.set("text", "written by dmem directly")
    with pytest.raises(kv_errors.DeserializationError):
        await store.get("text", collection="mixed")
    with pytest.raises(kv_errors.DeserializationError):
        await store.ttl("text", collection="mixed")


# --- what dmem adds ---------------------------------------------------------------------------


async def test_put_if_absent(store: DmemStore) -> None:
    assert await store.put_if_absent("lock", {"owner": 1}, ttl=100) is True
    assert await store.put_if_absent("lock", {"owner": 2}) is False
    value, left = await store.ttl("lock")
    assert value == {"owner": 1}
    assert left is not None
    assert left > 98
    assert await store.put_if_absent("short", {"v": 1}, ttl=0.1) is True
    await asyncio.sleep(0.2)
    assert await store.put_if_absent("short", {"v": 2}) is True  # the expired key is absent
    assert await store.get("short") == {"v": 2}


async def test_put_if_absent_is_atomic_across_connections(make: Make) -> None:
    prefix = f"race-{uuid.uuid4().hex[:8]}/"
    adapters = [make(namespace_prefix=prefix) for _ in range(3)]  # each its own connection
    results = await asyncio.gather(
        *(
            adapter.put_if_absent("winner", {"writer": n}, collection="race", ttl=60)
            for n in range(30)
            for adapter in adapters
        )
    )
    assert results.count(True) == 1
    winner = await adapters[0].get("winner", collection="race")
    assert winner is not None
    assert await adapters[2].get("winner", collection="race") == winner


async def test_the_dmem_store_behind_a_collection(store: DmemStore) -> None:
    await store.put("user:1", {"name": "Ada"}, collection="users")
    users = await store.collection_store("users")
    assert isinstance(users, dmem.Store)
    assert users is await store.collection_store("users")
    await users.set("user:2", {"name": "Bob"}, tags={"team": "x"})
    assert await users.find_by_tag("team", "x") == ["user:2"]
    assert await store.get("user:2", collection="users") == {"name": "Bob"}
    assert await users.count() == 2
    assert await users.expire("user:1", 100) is True
    _, left = await store.ttl("user:1", collection="users")
    assert left is not None
    assert left > 98


async def test_collections_share_one_connection(make: Make, url: str) -> None:
    """One SQLite worker thread serves every collection (Store.with_namespace)."""
    async with make() as store:
        await store.put("k", {"v": 0}, collection="c0")
        threads = threading.active_count()
        for n in range(1, 20):
            await store.put("k", {"v": n}, collection=f"c{n}")
        if url.startswith("sqlite"):
            assert threading.active_count() == threads
        assert [await store.get("k", collection=f"c{n}") for n in range(20)] == [
            {"v": n} for n in range(20)
        ]


async def test_seed(make: Make) -> None:
    async with make(seed={"config": {"flags": {"beta": True}}}) as store:
        assert await store.get("flags", collection="config") == {"beta": True}


# --- lifecycle and errors ---------------------------------------------------------------------


async def test_close_closes_every_store_and_the_adapter_reopens(make: Make, url: str) -> None:
    store = make()
    await store.put("k", {"v": 1}, collection="one")
    await store.put("k", {"v": 2}, collection="two")
    one = await store.collection_store("one")
    await store.close()
    with pytest.raises(dmem.NotInitializedError):
        await one.get("k")
    if url.startswith("memory://"):
        return  # data outlives the stores on memory://NAME too, but that is the backend's page
    assert await store.get("k", collection="two") == {"v": 2}  # reopened on use
    async with store:
        assert await store.get("k", collection="one") == {"v": 1}
    await store.close()  # idempotent


async def test_construction_refusals() -> None:
    with pytest.raises(dmem.InvalidArgumentError, match="namespace_prefix"):
        DmemStore("memory://", namespace="x")
    with pytest.raises(dmem.InvalidArgumentError):
        DmemStore("memory://", namespace_prefix=None)  # type: ignore[arg-type]
    with pytest.raises(dmem.InvalidArgumentError, match="NUL"):
        DmemStore("memory://", namespace_prefix="a\x00")
    with pytest.raises(dmem.InvalidArgumentError):
        DmemStore(b"memory://")  # type: ignore[arg-type]


async def test_repr_hides_secrets() -> None:
    store = DmemStore("redis://:s3cret-pw@db.internal:6379/0", namespace_prefix="fastmcp/")
    assert "s3cret-pw" not in repr(store)
    assert "fastmcp/" in repr(store)


async def test_a_bad_url_fails_setup() -> None:
    store = DmemStore("nosuchscheme://x")
    with pytest.raises(kv_errors.StoreSetupError) as info:
        await store.get("k")
    assert isinstance(info.value.__cause__, dmem.PluginNotFoundError)
    with pytest.raises(kv_errors.StoreSetupError):
        async with DmemStore("memory://", no_such_option=1):
            pass


async def test_an_unreachable_backend(tmp_path: Path) -> None:
    server = testkit.ServerProcess(REDIS_SERVER, workdir=tmp_path)
    url = f"redis://127.0.0.1:{server.port}/0"
    with pytest.raises(kv_errors.StoreSetupError) as setup_error:
        await DmemStore(url).get("k")  # not started yet
    assert isinstance(setup_error.value.__cause__, dmem.ProviderUnavailableError)
    try:
        server.start()
    except testkit.ServerFailed as exc:
        backend_missing(f"cannot start redis-server: {exc}")
    try:
        async with DmemStore(url) as store:
            await store.put("k", {"v": 1})
            server.kill()
            with pytest.raises(kv_errors.StoreConnectionError) as info:
                await store.get("k")
            assert isinstance(info.value.__cause__, dmem.ProviderUnavailableError)
    finally:
        server.cleanup()


# --- py-key-value's own adapters and wrappers on top, as FastMCP stacks them -------------------


async def test_fastmcp_shaped_stack(store: DmemStore) -> None:
    pydantic = pytest.importorskip("pydantic")
    from key_value.aio.adapters.pydantic import PydanticAdapter
    from key_value.aio.wrappers.limit_size import LimitSizeWrapper
    from key_value.aio.wrappers.statistics import StatisticsWrapper

    class Entry(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        type_tag: str
        value_json: str
        expires_at: float | None = None

    # FastMCP's ResponseCachingMiddleware: size limit, statistics, a typed adapter per method.
    stats = StatisticsWrapper(
        key_value=LimitSizeWrapper(key_value=store, max_size=1000, raise_on_too_large=False)
    )
    tools = PydanticAdapter[Any](
        key_value=stats, pydantic_model=Entry, default_collection="tools/list"
    )
    await tools.put(key="a", value=Entry(type_tag="T", value_json="[]"), ttl=60)
    got = await tools.get(key="a")
    assert got == Entry(type_tag="T", value_json="[]")
    await tools.put(key="big", value=Entry(type_tag="T", value_json="x" * 5000))  # dropped
    assert await tools.get(key="big") is None
    assert stats.statistics.collections["tools/list"].get.hit == 1

    # FastMCP's client response cache clear(): enumerate the collection's keys, delete each.
    await store.put_many(["c1", "c2"], [{"v": 1}, {"v": 2}], collection="mcp-cache")
    for key in await store.keys(collection="mcp-cache"):
        await store.delete(key=key, collection="mcp-cache")
    assert await store.keys(collection="mcp-cache") == []
    assert await store.get("a", collection="tools/list") is not None


async def test_fastmcp_response_caching_on_dmem(make: Make) -> None:
    """FastMCP itself (Python 3.11+): its response cache on dmem, shared by two servers."""
    if sys.version_info < (3, 11):
        pytest.skip("FastMCP needs Python 3.11+ (the dev extra installs it there)")
    from fastmcp import Client, FastMCP
    from fastmcp.server.middleware.caching import ResponseCachingMiddleware

    calls: list[tuple[int, int]] = []

    def server(store: DmemStore) -> Any:
        mcp = FastMCP("demo")
        mcp.add_middleware(ResponseCachingMiddleware(cache_storage=store))

        @mcp.tool
        def add(a: int, b: int) -> int:
            calls.append((a, b))
            return a + b

        return mcp

    prefix = f"fastmcp-{uuid.uuid4().hex[:8]}/"
    async with Client(server(make(namespace_prefix=prefix))) as client:
        assert (await client.call_tool("add", {"a": 1, "b": 2})).data == 3
        assert (await client.call_tool("add", {"a": 1, "b": 2})).data == 3
    assert calls == [(1, 2)]
    # Another server on the same backend (another process, in a deployment) hits the cache.
    other = make(namespace_prefix=prefix)
    async with Client(server(other)) as client:
        assert (await client.call_tool("add", {"a": 1, "b": 2})).data == 3
    assert calls == [(1, 2)]
    assert len(await other.keys("tools/call")) == 1


# --- py-key-value's own BaseStoreTests, from a source checkout --------------------------------

UPSTREAM = os.environ.get("DMEM_PYKV_UPSTREAM", "")
UPSTREAM_EXCLUDED = {
    "test_not_unbounded": (
        "peer-specific: asserts the store evicts old entries (a bounded in-process cache); a "
        "dmem store keeps every key until it expires or is deleted, like py-key-value's Redis "
        "store, which skips this test for the same reason"
    ),
}


def _upstream_base() -> Any:
    """``tests.stores.base`` of the checkout at DMEM_PYKV_UPSTREAM (its own ``tests`` package)."""
    shadowing = {n: m for n, m in sys.modules.items() if n == "tests" or n.startswith("tests.")}
    for name in shadowing:
        del sys.modules[name]
    sys.path.insert(0, UPSTREAM)
    try:
        return importlib.import_module("tests.stores.base")
    finally:
        sys.path.remove(UPSTREAM)
        sys.modules.update(shadowing)


def _excluded(reason: str) -> Any:
    """A stand-in for an excluded upstream test: skipped, with the reason."""

    @pytest.mark.skip(reason=reason)
    async def excluded(self: Any) -> None:
        raise AssertionError("skipped")

    return excluded


if UPSTREAM:
    _base = _upstream_base()
    # Newer py-key-value also tests put_if_absent, which DmemStore offers already.
    _optional = [getattr(_base, n) for n in ("PutIfAbsentStoreTestMixin",) if hasattr(_base, n)]
    _UpstreamOnDmem: Any = type(
        "_UpstreamOnDmem",
        (*_optional, _base.ContextManagerStoreTestMixin, _base.BaseStoreTests),
        {name: _excluded(reason) for name, reason in UPSTREAM_EXCLUDED.items()},
    )

    class TestUpstreamOnMemory(_UpstreamOnDmem):  # type: ignore[misc]
        @pytest.fixture
        async def store(self) -> DmemStore:
            return DmemStore(f"memory://pykv-{uuid.uuid4().hex}")

    class TestUpstreamOnSQLite(_UpstreamOnDmem):  # type: ignore[misc]
        @pytest.fixture
        async def store(self, tmp_path: Path) -> DmemStore:
            return DmemStore(f"sqlite:///{tmp_path / 'pykv.db'}")

    class TestUpstreamOnRedis(_UpstreamOnDmem):  # type: ignore[misc]
        @pytest.fixture
        async def store(self, redis_url: str) -> DmemStore:
            prefix = f"pykv-upstream-{uuid.uuid4().hex[:8]}/"
            return DmemStore(redis_url, namespace_prefix=prefix)

else:

    def test_py_key_value_base_store_tests() -> None:
        pytest.skip(
            "py-key-value's BaseStoreTests come from its source (no release ships them): "
            "DMEM_PYKV_UPSTREAM=/path/to/py-key-value python -m pytest tests/test_pykv.py "
            "(docs/integrations/pykv.md)"
        )
