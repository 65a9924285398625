"""Cache and Compression behaviour beyond the contract suite (CONTRACT.md, "Middleware")."""

from __future__ import annotations

import asyncio
import os
import zlib

import dmem
import pytest
from dmem import Cache, Compression, CorruptValueError, InvalidArgumentError, Store, Wrapper
from dmem.backends import MemoryProvider
from dmem.middleware import CacheProvider


async def test_cache_serves_hits_without_touching_the_backend() -> None:
    backend = MemoryProvider()
    async with Store(backend, middleware=[Cache()]) as store:
        await store.set("k", {"a": 1})
        cache = store._top
        assert isinstance(cache, CacheProvider)
        assert await store.get("k") == {"a": 1}
        assert cache.hits == 1
        # A write that bypasses the store is invisible until the cache ttl: that is the
        # documented staleness bound for writers elsewhere.
        await backend.set("k", b"2", ttl_ms=None, if_not_exists=False, tags={})
        assert await store.get("k") == {"a": 1}


async def test_cache_hands_out_fresh_objects() -> None:
    async with dmem.open("memory://", middleware=[Cache()]) as store:
        await store.set("k", {"list": [1, 2]})
        first = await store.get("k")
        first["list"].append(3)
        assert await store.get("k") == {"list": [1, 2]}


async def test_cache_never_outlives_key_expiry() -> None:
    async with dmem.open("memory://", middleware=[Cache(ttl=60)]) as store:
        await store.set("k", 1, ttl=0.05)
        assert await store.get("k") == 1
        await asyncio.sleep(0.1)
        assert await store.get("k") is None
        assert not await store.exists("k")


async def test_cache_ttl_bounds_staleness() -> None:
    backend = MemoryProvider()
    async with Store(backend, middleware=[Cache(ttl=0.05)]) as store:
        await store.set("k", 1)
        await backend.set("k", b"2", ttl_ms=None, if_not_exists=False, tags={})
        await asyncio.sleep(0.08)
        assert await store.get("k") == 2


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.set("k", 2),
        lambda s: s.set_many({"k": 2}),
        lambda s: s.delete("k"),
        lambda s: s.delete_many(["k"]),
        lambda s: s.clear(),
        lambda s: s.expire("k", 0.01),
    ],
)
async def test_writes_through_the_store_invalidate(change: object) -> None:
    async with dmem.open("memory://", middleware=[Cache()]) as store:
        await store.set("k", 1)
        assert await store.get("k") == 1
        await change(store)  # type: ignore[operator]
        await asyncio.sleep(0.02)
        assert await store.get("k") != 1


async def test_persist_invalidates_the_cached_expiry() -> None:
    async with dmem.open("memory://", middleware=[Cache()]) as store:
        await store.set("k", 1, ttl=0.05)
        assert await store.get("k") == 1
        assert await store.persist("k")
        await asyncio.sleep(0.08)
        assert await store.get("k") == 1


class SlowReads(Wrapper):
    """Reads take a while, so a write can land in the middle of one."""

    async def get_entry(self, key: str) -> dmem.Entry | None:
        value = await self.inner.get_entry(key)
        await asyncio.sleep(0.02)
        return value


async def test_a_read_racing_a_write_does_not_cache_the_old_value() -> None:
    async with Store(SlowReads(MemoryProvider()), middleware=[Cache()]) as store:
        await store.set("k", "old")
        await store.delete("k")  # empty the cache so the next get reads through
        await store.set("k", "old")
        store._top._entries.clear()  # type: ignore[attr-defined]
        read = asyncio.create_task(store.get("k"))
        await asyncio.sleep(0.005)
        await store.set("k", "new")
        assert await read == "old"
        assert await store.get("k") == "new"


async def test_cache_bounds() -> None:
    async with dmem.open("memory://", middleware=[Cache(max_entries=3)]) as store:
        for i in range(10):
            await store.set(f"k{i}", i)
        cache = store._top
        assert isinstance(cache, CacheProvider)
        assert len(cache._entries) == 3
        assert await store.get("k0") == 0  # evicted from the cache, still in the store
    async with dmem.open("memory://", middleware=[Cache(max_bytes=1000)]) as store:
        await store.set("big", "x" * 5000)
        assert len(store._top._entries) == 0  # type: ignore[attr-defined]
        assert await store.get("big") == "x" * 5000


@pytest.mark.parametrize(
    "bad", [{"ttl": 0}, {"ttl": float("inf")}, {"max_entries": 0}, {"max_bytes": -1}]
)
def test_cache_rejects_bad_options(bad: dict[str, float]) -> None:
    with pytest.raises(InvalidArgumentError):
        Cache(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ["zlib", "zstd", "lz4"])
async def test_compression_round_trip_and_stored_form(algorithm: str) -> None:
    backend = MemoryProvider()
    value = {"text": "hello world " * 200}
    async with Store(backend, middleware=[Compression(threshold=64, algorithm=algorithm)]) as s:
        await s.set("big", value)
        await s.set("small", "tiny")
        await s.set("blob", b"\x00" * 1000)
        stored = await backend.get("big")
        assert stored is not None and stored.startswith(b"\x00Z")
        assert len(stored) < len(dmem.encode(value))
        assert await backend.get("small") == b'"tiny"'
        assert await s.get("big") == value
        assert await s.get_many(["big", "small"]) == {"big": value, "small": "tiny"}
        assert dict([item async for item in s.scan()])["big"] == value
        assert await s.get("blob") == b"\x00" * 1000


async def test_incompressible_values_stay_raw() -> None:
    backend = MemoryProvider()
    noise = os.urandom(4096)
    async with Store(backend, middleware=[Compression(threshold=16)]) as store:
        await store.set("noise", noise)
        assert await backend.get("noise") == dmem.encode(noise)
        assert await store.get("noise") == noise


async def test_values_written_before_compression_still_read() -> None:
    backend = MemoryProvider(shared_name="before-compression")
    async with Store(backend) as plain:
        await plain.set("old", "x" * 5000)
    async with Store(
        MemoryProvider(shared_name="before-compression"), middleware=[Compression(threshold=10)]
    ) as compressed:
        assert await compressed.get("old") == "x" * 5000


async def test_reading_compressed_values_without_the_middleware_is_a_clear_error() -> None:
    backend = MemoryProvider()
    async with Store(backend, middleware=[Compression(threshold=10)]) as store:
        await store.set("k", "y" * 1000)
    async with Store(backend) as plain:
        with pytest.raises(CorruptValueError, match="Compression"):
            await plain.get("k")


async def _store_raw(backend: MemoryProvider, key: str, raw: bytes) -> None:
    await backend.set(key, raw, ttl_ms=None, if_not_exists=False, tags={})


async def test_decompression_is_bounded() -> None:
    backend = MemoryProvider()
    bomb_size = 50 * 1024 * 1024
    bomb = zlib.compress(b"\x00" * bomb_size)
    spec = Compression(max_size=1024 * 1024)
    async with Store(backend, middleware=[spec]) as store:
        # Honest header over max_size: refused before decompressing.
        await _store_raw(backend, "big", b"\x00Zz" + bomb_size.to_bytes(4, "big") + bomb)
        with pytest.raises(CorruptValueError, match="max_size"):
            await store.get("big")
        # Lying header: decompression stops at the recorded size.
        await _store_raw(backend, "liar", b"\x00Zz" + (100).to_bytes(4, "big") + bomb)
        with pytest.raises(CorruptValueError):
            await store.get("liar")
        # Garbage payload and unknown algorithm.
        await _store_raw(backend, "junk", b"\x00Zz" + (10).to_bytes(4, "big") + b"notzlib")
        with pytest.raises(CorruptValueError):
            await store.get("junk")
        await _store_raw(backend, "alien", b"\x00Z?" + (10).to_bytes(4, "big") + b"x")
        with pytest.raises(CorruptValueError):
            await store.get("alien")


def test_compression_rejects_bad_options() -> None:
    with pytest.raises(InvalidArgumentError):
        Compression(algorithm="brotli")
    with pytest.raises(InvalidArgumentError):
        Compression(threshold=-1)
    with pytest.raises(InvalidArgumentError):
        Compression(max_size=0)


async def test_middleware_by_name_and_chain_order() -> None:
    async with dmem.open("memory://", middleware=["cache", "compression"]) as store:
        assert type(store._top).__name__ == "CacheProvider"
        assert type(store._top.inner).__name__ == "CompressionProvider"  # type: ignore[attr-defined]
    with pytest.raises(dmem.PluginNotFoundError):
        await dmem.open("memory://", middleware=["nope"])
