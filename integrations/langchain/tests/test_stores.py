"""langchain-dmem's own tests: prefixes, refused input, lifecycle, threads and event loops.

On real backends only (the ``url`` fixture: memory, a SQLite file, PostgreSQL, Redis).
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import dmem
import pytest
from dmem_conformance import testkit
from langchain_dmem import DmemByteStore, DmemStore

GLOB_KEYS = ["a*b", "a*bz", "a?c", "a[x]", "a[x]y", "a\\d", "abc", "axb", "ab", "b"]
# Each prefix, and the keys that start with it: the glob characters must be literal.
PREFIXES = {
    "a*": ["a*b", "a*bz"],
    "a?": ["a?c"],
    "a[x]": ["a[x]", "a[x]y"],
    "a[": ["a[x]", "a[x]y"],
    "a\\": ["a\\d"],
    "ab": ["ab", "abc"],
    "": sorted(GLOB_KEYS),
    "zzz": [],
}

BAD_KEYS: list[Any] = ["", "a\x00b", "x" * 1025, "é" * 513, "\ud800", 7, None, b"key"]


@pytest.fixture
def store(url: str, namespace: str) -> Iterator[DmemByteStore]:
    with DmemByteStore(url, namespace=namespace) as opened:
        yield opened


# --- prefixes ----------------------------------------------------------------------------


def test_yield_keys_prefix_is_literal(store: DmemByteStore) -> None:
    store.mset([(key, key.encode()) for key in GLOB_KEYS])
    for prefix, expected in PREFIXES.items():
        assert sorted(store.yield_keys(prefix=prefix)) == sorted(expected), prefix
    assert sorted(store.yield_keys()) == sorted(GLOB_KEYS)


async def test_ayield_keys_prefix_is_literal(url: str, namespace: str) -> None:
    async with DmemStore(url, namespace=namespace) as store:
        await store.amset([(key, {"k": key}) for key in GLOB_KEYS])
        for prefix, expected in PREFIXES.items():
            found = [key async for key in store.ayield_keys(prefix=prefix)]
            assert sorted(found) == sorted(expected), prefix


def test_namespaces_keep_stores_apart(url: str, namespace: str) -> None:
    with (
        DmemByteStore(url, namespace=namespace) as one,
        DmemByteStore(url, namespace=namespace + "-other") as other,
    ):
        one.mset([("k", b"one")])
        assert other.mget(["k"]) == [None]
        assert list(other.yield_keys()) == []
        other.mset([("k", b"other")])
        assert one.mget(["k"]) == [b"one"]


# --- refused input: a clear dmem error, before any I/O, and nothing written ------------------


@pytest.mark.parametrize("bad", BAD_KEYS, ids=repr)
def test_keys_dmem_refuses_are_invalid_key_errors(store: DmemByteStore, bad: Any) -> None:
    with pytest.raises(dmem.InvalidKeyError):
        store.mset([("good", b"1"), (bad, b"2")])
    with pytest.raises(dmem.InvalidKeyError):
        store.mget(["good", bad])
    with pytest.raises(dmem.InvalidKeyError):
        store.mdelete([bad])
    assert list(store.yield_keys()) == []  # the valid pair of the refused batch was not written


@pytest.mark.parametrize("bad", BAD_KEYS, ids=repr)
async def test_async_keys_dmem_refuses(url: str, namespace: str, bad: Any) -> None:
    async with DmemStore(url, namespace=namespace) as store:
        with pytest.raises(dmem.InvalidKeyError):
            await store.amset([("good", 1), (bad, 2)])
        with pytest.raises(dmem.InvalidKeyError):
            await store.amget([bad])
        with pytest.raises(dmem.InvalidKeyError):
            await store.amdelete(["good", bad])
        assert [key async for key in store.ayield_keys()] == []


def test_longest_key_dmem_takes_works(store: DmemByteStore) -> None:
    longest = "é" * 512  # 1024 bytes in UTF-8
    store.mset([(longest, b"v")])
    assert store.mget([longest]) == [b"v"]
    assert list(store.yield_keys(prefix="éé")) == [longest]


@pytest.mark.parametrize("value", ["text", 1, None, [b"x"], {"a": 1}, object()], ids=repr)
def test_byte_store_refuses_other_values(store: DmemByteStore, value: Any) -> None:
    with pytest.raises(dmem.InvalidValueError, match="DmemByteStore stores bytes"):
        store.mset([("first", b"ok"), ("second", value)])
    assert list(store.yield_keys()) == []


async def test_byte_store_async_refuses_other_values(url: str, namespace: str) -> None:
    async with DmemByteStore(url, namespace=namespace) as store:
        with pytest.raises(dmem.InvalidValueError, match="value for key 'second' is a str"):
            await store.amset([("first", b"ok"), ("second", "text")])  # type: ignore[list-item]
        assert [key async for key in store.ayield_keys()] == []


def test_byte_store_takes_bytes_like_values(store: DmemByteStore) -> None:
    store.mset([("a", bytearray(b"ab")), ("m", memoryview(b"mv"))])  # type: ignore[list-item]
    assert store.mget(["a", "m"]) == [b"ab", b"mv"]
    assert all(type(value) is bytes for value in store.mget(["a", "m"]))


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), {1: "x"}, {"set"}, object(), 2**63, [b"nested"]], ids=repr
)
def test_store_refuses_what_dmem_cannot_store(url: str, namespace: str, value: Any) -> None:
    with DmemStore(url, namespace=namespace) as store:
        with pytest.raises(dmem.InvalidValueError):
            store.mset([("first", 1), ("second", value)])
        assert list(store.yield_keys()) == []


def test_store_round_trips_dmem_values(url: str, namespace: str) -> None:
    values: list[Any] = [None, True, 0, -(2**63), 1.5, -0.0, "", "é", b"", b"\x00", [], {}]
    nested = {"list": [1, [2, [3]]], "tuple": (1, 2), "none": None}
    with DmemStore(url, namespace=namespace) as store:
        store.mset([(f"k{i}", value) for i, value in enumerate([*values, nested])])
        got = store.mget([f"k{i}" for i in range(len(values) + 1)])
    for value, back in zip(values, got[:-1], strict=True):
        assert back == value and type(back) is type(value)
    assert got[-1] == {"list": [1, [2, [3]]], "tuple": [1, 2], "none": None}


def test_byte_store_reading_a_non_bytes_value_is_corrupt(url: str, namespace: str) -> None:
    with (
        DmemStore(url, namespace=namespace) as json_store,
        DmemByteStore(url, namespace=namespace) as byte_store,
    ):
        json_store.mset([("k", "text")])
        with pytest.raises(dmem.CorruptValueError, match="holds a str, not bytes"):
            byte_store.mget(["k"])


@pytest.mark.parametrize(
    ("call", "argument"),
    [("mget", "abc"), ("mget", 5), ("mdelete", b"ab"), ("mset", "ab"), ("mset", [("k",)])],
)
def test_arguments_of_the_wrong_shape(store: DmemByteStore, call: str, argument: Any) -> None:
    with pytest.raises(dmem.InvalidArgumentError):
        getattr(store, call)(argument)


def test_prefix_of_the_wrong_type(store: DmemByteStore) -> None:
    with pytest.raises(dmem.InvalidArgumentError, match="prefix must be a str"):
        store.yield_keys(prefix=3)  # type: ignore[arg-type]


async def test_async_prefix_of_the_wrong_type(url: str, namespace: str) -> None:
    async with DmemByteStore(url, namespace=namespace) as store:
        with pytest.raises(dmem.InvalidArgumentError, match="prefix must be a str"):
            [key async for key in store.ayield_keys(prefix=b"a")]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"url": 5}, "url must be a str"),
        ({"namespace": 5}, "namespace must be a str"),
        ({"namespace": "a\x00"}, "NUL"),
        ({"namespace": "\udc00"}, "surrogates"),
        ({"namespace": "n" * 1025}, "at most 1024"),
        ({"middleware": "cache"}, "middleware must be a list"),
        ({"middleware": 3}, "middleware must be a list"),
    ],
)
def test_construction_refuses_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(dmem.InvalidArgumentError, match=match):
        DmemByteStore(**kwargs)


def test_unknown_scheme_names_the_problem() -> None:
    store = DmemByteStore("nosuchscheme://x")
    with pytest.raises(dmem.DmemError):
        store.mget(["k"])
    store.close()


def test_backend_down_is_provider_unavailable(redis_url: str) -> None:
    down = testkit.unreachable_url(redis_url)
    with DmemByteStore(down) as store, pytest.raises(dmem.ProviderUnavailableError):
        store.mget(["k"])


async def test_backend_down_async_then_a_retry_opens(redis_url: str) -> None:
    down = testkit.unreachable_url(redis_url)
    async with DmemByteStore(down) as store:
        for _ in range(2):  # a failed opening is not kept: the second call tries again
            with pytest.raises(dmem.ProviderUnavailableError):
                await store.amget(["k"])


def test_repr_hides_the_secret() -> None:
    store = DmemStore("redis://user:hunter2-secret@127.0.0.1:6379/0", namespace="ns")
    assert "hunter2" not in repr(store)
    assert "127.0.0.1:6379" in repr(store) and "'ns'" in repr(store)
    store.close()


# --- sync and async, one backend ----------------------------------------------------------


async def test_sync_and_async_methods_see_the_same_data(url: str, namespace: str) -> None:
    async with DmemByteStore(url, namespace=namespace) as store:
        await asyncio.to_thread(store.mset, [("from-sync", b"1")])
        assert await store.amget(["from-sync"]) == [b"1"]
        await store.amset([("from-async", b"2")])
        assert await asyncio.to_thread(store.mget, ["from-async"]) == [b"2"]


async def test_middleware_applies_to_both_sides(url: str, namespace: str) -> None:
    big = b"x" * 10_000
    chain = [dmem.Cache(ttl=60), dmem.Compression(threshold=64)]
    async with (
        DmemByteStore(url, namespace=namespace, middleware=chain) as store,
        dmem.open(url, namespace=namespace) as plain,
    ):
        await asyncio.to_thread(store.mset, [("sync", big)])
        await store.amset([("async", big)])
        assert await store.amget(["sync", "async"]) == [big, big]
        assert await asyncio.to_thread(store.mget, ["async", "sync"]) == [big, big]
        # Both sides wrote through Compression: a store without it finds compressed values.
        for key in ("sync", "async"):
            with pytest.raises(dmem.CorruptValueError, match="compressed"):
                await plain.get(key)


def test_data_outlives_the_store(sqlite_url: str) -> None:
    with DmemByteStore(sqlite_url, namespace="keep") as store:
        store.mset([("k", b"v")])
    with DmemByteStore(sqlite_url, namespace="keep") as again:
        assert again.mget(["k"]) == [b"v"]


# --- lifecycle ------------------------------------------------------------------------------


def test_close_closes_and_is_final(sqlite_url: str) -> None:
    store = DmemByteStore(sqlite_url)
    store.mset([("k", b"v")])
    inner = store._sync
    assert inner is not None
    store.close()
    store.close()  # idempotent
    with pytest.raises(dmem.NotInitializedError):
        inner.get("k")  # the dmem store under it is closed too
    for call in (lambda: store.mget(["k"]), lambda: store.mset([]), lambda: store.mdelete([])):
        with pytest.raises(dmem.NotInitializedError, match="DmemByteStore is closed"):
            call()
    with pytest.raises(dmem.NotInitializedError):
        list(store.yield_keys())


async def test_aclose_closes_both_sides(sqlite_url: str) -> None:
    store = DmemStore(sqlite_url)
    await store.amset([("k", 1)])
    await asyncio.to_thread(store.mget, ["k"])
    sync_inner, async_inner = store._sync, await store._async_store()
    assert sync_inner is not None
    await store.aclose()
    await store.aclose()
    with pytest.raises(dmem.NotInitializedError):
        await async_inner.get("k")
    with pytest.raises(dmem.NotInitializedError):
        await asyncio.to_thread(sync_inner.get, "k")
    with pytest.raises(dmem.NotInitializedError, match="DmemStore is closed"):
        await store.amget(["k"])
    with pytest.raises(dmem.NotInitializedError):
        [key async for key in store.ayield_keys()]


async def test_close_inside_the_loop_says_aclose(sqlite_url: str) -> None:
    store = DmemStore(sqlite_url)
    await store.amget(["k"])
    with pytest.raises(dmem.NotSupportedError, match="await aclose"):
        store.close()
    assert await store.amget(["k"]) == [None]  # still open
    await store.aclose()


def test_close_runs_the_async_close_on_its_stopped_loop(sqlite_url: str) -> None:
    store = DmemStore(sqlite_url)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(store.amset([("k", 1)]))
        inner = loop.run_until_complete(store._async_store())
        store.close()  # the loop is stopped, not closed: the close runs on it
        with pytest.raises(dmem.NotInitializedError):
            loop.run_until_complete(inner.get("k"))
    finally:
        loop.close()


def test_close_from_another_thread_while_its_loop_runs(sqlite_url: str) -> None:
    store = DmemStore(sqlite_url)
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    try:
        asyncio.run_coroutine_threadsafe(store.amset([("k", 1)]), loop).result(30)
        inner = asyncio.run_coroutine_threadsafe(store._async_store(), loop).result(30)
        store.close()
        with pytest.raises(dmem.NotInitializedError):
            asyncio.run_coroutine_threadsafe(inner.get("k"), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join()
        loop.close()


def test_an_async_store_left_on_a_closed_loop_warns_at_close() -> None:
    store = DmemStore("memory://langchain-abandoned")
    asyncio.run(store.amset([("k", 1)]))  # asyncio.run closes its loop; aclose was not awaited
    with pytest.warns(ResourceWarning, match="await aclose"):
        store.close()


def test_a_second_event_loop_is_refused(sqlite_url: str) -> None:
    store = DmemStore(sqlite_url)
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        first.run_until_complete(store.amset([("k", 1)]))
        with pytest.raises(dmem.NotSupportedError, match="one instance per event loop"):
            second.run_until_complete(store.amget(["k"]))
        assert first.run_until_complete(store.amget(["k"])) == [1]
        first.run_until_complete(store.aclose())
    finally:
        first.close()
        second.close()


async def test_concurrent_first_calls_open_one_store(url: str, namespace: str) -> None:
    async with DmemStore(url, namespace=namespace) as store:
        await asyncio.gather(*(store.amset([(f"k{i}", i)]) for i in range(20)))
        opened = store._aopening
        assert opened is not None
        results = await asyncio.gather(*(store.amget([f"k{i}"]) for i in range(20)))
        assert results == [[i] for i in range(20)]
        assert store._aopening is opened


def test_context_managers_close(sqlite_url: str) -> None:
    with DmemByteStore(sqlite_url) as store:
        store.mset([("k", b"v")])
    with pytest.raises(dmem.NotInitializedError):
        store.mget(["k"])

    async def scoped() -> DmemByteStore:
        async with DmemByteStore(sqlite_url) as inner:
            assert await inner.amget(["k"]) == [b"v"]
        return inner

    closed = asyncio.run(scoped())
    with pytest.raises(dmem.NotInitializedError):
        closed.mget(["k"])


# --- a dmem.Store the caller holds ----------------------------------------------------------


async def test_from_store_uses_it_for_async_and_leaves_it_open(url: str, namespace: str) -> None:
    async with dmem.open(url, namespace=namespace) as kv:
        store = DmemByteStore.from_store(kv)
        await store.amset([("k", b"v")])
        assert await kv.get("k") == b"v"
        assert [key async for key in store.ayield_keys(prefix="k")] == ["k"]
        assert "DmemByteStore over <dmem.Store" in repr(store)
        with pytest.raises(dmem.NotSupportedError, match="async methods only"):
            store.mget(["k"])
        await store.aclose()
        assert await kv.get("k") == b"v"  # the owner's store is still open
        with pytest.raises(dmem.NotInitializedError):
            await store.amget(["k"])


def test_from_store_takes_only_a_store() -> None:
    with pytest.raises(dmem.InvalidArgumentError, match=r"open dmem\.Store"):
        DmemStore.from_store("memory://")  # type: ignore[arg-type]


# --- threads ------------------------------------------------------------------------------


def test_sync_methods_from_many_threads(url: str, namespace: str) -> None:
    threads, rounds = 8, 25
    errors: list[BaseException] = []
    start = threading.Barrier(threads)
    with DmemByteStore(url, namespace=namespace) as store:

        def work(worker: int) -> None:
            try:
                start.wait()  # every thread's first call races to open the one sync store
                for i in range(rounds):
                    key = f"t{worker}:{i}"
                    store.mset([(key, key.encode()), (f"shared:{i}", b"%d" % worker)])
                    assert store.mget([key]) == [key.encode()]
                    if i % 5 == 0:
                        store.mdelete([key])
                        assert store.mget([key]) == [None]
            except BaseException as exc:  # noqa: BLE001 - reported in the main thread
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        assert errors == []
        kept = [f"t{w}:{i}" for w in range(threads) for i in range(rounds) if i % 5]
        assert sorted(store.yield_keys(prefix="t")) == sorted(kept)
        shared = store.mget([f"shared:{i}" for i in range(rounds)])
        assert all(value in {b"%d" % w for w in range(threads)} for value in shared)


def test_sync_methods_from_inside_a_running_loop(sqlite_url: str) -> None:
    # A sync call in a coroutine blocks that loop but works: dmem runs it on its own thread.
    async def inside() -> list[bytes | None]:
        with DmemByteStore(sqlite_url) as store:
            store.mset([("k", b"v")])
            return store.mget(["k"])

    assert asyncio.run(inside()) == [b"v"]


def test_no_resource_warning_when_closed_properly(sqlite_url: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)

        async def run() -> None:
            async with DmemStore(sqlite_url) as store:
                await store.amset([("k", 1)])
                await asyncio.to_thread(store.mget, ["k"])

        asyncio.run(run())
