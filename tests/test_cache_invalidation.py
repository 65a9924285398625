"""The Cache's invalidation channel (issue 19) on the memory backend: writes made through
other stores reach the cache, a channel down empties it, and the races stay closed."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable

import dmem
import pytest
from dmem import Cache, Compression, InvalidArgumentError, ProviderUnavailableError, Store, Wrapper
from dmem._invalidation import InvalidationChannel, InvalidationListener
from dmem.backends import MemoryProvider
from dmem.backends.memory import create_memory_provider
from dmem.middleware import CacheProvider


def _name() -> str:
    return f"memory://inval-{uuid.uuid4().hex}"


def _cache(store: Store) -> CacheProvider:
    top = store._top
    assert isinstance(top, CacheProvider)
    return top


Change = Callable[[Store], Awaitable[object]]


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.set("k", 2),
        lambda s: s.set_many({"k": 2}),
        lambda s: s.delete("k"),
        lambda s: s.delete_many(["k"]),
        lambda s: s.clear(),
        lambda s: s.expire("k", 0.01),
        lambda s: s.persist("k"),
        lambda s: s.incr("k"),
        lambda s: s.compare_and_set("k", 1, 2),
        lambda s: s.compare_and_delete("k", 1),
        lambda s: s.delete_by_tag("t", "x"),
    ],
    ids=lambda _: "",
)
async def test_a_write_through_another_store_reaches_the_cache(change: Change) -> None:
    url = _name()
    async with dmem.open(url, middleware=[Cache()]) as cached, dmem.open(url) as other:
        await cached.set("k", 1, ttl=30, tags={"t": "x"})
        assert await cached.get("k") == 1
        hits = _cache(cached).hits
        assert await cached.get("k") == 1
        assert _cache(cached).hits == hits + 1  # served from the cache
        await change(other)
        # The write returned: the next read goes to the backend, and sees what it did.
        misses = _cache(cached).misses
        assert await cached.get("k") == await other.get("k")
        assert _cache(cached).misses == misses + 1


async def test_only_the_written_keys_are_dropped() -> None:
    url = _name()
    async with dmem.open(url, middleware=[Cache()]) as cached, dmem.open(url) as other:
        await cached.set_many({"a": 1, "b": 2})
        assert await cached.get("a") == 1 and await cached.get("b") == 2
        await other.set("a", 10)
        hits = _cache(cached).hits
        assert await cached.get("b") == 2
        assert _cache(cached).hits == hits + 1
        assert await cached.get("a") == 10


async def test_namespaces_and_compression() -> None:
    url = _name()
    chain = [Cache(), Compression(threshold=1)]
    async with (
        dmem.open(url, middleware=chain, namespace="n1") as cached,
        dmem.open(url, middleware=[Compression(threshold=1)], namespace="n1") as same,
        dmem.open(url, namespace="n2") as elsewhere,
    ):
        await cached.set("k", "x" * 100)
        assert await cached.get("k") == "x" * 100
        await elsewhere.set("k", "other namespace")
        hits = _cache(cached).hits
        assert await cached.get("k") == "x" * 100
        assert _cache(cached).hits == hits + 1  # another namespace's write drops nothing
        await same.set("k", "y" * 100)
        assert await cached.get("k") == "y" * 100


async def test_with_namespace_stores_share_the_backend_and_see_each_other() -> None:
    async with dmem.open("memory://", middleware=[Cache()]) as first:
        second = await first.with_namespace("")  # the same namespace, a second provider
        try:
            await first.set("k", 1)
            assert await first.get("k") == 1
            await second.set("k", 2)
            assert await first.get("k") == 2
        finally:
            await second.aclose()


async def test_health_says_which_mode() -> None:
    url = _name()
    async with dmem.open(url, middleware=[Cache()]) as auto:
        report = await auto.health()
        assert report.ok
        cache = report.details["cache"]
        assert isinstance(cache, dict)
        assert cache["invalidation"] == "memory"
        assert cache["bound_s"] == 0.0 and cache["channel_up"] is True
    async with dmem.open(url, middleware=[Cache(ttl=5, invalidation="off")]) as off:
        cache = (await off.health()).details["cache"]
        assert isinstance(cache, dict)
        assert cache["invalidation"] == "off" and cache["bound_s"] == 5.0


async def test_invalidation_off_keeps_the_ttl_bound() -> None:
    url = _name()
    async with (
        dmem.open(url, middleware=[Cache(ttl=0.2, invalidation="off")]) as cached,
        dmem.open(url) as other,
    ):
        await cached.set("k", 1)
        await other.set("k", 2)
        assert await cached.get("k") == 1  # stale, as "off" promises, until the ttl
        await asyncio.sleep(0.25)
        assert await cached.get("k") == 2


class NoChannel(Wrapper):
    """A provider chain whose backend has no channel: what a third-party one looks like."""

    async def open_invalidation(self, listener: InvalidationListener) -> InvalidationChannel:
        raise dmem.NotSupportedError("no channel here")


async def test_without_a_channel_auto_falls_back_to_the_ttl() -> None:
    async with Store(NoChannel(MemoryProvider()), middleware=[Cache(ttl=7)]) as store:
        assert _cache(store).invalidation_mode == "ttl"
        cache = (await store.health()).details["cache"]
        assert isinstance(cache, dict)
        assert cache["invalidation"] == "ttl" and cache["bound_s"] == 7.0
        await store.set("k", 1)
        assert await store.get("k") == 1


class FailingChannel(Wrapper):
    closed = False

    async def open_invalidation(self, listener: InvalidationListener) -> InvalidationChannel:
        raise ProviderUnavailableError("the channel's server is gone")

    async def aclose(self) -> None:
        FailingChannel.closed = True
        await super().aclose()


async def test_a_channel_that_cannot_open_fails_the_open_and_closes_the_backend() -> None:
    store = Store(FailingChannel(MemoryProvider()), middleware=[Cache()])
    with pytest.raises(ProviderUnavailableError):
        await store.initialize()
    assert FailingChannel.closed


class Captured(Wrapper):
    """Keeps the listener the Cache gave, to play the channel's down/up on it."""

    listener: InvalidationListener | None = None

    async def open_invalidation(self, listener: InvalidationListener) -> InvalidationChannel:
        self.listener = listener
        return await super().open_invalidation(listener)


async def test_channel_down_empties_the_cache_and_serves_nothing_until_up() -> None:
    url = _name()
    below = Captured(create_memory_provider(url, {}))
    async with Store(below, middleware=[Cache()]) as cached, dmem.open(url) as other:
        listener = below.listener
        assert listener is not None
        await cached.set("k", 1)
        assert await cached.get("k") == 1
        listener.channel_down()
        assert not _cache(cached)._entries
        report = await cached.health()
        assert report.status == "degraded" and "down" in report.message
        # Writes made while down (their messages may be lost) are seen at once: nothing
        # is served from the cache, and nothing read or written is kept.
        misses = _cache(cached).misses
        await cached.set("k", 2)
        assert await cached.get("k") == 2
        await below.inner.set("k", b"3", ttl_ms=None, if_not_exists=False, tags={})
        assert await cached.get("k") == 3
        assert _cache(cached).misses == misses + 2
        assert not _cache(cached)._entries
        listener.channel_up()
        assert (await cached.health()).ok
        assert await cached.get("k") == 3
        hits = _cache(cached).hits
        assert await cached.get("k") == 3
        assert _cache(cached).hits == hits + 1  # caching again
        await other.set("k", 4)
        assert await cached.get("k") == 4


class SlowReads(Wrapper):
    """Reads take a while, so a write elsewhere can land in the middle of one."""

    async def get_entry(self, key: str) -> dmem.Entry | None:
        value = await self.inner.get_entry(key)
        await asyncio.sleep(0.03)
        return value


async def test_an_invalidation_during_a_read_stops_it_caching_the_old_value() -> None:
    url = _name()
    slow = SlowReads(create_memory_provider(url, {}))
    async with Store(slow, middleware=[Cache()]) as cached, dmem.open(url) as other:
        await other.set("k", "old")
        read = asyncio.create_task(cached.get("k"))
        await asyncio.sleep(0.01)  # the read has its value ("old") and is on its way back
        await other.set("k", "new")
        assert await read == "old"
        assert await cached.get("k") == "new"  # not the "old" the racing read brought


async def test_an_invalidation_of_another_key_does_not_stop_caching() -> None:
    url = _name()
    slow = SlowReads(create_memory_provider(url, {}))
    async with Store(slow, middleware=[Cache()]) as cached, dmem.open(url) as other:
        await other.set("k", 1)
        read = asyncio.create_task(cached.get("k"))
        await asyncio.sleep(0.01)
        await other.set("unrelated", 2)
        assert await read == 1
        hits = _cache(cached).hits
        assert await cached.get("k") == 1
        assert _cache(cached).hits == hits + 1


async def test_a_channel_down_and_up_during_a_read_stops_it_caching() -> None:
    url = _name()
    below = Captured(SlowReads(create_memory_provider(url, {})))
    async with Store(below, middleware=[Cache()]) as cached:
        await cached.set("k", 1)
        _cache(cached)._entries.clear()
        listener = below.listener
        assert listener is not None
        read = asyncio.create_task(cached.get("k"))
        await asyncio.sleep(0.01)
        listener.channel_down()
        listener.channel_up()  # messages sent meanwhile may be lost: the read may be stale
        assert await read == 1
        assert not _cache(cached)._entries


async def test_a_write_from_another_thread_reaches_the_cache_on_its_loop() -> None:
    url = _name()
    async with dmem.open(url, middleware=[Cache()]) as cached:
        await cached.set("k", 1)
        assert await cached.get("k") == 1
        seen: list[int] = []

        def other_thread() -> None:
            async def write() -> None:
                async with dmem.open(url) as other:
                    await other.set("k", 2)
                    seen.append(threading.get_ident())

            asyncio.run(write())

        thread = threading.Thread(target=other_thread)
        thread.start()
        await asyncio.to_thread(thread.join)
        assert seen and seen[0] != threading.get_ident()
        await asyncio.sleep(0)  # the call_soon_threadsafe callback runs on this loop
        assert await cached.get("k") == 2


async def test_closing_the_cache_closes_its_channel() -> None:
    url = _name()
    backend = create_memory_provider(url, {})
    async with Store(backend, middleware=[Cache()]):
        assert len(backend._space.channels) == 1
    assert backend._space.channels == []


@pytest.mark.parametrize("bad", ["on", "", None, True, "AUTO"])
def test_cache_rejects_a_bad_invalidation_mode(bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match="invalidation"):
        Cache(invalidation=bad)  # type: ignore[arg-type]
