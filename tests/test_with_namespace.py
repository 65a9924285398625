"""``Store.with_namespace`` and ``dmem.sharing``: many namespaces over one connection.

The backends' own tests (plugins/*/tests/test_*_shared.py) count their connections and
threads; here the core's part: the derived store's checks, middleware, lifecycle, and the
reference-counted registry every plugin shares connections with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import dmem
import pytest
from dmem import (
    Cache,
    Compression,
    InvalidArgumentError,
    NotInitializedError,
    NotSupportedError,
    ProviderError,
    Store,
    Wrapper,
)
from dmem._logging import SlowCallLog
from dmem.backends import MemoryProvider
from dmem.middleware import CacheProvider
from dmem.sharing import SharedConnections

BAD_NAMESPACES = ["a\x00b", "x\ud800", "n" * (dmem.MAX_NAMESPACE_BYTES + 1), 7, None, b"ns"]


class Counting(MemoryProvider):
    """A memory provider that counts what reaches it, derived ones included."""

    def __init__(self, calls: list[str], namespace: str = "") -> None:
        super().__init__(namespace=namespace)
        self.calls = calls

    async def initialize(self) -> None:
        self.calls.append(f"initialize {self.namespace}")

    async def aclose(self) -> None:
        self.calls.append(f"aclose {self.namespace}")

    async def get(self, key: str) -> bytes | None:
        self.calls.append(f"get {self.namespace}")
        return await super().get(key)

    def with_namespace(self, namespace: str) -> Counting:
        self.calls.append(f"with_namespace {namespace}")
        derived = Counting(self.calls, namespace)
        derived._use(self._backend)
        return derived


def _chain_top(store: Store) -> Any:
    top = store._top
    return top.inner if isinstance(top, SlowCallLog) else top


async def test_isolated_namespaces_of_one_private_memory_backend() -> None:
    async with dmem.open("memory://", namespace="a") as kv:
        other = await kv.with_namespace("b")
        assert other.namespace == "b" and isinstance(other, Store)
        await kv.set("k", "a", tags={"t": "x"})
        await other.set("k", "b", tags={"t": "x"})
        await other.set("only-b", 1)
        assert await kv.get("k") == "a" and await other.get("k") == "b"
        assert sorted(await other.keys()) == ["k", "only-b"]
        assert await kv.find_by_tag("t", "x") == ["k"]
        assert await other.clear() == 2
        assert await kv.get("k") == "a"
        # Same namespace again: the same data (it is the same backend), not a copy.
        same = await kv.with_namespace("a")
        assert await same.get("k") == "a"
        # A private memory:// backend stays private: another open does not see it.
        async with dmem.open("memory://", namespace="a") as stranger:
            assert await stranger.get("k") is None
        await other.aclose()
        await same.aclose()


async def test_async_with_form_and_url_and_repr() -> None:
    async with dmem.open("memory://shared-ns-test") as kv:
        async with kv.with_namespace("inner") as inner:
            await inner.set("k", 1)
            assert inner.url == kv.url == "memory://shared-ns-test"
            assert "namespace='inner'" in repr(inner)
        with pytest.raises(NotInitializedError):
            await inner.get("k")
        assert await kv.get("k") is None


async def test_middleware_chain_is_rebuilt_from_the_same_specs() -> None:
    cache, compression = Cache(ttl=30), Compression(threshold=8)
    async with dmem.open("memory://", middleware=[cache, compression]) as kv:
        other = await kv.with_namespace("other")
        assert other.middleware == kv.middleware == (cache, compression)
        top_kv, top_other = _chain_top(kv), _chain_top(other)
        assert isinstance(top_kv, CacheProvider) and isinstance(top_other, CacheProvider)
        assert top_kv is not top_other, "each store needs a Cache of its own"
        await kv.set("k", "x" * 100)
        await other.set("k", "y" * 100)
        assert await kv.get("k") == "x" * 100 and await other.get("k") == "y" * 100
        assert await other.get("k") == "y" * 100  # a cache hit of its own namespace
        await other.aclose()


async def test_checks_come_before_any_io() -> None:
    calls: list[str] = []
    kv = Store(Counting(calls, "root"))
    with pytest.raises(NotInitializedError, match="not initialized"):
        kv.with_namespace("x")
    await kv.initialize()
    calls.clear()
    for bad in BAD_NAMESPACES:
        with pytest.raises(InvalidArgumentError):
            kv.with_namespace(bad)  # type: ignore[arg-type]
    assert calls == [], "a refused namespace reached the provider"
    other = await kv.with_namespace("x")
    assert calls == ["with_namespace x", "initialize x"]
    await kv.aclose()
    with pytest.raises(NotInitializedError, match="closed"):
        kv.with_namespace("y")
    assert calls[-1] == "aclose root"
    await other.aclose()


async def test_a_store_closed_between_call_and_await_refuses_too() -> None:
    kv = await dmem.open("memory://")
    pending = kv.with_namespace("late")
    await kv.aclose()
    with pytest.raises(NotInitializedError):
        await pending


async def test_closing_order() -> None:
    """Each store closes on its own; the provider's connection goes with the last one."""
    calls: list[str] = []
    kv = Store(Counting(calls, "root"))
    await kv.initialize()
    one = await kv.with_namespace("one")
    two = await one.with_namespace("two")  # derived from a derived store: the same
    await kv.set("k", 0)
    await one.set("k", 1)
    await kv.aclose()
    assert await one.get("k") == 1, "closing the parent closed a derived store"
    await two.set("k", 2)
    await one.aclose()
    assert await two.get("k") == 2
    await two.aclose()
    for closed in (kv, one, two):
        with pytest.raises(NotInitializedError):
            await closed.get("k")
        await closed.aclose()  # idempotent
    assert [c for c in calls if c.startswith("aclose")] == [
        "aclose root",
        "aclose one",
        "aclose two",
    ]


async def test_a_provider_without_with_namespace_is_named() -> None:
    class Plain(dmem.BaseKVProvider):
        async def get_entry(self, key: str) -> Any:
            return None

        async def set(self, key: str, value: bytes, **kwargs: Any) -> bool:
            return True

        async def delete(self, key: str) -> bool:
            return False

        async def scan(self, pattern: dmem.Pattern) -> Any:
            return
            yield

        async def find_by_tag(self, name: str, value: str) -> list[str]:
            return []

        async def get_tags(self, key: str) -> dict[str, str]:
            return {}

        async def expire(self, key: str, ttl_ms: int) -> bool:
            return False

        async def persist(self, key: str) -> bool:
            return False

    async with Store(Plain()) as kv:
        with pytest.raises(NotSupportedError, match="Plain cannot open another namespace"):
            kv.with_namespace("x")
        assert issubclass(NotSupportedError, NotImplementedError)
        assert issubclass(NotSupportedError, dmem.DmemError)


async def test_a_derived_provider_that_fails_is_closed_again() -> None:
    calls: list[str] = []

    class WrongNamespace(Counting):
        def with_namespace(self, namespace: str) -> Counting:
            calls.append(f"with_namespace {namespace}")
            return Counting(calls, namespace + "!")

    class FailsToOpen(Counting):
        def with_namespace(self, namespace: str) -> Counting:
            class Broken(Counting):
                async def initialize(self) -> None:
                    raise ProviderError("cannot")

            return Broken(calls, namespace)

    class Raises(Counting):
        def with_namespace(self, namespace: str) -> Counting:
            raise OSError("boom")

    async with Store(WrongNamespace(calls)) as kv:
        with pytest.raises(ProviderError, match="another namespace"):
            await kv.with_namespace("x")
        assert calls[-1] == "aclose x!"
    async with Store(FailsToOpen(calls)) as kv:
        with pytest.raises(ProviderError, match="cannot"):
            await kv.with_namespace("y")
        assert calls[-1] == "aclose y"
    async with Store(Raises(calls)) as kv:
        with pytest.raises(ProviderError, match="OSError: boom") as info:
            await kv.with_namespace("z")
        assert isinstance(info.value.__cause__, OSError)


async def test_a_hand_built_wrapper_as_the_provider_cannot_derive() -> None:
    async with Store(Wrapper(MemoryProvider())) as kv:
        with pytest.raises(NotSupportedError, match="Wrapper"):
            kv.with_namespace("x")


# --- dmem.open's share_connection option --------------------------------------------------
def test_share_connection_must_be_a_bool() -> None:
    for bad in ("maybe", 2, None):
        with pytest.raises(InvalidArgumentError, match="share_connection"):
            dmem.create_provider("memory://", {"share_connection": bad})


async def test_providers_that_share_nothing_accept_and_ignore_it() -> None:
    for value in (False, True, "false"):
        async with dmem.open("memory://", share_connection=value) as kv:
            assert await kv.set("k", 1)


def test_only_providers_that_share_get_the_option() -> None:
    seen: list[dict[str, Any]] = []

    def factory(url: str, options: dict[str, Any]) -> MemoryProvider:
        seen.append(dict(options))
        return MemoryProvider()

    reg = dmem.registry()
    for shares in (False, True):
        spec = dmem.ProviderSpec("t", ("t",), factory, shares_connections=shares)
        reg.providers["kv", "t"] = spec
        try:
            dmem.create_provider("t://?share_connection=no", {})
            dmem.create_provider("t://", {})
        finally:
            del reg.providers["kv", "t"]
    assert seen == [{}, {}, {"share_connection": False}, {"share_connection": True}]


# --- dmem.sharing -------------------------------------------------------------------------
class Handle:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False


def _registry(per_loop: bool = False) -> tuple[SharedConnections[Handle], list[str], Any]:
    opened: list[str] = []

    def opener(name: str) -> Callable[[], Handle]:
        def make() -> Handle:
            opened.append(name)
            return Handle(name)

        return make

    return SharedConnections("test", per_loop=per_loop), opened, opener


async def _close(handle: Handle) -> None:
    handle.closed = True


async def test_one_handle_per_key_closed_with_the_last_lease() -> None:
    reg, opened, opener = _registry()
    a = reg.acquire("k", opener("first"), _close)
    b = reg.acquire("k", opener("second"), _close)
    c = reg.acquire("other", opener("other"), _close)
    assert a.value is b.value and opened == ["first", "other"]
    assert a.users == 2 and reg.users("k") == 2 and len(reg) == 2 and a.shared
    d = a.share()
    assert d.value is a.value and reg.users("k") == 3
    handle = a.value
    await a.release()
    await a.release()  # idempotent: counted once
    with pytest.raises(NotInitializedError):
        a.value  # noqa: B018
    with pytest.raises(NotInitializedError):
        a.share()
    await b.release()
    assert not handle.closed and reg.users("k") == 1
    await d.release()
    assert handle.closed and reg.users("k") == 0 and len(reg) == 1
    # A new lease on the key after the last one: a new handle.
    e = reg.acquire("k", opener("third"), _close)
    assert e.value is not handle and opened[-1] == "third"
    await e.release()
    await c.release()
    assert len(reg) == 0


async def test_key_none_is_private_but_shareable() -> None:
    reg, opened, opener = _registry()
    a = reg.acquire(None, opener("a"), _close)
    b = reg.acquire(None, opener("b"), _close)
    assert a.value is not b.value and not a.shared and len(reg) == 0
    c = a.share()
    assert c.value is a.value and a.users == 2
    await a.release()
    assert not c.value.closed
    await c.release()
    await b.release()
    assert opened == ["a", "b"]


def test_per_loop_handles_are_never_shared_across_loops() -> None:
    reg, opened, opener = _registry(per_loop=True)

    async def take(name: str) -> Any:
        lease = reg.acquire("k", opener(name), _close)
        again = reg.acquire("k", opener(name + "-again"), _close)
        assert again.value is lease.value
        await again.release()
        return lease

    first = asyncio.run(take("loop1"))
    second = asyncio.run(take("loop2"))
    assert opened == ["loop1", "loop2"] and first.value is not second.value
    asyncio.run(first.release())
    asyncio.run(second.release())
    assert len(reg) == 0


def test_a_failing_opener_leaves_nothing() -> None:
    reg: SharedConnections[Handle] = SharedConnections("test")

    def broken() -> Handle:
        raise OSError("no")

    with pytest.raises(OSError):
        reg.acquire("k", broken, _close)
    assert len(reg) == 0 and reg.users("k") == 0
    assert "test" in repr(reg)
