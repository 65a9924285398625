"""The known traps of a Redis provider (issue 5), each avoided and checked on a real server.

Where a trap is about *how* Redis is used (one SET NX PX, SCAN not KEYS, MGET batches,
count without values) the test reads the server's own ``INFO commandstats`` on a server
the test owns, so the counts are exact.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import dmem
import pytest
import redis.asyncio as aioredis
from dmem_redis import RedisProvider
from redis_servers import RedisServer


def _ns() -> str:
    return f"trap-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def kv(redis_url: str) -> AsyncIterator[dmem.Store]:
    async with dmem.open(redis_url, namespace=_ns()) as store:
        yield store
        await store.clear()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def _stats(client: aioredis.Redis) -> dict[str, int]:
    info = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()}


async def _calls_during(client: aioredis.Redis, coro: object) -> dict[str, int]:
    """Commands the server ran (scripts' inner calls included) while ``coro`` ran."""
    await client.config_resetstat()
    await coro  # type: ignore[misc]
    stats = await _stats(client)
    stats.pop("config|resetstat", None)
    stats.pop("info", None)
    return stats


def _value_key(kv: dmem.Store, key: str) -> str:
    provider = kv.provider
    assert isinstance(provider, RedisProvider)
    return provider._layout.value_key(key)


def _prefix(kv: dmem.Store) -> str:
    provider = kv.provider
    assert isinstance(provider, RedisProvider)
    return provider._layout.prefixes[0]


# --- values are the core's bytes -------------------------------------------------------------
async def test_values_are_the_cores_bytes(kv: dmem.Store, raw: aioredis.Redis) -> None:
    for value in ("123", "", b"", "true", "null", 0, None, -0.0, {"a": "1"}):
        await kv.set("v", value)
        got = await kv.get("v", default="MISSING")
        assert got == value and type(got) is type(value), (value, got)
        # Stored exactly as the core encoded it: no JSON guessing on the way back.
        assert await raw.get(_value_key(kv, "v")) == dmem.encode(value)
    assert await raw.get(_value_key(kv, "v")) == b'{"a":"1"}'  # plain JSON text


# --- if_not_exists with ttl is one SET NX PX ---------------------------------------------------
async def test_nx_with_ttl_is_one_set_nx_px(restartable_redis: RedisServer) -> None:
    client = aioredis.Redis.from_url(restartable_redis.url)
    async with dmem.open(restartable_redis.url, namespace="nx") as kv:
        calls = await _calls_during(client, kv.set("k", 1, ttl=5, if_not_exists=True))
        # One SET (with NX PX, inside the script): no separate SETNX/PEXPIRE/EXPIRE.
        assert calls.get("set") == 1 and "pexpire" not in calls and "setnx" not in calls
        assert calls.get("evalsha", 0) + calls.get("eval", 0) == 1
        before = await kv.ttl("k")
        assert not await kv.set("k", 2, ttl=100, if_not_exists=True, tags={"a": "b"})
        assert await kv.get("k") == 1 and await kv.get_tags("k") == {}
        after = await kv.ttl("k")
        assert before is not None and after is not None and after <= before
    await client.aclose()


async def test_nx_one_winner_across_connections(redis_url: str) -> None:
    ns = _ns()
    stores = [await dmem.open(redis_url, namespace=ns) for _ in range(8)]
    try:
        results = await asyncio.gather(
            *(s.set("race", i, ttl=30, if_not_exists=True) for i, s in enumerate(stores))
        )
        assert sum(results) == 1
        winner = results.index(True)
        assert await stores[0].get("race") == winner
        assert (await stores[0].ttl("race") or 0) > 25
    finally:
        await stores[0].clear()
        for store in stores:
            await store.aclose()


# --- tag indexes ------------------------------------------------------------------------------
async def _index_members(raw: aioredis.Redis, kv: dmem.Store, name: str, value: str) -> set[str]:
    from dmem_redis._layout import tag_suffix

    members = await raw.smembers(_prefix(kv) + tag_suffix(name, value))
    return {m.decode() for m in members}


async def test_tag_index_cleaned_on_overwrite_and_delete(
    kv: dmem.Store, raw: aioredis.Redis
) -> None:
    await kv.set("k", 1, tags={"team": "a:b", "x": "1"})
    assert await _index_members(raw, kv, "team", "a:b") == {"k"}
    await kv.set("k", 2, tags={"team": "c"})  # overwrite: old index entries gone at once
    assert await _index_members(raw, kv, "team", "a:b") == set()
    assert await _index_members(raw, kv, "x", "1") == set()
    assert await kv.find_by_tag("team", "c") == ["k"]
    await kv.set("k", 3)  # no tags means none
    assert await kv.get_tags("k") == {} and await kv.find_by_tag("team", "c") == []
    assert await _index_members(raw, kv, "team", "c") == set()
    await kv.set("k", 4, tags={"team": "c"})
    assert await kv.delete("k")
    assert await _index_members(raw, kv, "team", "c") == set()
    assert not await raw.exists(_prefix(kv) + "m:k")


async def test_tag_values_with_colons_are_unambiguous(kv: dmem.Store) -> None:
    # With a naive "tags:NAME:VALUE" key these two collide.
    await kv.set("one", 1, tags={"a:b": "c"})
    await kv.set("two", 2, tags={"a": "b:c"})
    assert await kv.find_by_tag("a:b", "c") == ["one"]
    assert await kv.find_by_tag("a", "b:c") == ["two"]
    assert await kv.find_by_tag("a", "b") == []
    assert await kv.get_tags("one") == {"a:b": "c"}


async def test_expired_keys_never_come_back_from_find_by_tag(
    kv: dmem.Store, raw: aioredis.Redis
) -> None:
    await kv.set("short", 1, ttl=0.05, tags={"t": "v"})
    await kv.set("long", 2, tags={"t": "v"})
    await asyncio.sleep(0.1)
    assert await kv.find_by_tag("t", "v") == ["long"]
    # The stale member was purged, not just filtered.
    assert await _index_members(raw, kv, "t", "v") == {"long"}


async def test_index_sets_expire_with_their_members(kv: dmem.Store, raw: aioredis.Redis) -> None:
    from dmem_redis._layout import tag_suffix

    index = _prefix(kv) + tag_suffix("session", "s1")
    await kv.set("a", 1, ttl=0.2, tags={"session": "s1"})
    await kv.set("b", 1, ttl=0.4, tags={"session": "s1"})
    assert 200 < await raw.pttl(index) <= 400  # as long as its longest-lived member
    await kv.persist("a")
    assert await raw.pttl(index) == -1  # a member without expiry keeps the set
    await kv.expire("a", 0.1)
    await asyncio.sleep(0.5)
    # Nobody asked find_by_tag; the storage still went away on its own.
    assert await kv.find_by_tag("session", "s1") == []
    assert await raw.exists(_prefix(kv) + "m:a", _prefix(kv) + "m:b") == 0


async def test_tagged_set_is_one_atomic_script(
    restartable_redis: RedisServer,
) -> None:
    client = aioredis.Redis.from_url(restartable_redis.url)
    async with dmem.open(restartable_redis.url, namespace="atomic") as kv:
        # Not now: the provider's tag-index sweep (its own script, at most once a second).
        kv.provider._next_sweep = math.inf  # type: ignore[attr-defined]
        calls = await _calls_during(
            client, kv.set_many({f"k{i}": i for i in range(50)}, tags={"a": "1", "b": "2"})
        )
        # The whole tagged batch went in one script: nothing half-written on failure.
        assert calls.get("evalsha", 0) + calls.get("eval", 0) == 1
        assert len(await kv.find_by_tag("b", "2")) == 50
    await client.aclose()


# --- bookkeeping never shows, never collides ---------------------------------------------------
async def test_bookkeeping_never_listed_and_never_collides(kv: dmem.Store) -> None:
    look_alikes = ["m:k", "t:1:t:v", "k:k", "k", "dmem:x", "t:", "m:"]
    for key in look_alikes:
        await kv.set(key, key, tags={"t": "v"})
    assert sorted(await kv.keys()) == sorted(look_alikes)
    assert await kv.count() == len(look_alikes)
    assert sorted([k async for k, _ in kv.scan()]) == sorted(look_alikes)
    for key in look_alikes:
        assert await kv.get(key) == key and await kv.get_tags(key) == {"t": "v"}
    assert sorted(await kv.find_by_tag("t", "v")) == sorted(look_alikes)
    assert await kv.clear() == len(look_alikes)


@pytest.mark.parametrize(
    ("ns_a", "ns_b"),
    [
        ("a", "ab"),
        ("a*", "ab"),
        ("a?", "ab"),
        ("[ab]", "a"),
        ("a\\", "a\\b"),
        ("a:k:", "a"),
        ("{x}", "{x}y"),
        ("1:a", "1"),
    ],
)
async def test_namespaces_escaped(redis_url: str, ns_a: str, ns_b: str) -> None:
    ns_a, ns_b = f"{ns_a}-{uuid.uuid4().hex[:4]}", f"{ns_b}-{uuid.uuid4().hex[:4]}"
    async with dmem.open(redis_url, namespace=ns_a) as a, dmem.open(redis_url, namespace=ns_b) as b:
        try:
            await a.set("x", "a", tags={"t": "v"})
            await b.set("x", "b", tags={"t": "v"})
            await b.set("y", "b")
            assert await a.keys() == ["x"] and await a.count() == 1
            assert await a.find_by_tag("t", "v") == ["x"]
            assert [kv async for kv in a.scan("*")] == [("x", "a")]
            assert await a.clear() == 1
            assert sorted(await b.keys()) == ["x", "y"]
        finally:
            await a.clear()
            await b.clear()


# --- listing: SCAN, dedupe, MGET batches, core matcher, count without values -------------------
async def test_listing_uses_scan_mget_batches_and_count_loads_nothing(
    restartable_redis: RedisServer,
) -> None:
    client = aioredis.Redis.from_url(restartable_redis.url)
    async with dmem.open(restartable_redis.url, namespace="list") as kv:
        await kv.set_many({f"k{i:04d}": i for i in range(2500)})
        calls = await _calls_during(client, kv.count())
        assert "keys" not in calls and calls.get("scan", 0) >= 1
        assert not {"get", "mget", "evalsha", "eval"} & calls.keys()  # no value loaded
        assert await kv.count() == 2500

        async def drain() -> None:
            assert len([k async for k, _ in kv.scan("k*")]) == 2500

        calls = await _calls_during(client, drain())
        assert "keys" not in calls
        # Values come in MGET batches, never one GET per key: small values in big batches
        # (16 blind, then up to 1,000 a batch), ...
        assert "get" not in calls and 2 <= calls.get("mget", 0) <= 8
        calls = await _calls_during(client, kv.keys("k1*"))
        assert "keys" not in calls and "mget" not in calls
        # ... large values in batches of about 128 KB: 8 KB values, 16 a batch.
        await kv.clear()
        await kv.set_many({f"big{i:03d}": "x" * 8192 for i in range(320)})

        async def drain_big() -> None:
            assert len([k async for k, _ in kv.scan("big*")]) == 320

        calls = await _calls_during(client, drain_big())
        assert "get" not in calls and 20 <= calls.get("mget", 0) <= 24
    await client.aclose()


async def test_scan_repeats_are_deduplicated(kv: dmem.Store) -> None:
    provider = kv.provider
    assert isinstance(provider, RedisProvider)
    await kv.set_many({"a": 1, "b": 2, "c": 3})
    real_scan = provider._scan_raw

    async def repeating(match: str) -> AsyncIterator[list[bytes]]:
        # SCAN may return a key more than once (e.g. while Redis rehashes); replay
        # every real batch twice to make that happen deterministically.
        async for batch in real_scan(match):
            yield batch
            yield batch

    provider._scan_raw = repeating  # type: ignore[method-assign]
    assert sorted(await kv.keys()) == ["a", "b", "c"]
    assert await kv.count() == 3
    assert sorted([k async for k, _ in kv.scan()]) == ["a", "b", "c"]


async def test_patterns_match_characters_not_bytes(kv: dmem.Store) -> None:
    # Redis MATCH works on bytes: '?' would not match the two UTF-8 bytes of 'é'.
    await kv.set_many({"é": 1, "e": 2, "éé": 3, "ab": 4, "a*": 5, "a[": 6})
    assert sorted(await kv.keys("?")) == ["e", "é"]
    assert await kv.count("é?") == 1
    assert sorted(await kv.keys("a\\*")) == ["a*"]
    assert sorted(await kv.keys("a[*]")) == ["a*"]
    assert sorted(await kv.keys("a[^b]")) == ["a*", "a["]
    assert await kv.keys("a\\[") == ["a["]


async def test_get_is_one_get(restartable_redis: RedisServer) -> None:
    client = aioredis.Redis.from_url(restartable_redis.url)
    async with dmem.open(restartable_redis.url, namespace="g") as kv:
        await kv.set("k", 1, tags={"a": "b"})
        calls = await _calls_during(client, kv.get("k"))
        assert calls == {"get": 1}
        calls = await _calls_during(client, kv.get_many([f"k{i}" for i in range(100)]))
        assert calls == {"mget": 1}
    await client.aclose()


# --- footprint and value limits ----------------------------------------------------------------
async def test_footprint_counts_values_tag_hashes_and_index_members(
    kv: dmem.Store, raw: aioredis.Redis
) -> None:
    footprint = kv.provider.footprint  # type: ignore[attr-defined]
    assert await footprint() == 0
    await kv.set("a", 1, tags={"x": "1", "y": "2"})
    await kv.set("b", 2, tags={"x": "1"})
    await kv.set("c", 3)
    # k:a k:b k:c, m:a m:b, and the members a, b of x=1 and a of y=2.
    assert await footprint() == 3 + 2 + 3
    await kv.set("d", 4, ttl=0.05, tags={"x": "1"})
    await asyncio.sleep(0.1)
    # Redis dropped k:d and m:d itself; d stays in x=1's set until a purge removes it.
    assert await footprint() == 3 + 2 + 3 + 1
    assert sorted(await kv.find_by_tag("x", "1")) == ["a", "b"]  # purges the set it reads
    assert await footprint() == 3 + 2 + 3
    await kv.clear()
    assert await footprint() == 0


async def test_a_burst_of_expired_members_is_swept(kv: dmem.Store) -> None:
    # A long-lived key keeps its tag's index set; 500 short-lived keys under the same tag
    # leave 500 stale members there. Three sampled per write would take ~170 writes to
    # shed them; the provider's sweep (at most once a second) sheds them at once.
    footprint = kv.provider.footprint  # type: ignore[attr-defined]
    await kv.set("keep", 0, tags={"t": "a"})
    live = await footprint()
    await kv.set_many({f"s{i}": i for i in range(500)}, ttl=0.05, tags={"t": "a"})
    assert await footprint() >= live + 500
    await asyncio.sleep(0.1)
    deadline = time.monotonic() + 3.0
    writes = 0
    while await footprint() > live:
        assert time.monotonic() < deadline, f"{await footprint()} records, {live} live"
        await kv.set("keep", writes, tags={"t": "a"})
        writes += 1
        await asyncio.sleep(0.05)
    assert writes <= 25  # the sweep, not the 3-member samples, did it


async def test_values_over_the_limit_are_refused_before_any_command(
    restartable_redis: RedisServer,
) -> None:
    # Redis answers a bulk argument over proto-max-bulk-len with a protocol error and drops
    # the connection: the limit is checked before anything is sent.
    client = aioredis.Redis.from_url(restartable_redis.url)
    limit = 4 * 1024 * 1024
    async with dmem.open(restartable_redis.url, namespace="big", max_value_bytes=limit) as kv:
        assert kv.provider.max_value_bytes == limit  # type: ignore[attr-defined]
        big = os.urandom(limit)  # encoded: 2 marker bytes more
        for write in (
            lambda: kv.set("big", big),
            lambda: kv.set("big", big, tags={"t": "v"}, if_not_exists=True),
            lambda: kv.set_many({"a": 1, "big": big}, tags={"t": "v"}),
            lambda: kv.set_many({"a": 1, "big": big}),
            lambda: kv.set_many({"a": 1, "big": big}, if_not_exists=True),
        ):
            await client.config_resetstat()
            with pytest.raises(dmem.InvalidValueError, match="max_value_bytes"):
                await write()
            assert await _stats(client) == {"config|resetstat": 1}  # nothing was sent
        edge = os.urandom(limit - 2)  # encoded: exactly the limit
        assert await kv.set("edge", edge) and await kv.get("edge") == edge
        assert await kv.count() == 1
    await client.aclose()


async def test_the_default_limit_is_the_servers(tmp_path: Path) -> None:
    from redis_servers import require_redis

    require_redis()
    server = RedisServer(tmp_path / "bulk", extra=["--proto-max-bulk-len", "8mb"])
    server.start()
    try:
        async with dmem.open(server.url, namespace="lim") as kv:
            assert kv.provider.max_value_bytes == 8 * 1024 * 1024  # type: ignore[attr-defined]
            with pytest.raises(dmem.InvalidValueError):
                await kv.set("k", os.urandom(8 * 1024 * 1024))
            assert await kv.set("k", 1)  # the connection was never dropped
        # An option over the server's own limit would drop the connection: refused at open.
        with pytest.raises(dmem.InvalidArgumentError, match="proto-max-bulk-len"):
            await dmem.open(server.url, max_value_bytes=16 * 1024 * 1024)
        # Where CONFIG GET is denied, the limit is Redis's default (512 MiB).
        server.cli("ACL", "SETUSER", "default", "-config")
        async with dmem.open(server.url, namespace="lim") as kv:
            assert kv.provider.max_value_bytes == 512 * 1024 * 1024  # type: ignore[attr-defined]
    finally:
        server.stop()


# --- secrets ----------------------------------------------------------------------------------
async def test_password_never_shown(redis_server: RedisServer | None) -> None:
    from redis_servers import PASSWORD

    if redis_server is None:
        pytest.skip("needs the fixture's password-protected server")
    url = redis_server.url
    assert PASSWORD in url
    async with dmem.open(url, namespace="pw") as kv:
        shown = [repr(kv), repr(kv.provider), str(kv.url), repr(await kv.health())]
        assert all(PASSWORD not in text for text in shown), shown
    bad = url.replace(PASSWORD, PASSWORD + "-wrong")
    with pytest.raises(dmem.ProviderError) as info:
        await dmem.open(bad, namespace="pw", timeout=2)
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)
    assert not isinstance(info.value, dmem.ProviderUnavailableError)  # retrying won't help
    # An unreachable server with a password: the message names the host, not the password.
    with pytest.raises(dmem.ProviderUnavailableError) as down:
        await dmem.open(f"redis://:{PASSWORD}@127.0.0.1:1/0", timeout=1)
    assert PASSWORD not in str(down.value) and "127.0.0.1:1" in str(down.value)
    store = await dmem.open(url, namespace="pw", password=PASSWORD)  # as an option too
    assert PASSWORD not in repr(store) and PASSWORD not in repr(store.provider)
    await store.aclose()


# --- URL and option validation (no I/O) ---------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("redis://localhost/notanumber", {}, "database"),
        ("redis://localhost:99999/0", {}, "port"),
        ("redis://localhost/0", {"timeout": "0"}, "timeout"),
        ("redis://localhost/0", {"bogus": "1"}, "bogus"),
        ("redis://localhost/0", {"ssl_ca_certs": "/x"}, "TLS"),
        ("redis+cluster://localhost:7000/3", {}, "database 0"),
        ("redis+sentinel://localhost:26379", {}, "service name"),
        ("redis://localhost/0", {"buckets": "4"}, "buckets"),
        ("rediss://localhost/0", {"ssl_cert_reqs": "maybe"}, "ssl_cert_reqs"),
    ],
)
def test_bad_urls_and_options(url: str, options: dict[str, str], message: str) -> None:
    with pytest.raises(dmem.InvalidArgumentError, match=re.escape(message)):
        dmem.create_provider(url, options)
