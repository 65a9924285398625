"""Arguments of any type, at the core's facades: ``Store``, ``VectorStore``, ``MemorySystem``.

The conformance clause ``errors.any-argument`` runs on every backend and checks what a
user sees (a result or an InvalidArgumentError, nothing written). Here the providers
count their calls, so "before any I/O" is checked literally: a call the store refuses
never reaches the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from typing import Any

import dmem
import pytest
from dmem import (
    Cache,
    DmemError,
    InvalidArgumentError,
    KeyNotFoundError,
    MemorySystem,
    Store,
    VectorRecord,
    VectorStore,
    Wrapper,
)
from dmem.backends import MemoryProvider
from dmem.vector import MemoryVectorProvider
from dmem_conformance._arguments import Call, call_lists
from dmem_conformance._kv_arguments import KV_SIGNATURES
from dmem_conformance._vector_arguments import VECTOR_SIGNATURES
from dmem_conformance.strategies import BadRepr, anything, huge_int, nested_list
from hypothesis import HealthCheck, given, settings

_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=(HealthCheck.too_slow, HealthCheck.data_too_large),
)


_IO = frozenset(KV_SIGNATURES) - {"health"} | {"get_entry"}


class Counting(Wrapper):
    """Counts the calls that reach the provider."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.calls: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        if name in _IO:
            object.__getattribute__(self, "calls").append(name)
        return object.__getattribute__(self, name)


class CountingVectors:
    """A vector provider that counts the calls reaching it, and which of them raised."""

    def __init__(self) -> None:
        self.inner = MemoryVectorProvider()
        self.namespace = ""
        self.exact = True
        self.calls: list[str] = []
        self.raised: list[BaseException] = []

    async def _forward(self, name: str, *args: Any) -> Any:
        self.calls.append(name)
        try:
            return await getattr(self.inner, name)(*args)
        except BaseException as exc:
            self.raised.append(exc)
            raise

    async def initialize(self) -> None:
        await self.inner.initialize()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def upsert(self, records: Sequence[VectorRecord]) -> None:
        await self._forward("upsert", records)

    async def query(self, vector: Any, k: int, where: Any) -> Any:
        return await self._forward("query", vector, k, where)

    async def get(self, ids: Sequence[str]) -> Any:
        return await self._forward("get", ids)

    async def delete(self, ids: Sequence[str]) -> Any:
        return await self._forward("delete", ids)

    async def count(self) -> Any:
        return await self._forward("count")

    async def clear(self) -> Any:
        return await self._forward("clear")

    async def health(self) -> Any:
        return await self.inner.health()


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


def _refusal(loop: asyncio.AbstractEventLoop, call: Call, store: Any) -> Exception | None:
    """The exception ``call`` raised (None when it returned); never a non-DmemError."""
    try:
        loop.run_until_complete(call.run(store))
    except DmemError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - the test
        pytest.fail(f"{call!r} raised {type(exc).__name__}, not a DmemError")
    return None


def test_refused_store_calls_never_reach_the_provider() -> None:
    loop = _loop()
    counting = Counting(MemoryProvider())
    store = Store(counting, middleware=[Cache()])
    loop.run_until_complete(store.initialize())

    @_SETTINGS
    @given(calls=call_lists(KV_SIGNATURES))
    def run(calls: list[Call]) -> None:
        loop.run_until_complete(store.clear())
        loop.run_until_complete(store.set("a", 1, tags={"t": "1"}))
        for call in calls:
            counting.calls.clear()
            exc = _refusal(loop, call, store)
            if exc is None or isinstance(exc, KeyNotFoundError):
                continue  # ttl()/get_tags() of a missing key asks the provider, rightly
            assert isinstance(exc, InvalidArgumentError), f"{call!r}: {exc!r}"
            assert counting.calls == [], f"{call!r} was refused after {counting.calls}"

    try:
        run()
    finally:
        loop.run_until_complete(store.aclose())
        loop.close()


def test_refused_vector_calls_never_reach_the_provider() -> None:
    loop = _loop()
    provider = CountingVectors()
    store = VectorStore(provider)
    loop.run_until_complete(store.initialize())

    @_SETTINGS
    @given(calls=call_lists(VECTOR_SIGNATURES))
    def run(calls: list[Call]) -> None:
        loop.run_until_complete(store.clear())
        loop.run_until_complete(store.upsert([VectorRecord("anchor", (1.0, 0.0, 0.0))]))
        for call in calls:
            provider.calls.clear()
            provider.raised.clear()
            exc = _refusal(loop, call, store)
            if exc is None:
                continue
            assert isinstance(exc, InvalidArgumentError), f"{call!r}: {exc!r}"
            if provider.calls:
                # Only the provider knows the collection's dimension.
                assert provider.raised == [exc] and "dimension" in str(exc), (
                    f"{call!r} was refused after {provider.calls}: {exc}"
                )

    try:
        run()
    finally:
        loop.run_until_complete(store.aclose())
        loop.close()


@given(value=anything())
@_SETTINGS
def test_any_object_as_each_argument_of_set(value: Any) -> None:
    """One argument at a time, the others valid: a result or an InvalidArgumentError."""

    async def run() -> None:
        async with dmem.open("memory://") as store:
            for call in (
                Call("set", value, 1),
                Call("set", "k", value),
                Call("set", "k", 1, ttl=value),
                Call("set", "k", 1, if_not_exists=value),
                Call("set", "k", 1, tags=value),
                Call("set_many", value),
                Call("set_many", {"k": 1}, tags=value),
                Call("get_many", value),
                Call("keys", value),
                Call("find_by_tag", value, "x"),
                Call("find_by_tag", "t", value),
                Call("expire", "k", value),
            ):
                with contextlib.suppress(InvalidArgumentError):
                    await call.run(store)

    asyncio.run(run())


# --- the constructors -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: Store(5),  # type: ignore[arg-type]
        lambda: Store(None),  # type: ignore[arg-type]
        lambda: Store(object()),  # type: ignore[arg-type]
        lambda: Store(MemoryProvider(), middleware=5),  # type: ignore[arg-type]
        lambda: Store(MemoryProvider(), middleware="cache"),
        lambda: Store(MemoryProvider(), middleware=[5]),
        lambda: Store(MemoryProvider(), middleware=[BadRepr()]),
        lambda: Store(MemoryProvider(), url=5),  # type: ignore[arg-type]
        lambda: VectorStore(5),  # type: ignore[arg-type]
        lambda: VectorStore(MemoryVectorProvider(), embedder=huge_int()),  # type: ignore[arg-type]
        lambda: VectorStore(MemoryVectorProvider(), embedder=[1]),  # type: ignore[arg-type]
        lambda: VectorStore(MemoryVectorProvider(), url=b"memory://"),  # type: ignore[arg-type]
        lambda: MemorySystem(kv=5),
        lambda: MemorySystem(kv="memory://", kv_options=5),  # type: ignore[arg-type]
        lambda: MemorySystem(kv="memory://", kv_options={1: "x"}),  # type: ignore[dict-item]
        lambda: MemorySystem(kv="memory://", middleware=5),  # type: ignore[arg-type]
        lambda: MemorySystem(kv="memory://", middleware="cache"),
        lambda: MemorySystem(kv="memory://", middleware=[huge_int()]),
        lambda: MemorySystem(kv="memory://", vector=5),
        lambda: MemorySystem(kv="memory://", vector="memory://", vector_options=[]),  # type: ignore[arg-type]
        lambda: MemorySystem(kv="memory://", vector="memory://", embedder=5),
    ],
)
def test_bad_constructor_arguments(make: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        make()


def test_memory_system_provider_kinds() -> None:
    memory = MemorySystem(kv="memory://")
    kinds: list[Any] = [[], None, 5, ""]
    for kind in kinds:
        with pytest.raises(InvalidArgumentError):
            memory.provider(kind)
        with pytest.raises(InvalidArgumentError):
            memory.register_provider(kind, MemoryVectorProvider())
    with pytest.raises(InvalidArgumentError):
        memory.register_provider("kv", 5)
    with pytest.raises(InvalidArgumentError):
        memory.register_provider("extra", 5)
    memory.register_provider("extra", MemoryVectorProvider())
    assert isinstance(memory.provider("extra"), MemoryVectorProvider)


async def test_good_constructor_arguments_still_work() -> None:
    async with MemorySystem(
        kv="memory://",
        middleware=("cache", dmem.Compression(threshold=8)),
        kv_options={"namespace": "x"},
        vector="memory://",
        embedder="hash",
    ) as memory:
        assert memory.kv.namespace == "x"
        await memory.kv.set("k", "v" * 20)
        assert await memory.kv.get("k") == "v" * 20
        await memory.vector.upsert([{"id": "a", "document": "some text"}])
        assert [hit.id for hit in await memory.vector.query("some text", k=1)] == ["a"]


def test_nested_and_huge_keys_are_named_safely() -> None:
    async def run() -> None:
        async with dmem.open("memory://") as store:
            keys: list[Any] = [huge_int(), nested_list(5000), BadRepr()]
            for key in keys:
                with pytest.raises(InvalidArgumentError, match="invalid key"):
                    await store.get(key)
            with pytest.raises(InvalidArgumentError):
                await store.set("k", 1, ttl=math.inf)

    asyncio.run(run())


def test_anything_has_a_repr() -> None:
    # Hypothesis shows strategies by their repr: anything() must have one (a 5000-digit
    # int in a sampled_from would not).
    assert "one_of" in repr(anything())


@pytest.mark.parametrize("middleware", [5, "cache", b"x", None, {"cache": 1}])
async def test_open_refuses_middleware_that_is_not_a_list(middleware: object) -> None:
    with pytest.raises(dmem.InvalidArgumentError, match="middleware"):
        await dmem.open("memory://", middleware=middleware)  # type: ignore[arg-type]
