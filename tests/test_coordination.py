"""The v1.1 store calls on the memory backend: validation before I/O, NotSupportedError,
get_or_set, Store.lock and @dmem.cached (their atomicity is the conformance suite's)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import dmem
import pytest
from dmem import InvalidArgumentError, InvalidKeyError, NotSupportedError, Store
from dmem.backends import MemoryProvider


@pytest.fixture
async def kv() -> AsyncIterator[Store]:
    async with dmem.open("memory://") as store:
        yield store


class _Plain(dmem.Wrapper):
    """A provider with none of the v1.1 operations (the Wrapper's forwarders hidden)."""

    def __getattribute__(self, name: str) -> Any:
        if name in dmem_conformance_ops():
            raise AttributeError(name)
        return object.__getattribute__(self, name)


def dmem_conformance_ops() -> tuple[str, ...]:
    import dmem_conformance

    return dmem_conformance.V1_1_OPERATIONS


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda kv: kv.incr("", 1), InvalidKeyError),
        (lambda kv: kv.incr("k", 1.5), InvalidArgumentError),
        (lambda kv: kv.incr("k", True), InvalidArgumentError),
        (lambda kv: kv.incr("k", 2**63), InvalidArgumentError),
        (lambda kv: kv.decr("k", -(2**63)), InvalidArgumentError),
        (lambda kv: kv.incr("k", ttl=0), InvalidArgumentError),
        (lambda kv: kv.compare_and_set("k", 1, float("nan")), dmem.InvalidValueError),
        (lambda kv: kv.compare_and_set("k", object(), 1), dmem.InvalidValueError),
        (lambda kv: kv.compare_and_set("k", 1, 2, tags={"": "x"}), InvalidArgumentError),
        (lambda kv: kv.compare_and_delete("k\x00", 1), InvalidKeyError),
        (lambda kv: kv.delete_by_tag("t", 1), InvalidArgumentError),
        (lambda kv: kv.get_or_set("k", "not callable"), InvalidArgumentError),
        (lambda kv: kv.get_or_set("k", lambda: 1, lock=1), InvalidArgumentError),
        (lambda kv: kv.get_or_set("k", lambda: 1, ttl=-1), InvalidArgumentError),
        (lambda kv: kv.get_or_set("k", lambda: 1, tags={"t": 1}), InvalidArgumentError),
        (lambda kv: kv.get_or_set("k", lambda: 1, ttls=5), TypeError),
    ],
)
async def test_bad_arguments_are_refused_before_any_io(kv: Store, call: Any, error: Any) -> None:
    with pytest.raises(error):
        await call(kv)
    assert await kv.count() == 0


async def test_get_or_set_checks_its_arguments_on_a_hit_too(kv: Store) -> None:
    # The options are **options (a faster call than keyword-only parameters): each is
    # still checked, on a hit as on a miss, and an unknown one is a TypeError as elsewhere.
    await kv.set("k", 1)
    for bad in ({"lock": "yes"}, {"ttl": 0}, {"tags": {"": "x"}}):
        with pytest.raises(InvalidArgumentError):
            await kv.get_or_set("k", lambda: 2, **bad)
    with pytest.raises(TypeError, match="unexpected keyword argument 'ttls'"):
        await kv.get_or_set("k", lambda: 2, ttls=5)  # type: ignore[call-arg]
    with pytest.raises(InvalidArgumentError, match="factory must be callable"):
        await kv.get_or_set("k", 2)  # type: ignore[arg-type]
    assert await kv.get_or_set(key="k", factory=lambda: 2, ttl=None, tags=None, lock=False) == 1


def test_lock_arguments() -> None:
    store = Store(MemoryProvider())
    for bad in ({"ttl": 0}, {"ttl": 1, "wait": -1}, {"ttl": 1, "wait": float("inf")}):
        with pytest.raises(InvalidArgumentError):
            store.lock("job", **bad)
    with pytest.raises(InvalidKeyError):
        store.lock("", ttl=1)


async def test_a_provider_without_the_operations_says_so() -> None:
    async with Store(_Plain(MemoryProvider())) as kv:
        for call in (
            kv.incr("k"),
            kv.compare_and_set("k", 1, 2),
            kv.compare_and_delete("k", 1),
            kv.delete_by_tag("t", "x"),
        ):
            with pytest.raises(NotSupportedError, match="_Plain does not support"):
                await call
        with pytest.raises(NotSupportedError):
            await kv.lock("job", ttl=1).acquire()
        assert await kv.count() == 0, "nothing was written on the way"


async def test_calls_on_a_closed_store(kv: Store) -> None:
    await kv.aclose()
    with pytest.raises(dmem.NotInitializedError):
        await kv.incr("k")
    with pytest.raises(dmem.NotInitializedError):
        await kv.get_or_set("k", lambda: 1)


async def test_get_or_set_sync_factory_and_a_value_stored_meanwhile(kv: Store) -> None:
    assert await kv.get_or_set("k", lambda: [1, 2], ttl=5, tags={"t": "x"}) == [1, 2]
    assert await kv.find_by_tag("t", "x") == ["k"]
    assert await kv.get_or_set("k", lambda: "other") == [1, 2], "a hit: no factory call"

    async def racer() -> str:
        await kv.set("raced", "first")  # another writer gets there while the factory runs
        return "second"

    assert await kv.get_or_set("raced", racer) == "first", "the stored value wins"
    with pytest.raises(dmem.InvalidValueError):
        await kv.get_or_set("bad", lambda: {1, 2})
    assert not await kv.exists("bad")


class _StaleFirstMiss(dmem.Wrapper):
    """Holds back the first get's answer (a miss, read at once) until ``release`` is set."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.gets = 0

    async def get(self, key: str) -> bytes | None:
        self.gets += 1
        found = await self.inner.get(key)
        if self.gets == 1:
            self.held.set()
            await self.release.wait()
        return found


async def test_get_or_set_miss_read_before_another_flight_ended_calls_no_factory() -> None:
    # B reads a miss, but its answer arrives only after A's whole flight stored the value
    # and ended: B must read again instead of calling the factory a second time.
    slow = _StaleFirstMiss(MemoryProvider())
    calls: list[str] = []
    async with Store(slow) as kv:

        def factory() -> str:
            calls.append("call")
            return "value"

        b = asyncio.create_task(kv.get_or_set("cold", factory))
        await slow.held.wait()
        assert await kv.get_or_set("cold", factory) == "value"
        slow.release.set()
        assert await b == "value"
    assert calls == ["call"], "the factory ran again for a key another flight had filled"


async def test_get_or_set_cancelled_caller_does_not_strand_waiters(kv: Store) -> None:
    started = asyncio.Event()

    async def slow() -> int:
        started.set()
        await asyncio.sleep(10)
        return 1

    first = asyncio.create_task(kv.get_or_set("k", slow))
    await started.wait()
    second = asyncio.create_task(kv.get_or_set("k", slow))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(second, 1)
    assert await kv.get_or_set("k", lambda: 2) == 2, "the next call starts a new flight"


async def test_lock_wait_none_waits_until_released(kv: Store) -> None:
    held = await kv.lock("job", ttl=5).__aenter__()

    async def later() -> None:
        await asyncio.sleep(0.05)
        await held.release()

    releaser = asyncio.create_task(later())
    async with kv.lock("job", ttl=5) as second:
        assert await second.owned()
    await releaser
    assert repr(second) == "<dmem.Lock 'job' ttl=5>"


async def test_cached(kv: Store) -> None:
    calls: list[tuple[Any, ...]] = []

    @dmem.cached(kv, ttl=60, tags={"fn": "profile"})
    async def profile(user: int, *, full: bool = False) -> dict[str, Any]:
        calls.append((user, full))
        return {"user": user, "full": full}

    assert await profile(1) == {"user": 1, "full": False}
    assert await profile(1) == {"user": 1, "full": False}
    assert await profile(1, full=True) == {"user": 1, "full": True}
    assert calls == [(1, False), (1, True)]
    key = profile.key_for(1)
    assert key == "tests.test_coordination.test_cached.<locals>.profile:[[1],{}]"
    assert key == profile.key_for(1) != profile.key_for(2)
    assert await kv.ttl(key) is not None
    assert await profile.invalidate(1)
    await profile(1)
    assert len(calls) == 3
    assert await profile.invalidate_all() == 2
    assert await kv.count() == 0
    assert profile.__wrapped__.__name__ == "profile"

    @dmem.cached(lambda: kv, key=lambda obj: f"obj:{obj.id}")
    async def by_object(obj: Any) -> int:
        return int(obj.id)

    class Thing:
        id = 7

    assert await by_object(Thing()) == 7
    assert await kv.get("obj:7") == 7

    @dmem.cached(kv)
    async def plain(obj: Any) -> int:
        return 1

    with pytest.raises(InvalidArgumentError, match="key="):
        await plain(Thing())
    with pytest.raises(InvalidArgumentError):
        dmem.cached(kv)(lambda: 1)  # type: ignore[arg-type,return-value]
    with pytest.raises(InvalidArgumentError, match="tags="):
        await plain.invalidate_all()


async def test_get_or_set_lock_outlasted_by_the_factory(
    kv: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dmem._coordination as coordination

    monkeypatch.setattr(coordination, "GET_OR_SET_LOCK_TTL", 0.05)

    async def slow() -> str:
        await asyncio.sleep(0.12)  # the lock's ttl runs out meanwhile
        return "done"

    assert await kv.get_or_set("k", slow, lock=True) == "done", "the value stands"
    assert await kv.get("k") == "done"
    assert await kv.keys("dmem:lock:*") == []
