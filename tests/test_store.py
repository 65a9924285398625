"""The Store facade: lifecycle, validation before I/O, error wrapping, dmem.open."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from types import MappingProxyType
from typing import Any

import dmem
import pytest
from dmem import (
    InvalidArgumentError,
    InvalidKeyError,
    InvalidPatternError,
    InvalidValueError,
    KeyNotFoundError,
    NotInitializedError,
    PluginNotFoundError,
    ProviderError,
    Store,
    Wrapper,
)
from dmem.backends import MemoryProvider


def _released() -> memoryview:
    view = memoryview(b"gone")
    view.release()
    return view


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


class _BadEq:
    """Compares by raising, as a numpy array's truth value does."""

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparisons")

    def __ne__(self, other: object) -> bool:
        raise RuntimeError("no comparisons")


@pytest.fixture
async def kv() -> AsyncIterator[Store]:
    async with dmem.open("memory://") as store:
        yield store


class Recorder(Wrapper):
    """Counts every call that reaches the provider, to prove validation happens first."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.calls = 0

    def __getattribute__(self, name: str) -> Any:
        if name in {"set", "set_many", "get", "get_many", "delete", "delete_many", "expire"}:
            object.__setattr__(self, "calls", object.__getattribute__(self, "calls") + 1)
        return object.__getattribute__(self, name)


async def test_calls_before_initialize_and_after_close_raise() -> None:
    store = Store(MemoryProvider())
    with pytest.raises(NotInitializedError):
        await store.get("a")
    await store.initialize()
    await store.initialize()  # idempotent
    assert await store.set("a", 1)
    await store.aclose()
    await store.aclose()  # idempotent
    with pytest.raises(NotInitializedError):
        await store.get("a")
    with pytest.raises(NotInitializedError):
        await store.initialize()
    with pytest.raises(NotInitializedError):
        [item async for item in store.scan()]
    assert (await store.health()).status == "unhealthy"


async def test_async_with_open() -> None:
    async with dmem.open("memory://") as store:
        assert await store.set("k", "v")
        assert await store.get("k") == "v"
    with pytest.raises(NotInitializedError):
        await store.get("k")


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.set("", 1), InvalidKeyError),
        (lambda s: s.set("k", float("nan")), InvalidValueError),
        (lambda s: s.set("k", 1, ttl=0), InvalidArgumentError),
        (lambda s: s.set("k", 1, tags={"": "x"}), InvalidArgumentError),
        (lambda s: s.set("k", 1, if_not_exists="yes"), InvalidArgumentError),
        (lambda s: s.set_many({"ok": 1, "bad": {1: 2}}), InvalidValueError),
        (lambda s: s.set_many([("ok", 1), ("", 2)]), InvalidKeyError),
        (lambda s: s.set_many([("ok", 1, 2)]), InvalidArgumentError),
        (lambda s: s.get_many(["ok", "a\x00"]), InvalidKeyError),
        (lambda s: s.get_many("abc"), InvalidArgumentError),
        (lambda s: s.delete_many(["ok", 3]), InvalidKeyError),
        (lambda s: s.expire("k", -1), InvalidArgumentError),
        (lambda s: s.keys("[oops"), InvalidPatternError),
        (lambda s: s.count("\\"), InvalidPatternError),
        (lambda s: s.find_by_tag("", "x"), InvalidArgumentError),
        # Not iterable at all: was a TypeError from list()/iteration.
        (lambda s: s.get_many(5), InvalidArgumentError),
        (lambda s: s.set_many(5), InvalidArgumentError),
        (lambda s: s.delete_many(5), InvalidArgumentError),
        (lambda s: s.set_many(b"ab"), InvalidArgumentError),
        (lambda s: s.get_many(_released()), InvalidArgumentError),
        (lambda s: s.set_many(_released()), InvalidArgumentError),
        (lambda s: s.set_many([["k", 1]]), InvalidArgumentError),
        # Unhashable patterns: compile_pattern's cache hashed them first (TypeError).
        (lambda s: s.keys(["a"]), InvalidPatternError),
        (lambda s: s.count({}), InvalidPatternError),
        (lambda s: s.keys(b"*"), InvalidPatternError),
        # Every non-mapping tags, also the falsy ones once taken for "no tags".
        (lambda s: s.set("k", 1, tags=[]), InvalidArgumentError),
        (lambda s: s.set("k", 1, tags=0), InvalidArgumentError),
        (lambda s: s.set("k", 1, tags=""), InvalidArgumentError),
        (lambda s: s.set("k", 1, tags=()), InvalidArgumentError),
        (lambda s: s.set("k", 1, tags=False), InvalidArgumentError),
        (lambda s: s.set("k", 1, tags=[("a", "b")]), InvalidArgumentError),
        (lambda s: s.set_many({"k": 1}, tags=[]), InvalidArgumentError),
        (lambda s: s.set_many({"k": 1}, tags=set()), InvalidArgumentError),
        # A tag value whose != raises; a tag name whose repr raises (a 5000-digit int).
        (lambda s: s.set("k", 1, tags={"a": _BadEq()}), InvalidArgumentError),
        (lambda s: s.set("k", 1, tags={10**5000: "a"}), InvalidArgumentError),
        (lambda s: s.find_by_tag([], "x"), InvalidArgumentError),
        (lambda s: s.find_by_tag("t", _BadEq()), InvalidArgumentError),
        # Ints beyond the float range: float() raised OverflowError.
        (lambda s: s.set("k", 1, ttl=10**400), InvalidArgumentError),
        (lambda s: s.set("k", 1, ttl=-(10**400)), InvalidArgumentError),
        (lambda s: s.expire("k", 10**400), InvalidArgumentError),
        (lambda s: s.set_many({"k": 1}, ttl=10**400), InvalidArgumentError),
        # Keys whose repr fails: the message's repr raised ValueError or RecursionError.
        (lambda s: s.get(10**5000), InvalidKeyError),
        (lambda s: s.set(_nested(5000), 1), InvalidKeyError),
        # A value the codec's checks let through and bytes() then refused.
        (lambda s: s.set("k", _released()), InvalidValueError),
        (lambda s: s.set_many({"k": _released()}), InvalidValueError),
    ],
)
async def test_invalid_input_raises_before_any_io(call: Any, error: type[Exception]) -> None:
    recorder = Recorder(MemoryProvider())
    async with Store(recorder) as store:
        with pytest.raises(error):
            await call(store)
        assert recorder.calls == 0
        assert await store.count() == 0


async def test_scan_with_a_pattern_of_another_type() -> None:
    recorder = Recorder(MemoryProvider())
    async with Store(recorder) as store:
        for pattern in (["a"], None, 5, b"*"):
            with pytest.raises(InvalidPatternError):
                [item async for item in store.scan(pattern)]  # type: ignore[arg-type]
        assert recorder.calls == 0


async def test_tags_none_or_an_empty_mapping_mean_no_tags(kv: Store) -> None:
    await kv.set("k", 1, tags={"t": "1"})
    empty: tuple[Any, ...] = (None, {}, MappingProxyType({}))
    for no_tags in empty:
        await kv.set("k", 1, tags={"t": "1"})
        assert await kv.set("k", 2, tags=no_tags) is True
        assert await kv.get_tags("k") == {}
        assert await kv.set_many({"k": 3}, tags=no_tags) == 1
        assert await kv.get_tags("k") == {}
    assert await kv.set("k", 4, tags=MappingProxyType({"t": "2"}))
    assert await kv.find_by_tag("t", "2") == ["k"]


async def test_ttl_ints_are_exact_at_every_size(kv: Store) -> None:
    ten_years = 10 * 365 * 86400
    assert await kv.set("k", 1, ttl=ten_years)
    left = await kv.ttl("k")
    assert left is not None and ten_years - 1 < left <= ten_years
    assert await kv.expire("k", 1)
    left = await kv.ttl("k")
    assert left is not None and 0.9 < left <= 1


async def test_missing_keys(kv: Store) -> None:
    assert await kv.get("nope") is None
    assert await kv.get("nope", "dflt") == "dflt"
    with pytest.raises(KeyNotFoundError) as info:
        await kv.ttl("nope")
    assert isinstance(info.value, KeyError)
    with pytest.raises(KeyNotFoundError):
        await kv.get_tags("nope")


async def test_stored_none_is_live(kv: Store) -> None:
    await kv.set("n", None)
    assert await kv.exists("n")
    assert await kv.get("n", "dflt") is None


async def test_batches(kv: Store) -> None:
    assert await kv.set_many([("a", 1), ("b", 2), ("a", 3)]) == 2
    assert await kv.get_many(["a", "a", "b", "zz"]) == {"a": 3, "b": 2}
    assert await kv.delete_many(["a", "a", "zz"]) == 1
    assert await kv.set_many({}) == 0


async def test_set_many_pairs_check_every_value_and_keep_the_last(kv: Store) -> None:
    """Pairs and non-dict mappings: each value is checked, a repeated key keeps its last."""
    with pytest.raises(InvalidValueError):
        await kv.set_many([("a", math.nan), ("a", 1)])  # replaced later, still rejected
    assert await kv.count() == 0
    mixed = [("a", {"x": 1}), ("b", "s"), ("a", [2]), ("c", b"\x00")]
    assert await kv.set_many(mixed) == 3
    assert await kv.get_many(["a", "b", "c"]) == {"a": [2], "b": "s", "c": b"\x00"}
    assert await kv.set_many(MappingProxyType({"d": {"k": 1.5}, "e": (1, 2)})) == 2
    assert await kv.get_many(["d", "e"]) == {"d": {"k": 1.5}, "e": [1, 2]}


class Exploding(Wrapper):
    """A provider whose backend fails with a non-dmem exception."""

    async def get(self, key: str) -> bytes | None:
        raise OSError("disk on fire")

    def scan(self, pattern: Any) -> Any:
        async def gen() -> AsyncIterator[tuple[str, bytes]]:
            yield "a", b"1"
            raise RuntimeError("cursor lost")

        return gen()


async def test_backend_exceptions_are_wrapped() -> None:
    async with Store(Exploding(MemoryProvider())) as store:
        with pytest.raises(ProviderError) as info:
            await store.get("a")
        assert isinstance(info.value.__cause__, OSError)
        with pytest.raises(ProviderError) as info:
            [item async for item in store.scan()]
        assert isinstance(info.value.__cause__, RuntimeError)


async def test_concurrent_if_not_exists_has_one_winner(kv: Store) -> None:
    results = await asyncio.gather(*(kv.set("lock", i, if_not_exists=True) for i in range(50)))
    assert results.count(True) == 1


async def test_open_merges_url_and_keyword_options() -> None:
    async with (
        dmem.open("memory://shared?namespace=one") as one,
        dmem.open("memory://shared", namespace="two") as two,
    ):
        await one.set("a", 1)
        assert await two.get("a") is None
        assert one.namespace == "one"
    with pytest.raises(InvalidArgumentError):
        await dmem.open("memory://x?namespace=a", namespace="b")
    with pytest.raises(InvalidArgumentError):
        await dmem.open("memory://", colour="blue")
    with pytest.raises(InvalidArgumentError):
        await dmem.open("no-scheme")


async def test_unknown_scheme_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the built-ins load, as on a machine without dmem-redis.
    monkeypatch.setenv("DMEM_LOAD_PLUGINS", "")
    dmem.registry(reload=True)
    try:
        with pytest.raises(PluginNotFoundError) as info:
            await dmem.open("redis://x")
        assert "pip install 'dmem[redis]'" in str(info.value)
        with pytest.raises(PluginNotFoundError, match=r"dmem\[chroma\]"):
            await dmem.open("chroma+http://localhost:8000")
        with pytest.raises(PluginNotFoundError, match="installed kv schemes: memory"):
            await dmem.open("nosuch://x")
    finally:
        monkeypatch.delenv("DMEM_LOAD_PLUGINS")
        dmem.registry(reload=True)


async def test_dmem_url_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMEM_URL", "memory://from-env?namespace=env")
    async with dmem.open() as store:
        assert store.namespace == "env"


def test_redact_url_hides_passwords() -> None:
    assert dmem.redact_url("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    assert dmem.redact_url("redis://:s3cret@host") == "redis://:***@host"
    assert "t0psecret" not in dmem.redact_url("chroma+http://h:1/?token=t0psecret&x=1")
    assert dmem.redact_url("sqlite:///tmp/a.db") == "sqlite:///tmp/a.db"


async def test_repr_and_health_show_no_secret() -> None:
    store = Store(MemoryProvider(), url="memory://user:hunter2@somewhere")
    async with store:
        assert "hunter2" not in repr(store)
        report = await store.health()
        assert report.ok
        assert "hunter2" not in repr(report)


async def test_memory_system_runs_kv_and_reports_health() -> None:
    async with dmem.MemorySystem(kv="memory://", middleware=[dmem.Cache()]) as memory:
        await memory.kv.set("user:1", {"name": "Ada"}, tags={"team": "x"})
        assert await memory.kv.find_by_tag("team", "x") == ["user:1"]
        reports = await memory.health()
        assert reports["kv"].ok


async def test_get_with_ttl_reads_value_and_time_left_together(kv: Store) -> None:
    await kv.set("forever", {"a": 1})
    await kv.set("soon", [1, 2], ttl=0.25)
    await kv.set("none", None)
    assert await kv.get_with_ttl("forever") == ({"a": 1}, None)
    value, left = await kv.get_with_ttl("soon")  # type: ignore[misc]
    assert value == [1, 2] and left is not None and 0 < left <= 0.25
    assert await kv.get_with_ttl("none") == (None, None), "a stored None is live"
    assert await kv.get_with_ttl("missing") is None
    await asyncio.sleep(0.3)
    assert await kv.get_with_ttl("soon") is None
    with pytest.raises(InvalidKeyError):
        await kv.get_with_ttl("")


async def test_get_with_ttl_through_the_cache() -> None:
    async with dmem.open("memory://", middleware=[dmem.Cache(ttl=60)]) as kv:
        await kv.set("k", "v", ttl=30)
        for _ in range(2):  # a miss, then a hit from the cache
            value, left = await kv.get_with_ttl("k")  # type: ignore[misc]
            assert value == "v" and left is not None and 29 < left <= 30
    with pytest.raises(NotInitializedError):
        await kv.get_with_ttl("k")


@pytest.mark.parametrize("namespace", ["a\x00b", "\ud800", "x" * 1025, "é" * 513, 3, None, b"ns"])
async def test_one_namespace_rule_for_every_provider(namespace: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="namespace"):
        await dmem.open("memory://", namespace=namespace)
    with pytest.raises(InvalidArgumentError, match="namespace"):
        await dmem.open("sqlite://", namespace=namespace)
    if isinstance(namespace, str):
        with pytest.raises(InvalidArgumentError, match="namespace"):
            Store(MemoryProvider(namespace=namespace))  # a provider built by hand too


@pytest.mark.parametrize("namespace", ["", ":", "é" * 512, "x" * 1024, "*?[]\\", "\U0001f600"])
async def test_namespaces_within_the_rule_open(namespace: str) -> None:
    async with dmem.open("memory://", namespace=namespace) as kv:
        assert kv.namespace == namespace
