"""Contract v1.1 on Redis beyond the conformance clauses: the incr script's parse of the
stored bytes against ``parse_counter``, what it leaves of a key, the scripts loaded at open,
compare-and-set's value limit, no re-send after a lost reply, and a cluster's buckets."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import dmem
import pytest
from dmem.provider import INT64_MAX, INT64_MIN, add_to_counter, parse_counter
from dmem_redis import _coordination
from redis_servers import RedisServer

# Stored bytes the core never writes but another client might: each must be refused or
# accepted exactly as parse_counter does.
AWKWARD = [
    b"0",
    b"-0",
    b"00",
    b"01",
    b"-01",
    b"1",
    b"-1",
    b"+1",
    b" 1",
    b"1 ",
    b"1\n",
    b"",
    b"-",
    b"--1",
    b"1-",
    b"1.0",
    b"1e3",
    b"0x10",
    b"\x00",
    b"1\x00",
    b"\xd9\xa1",  # ARABIC-INDIC DIGIT ONE: a digit to str.isdigit, not to the regex
    b"\xef\xbc\x91",  # FULLWIDTH DIGIT ONE
    b"true",
    b'"5"',
    b"[1]",
    b"1000000000000000000",
    b"9223372036854775807",
    b"9223372036854775808",
    b"9223372036854775817",
    b"9223372036854775799",
    b"9323372036854775807",
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"-9223372036854775800",
    b"10000000000000000000",
    b"99999999999999999999",
    b"-99999999999999999999",
    b"18446744073709551615",
    b"1" * 100,
]


def _random_candidates(count: int) -> list[bytes]:
    rng = random.Random(17)
    found = []
    for _ in range(count):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 21)))
        if rng.random() < 0.3:
            digits = "9223372036854775" + digits[:4]
        sign = rng.choice(["", "", "-", "+"])
        found.append((sign + digits).encode())
    return found


@pytest.fixture
async def kv(redis_url: str) -> AsyncIterator[dmem.Store]:
    async with dmem.open(redis_url, namespace=f"coord-{uuid.uuid4().hex[:6]}") as store:
        yield store
        await store.clear()


def _raw(kv: dmem.Store) -> Any:
    return kv.provider._client  # type: ignore[attr-defined]


def _value_key(kv: dmem.Store, key: str) -> str:
    vk: str = kv.provider._where(key)[1]  # type: ignore[attr-defined]
    return vk


def _expected(raw: bytes, delta: int) -> int | None:
    """What incr must give for stored ``raw`` (None: InvalidValueError)."""
    try:
        return add_to_counter(parse_counter(raw), delta)
    except dmem.InvalidValueError:
        return None


async def test_incr_parses_stored_bytes_exactly_as_parse_counter(kv: dmem.Store) -> None:
    client = _raw(kv)
    candidates = AWKWARD + _random_candidates(400)
    for n, raw in enumerate(candidates):
        key = f"c{n}"
        await client.set(_value_key(kv, key), raw, px=600_000)
        want = _expected(raw, 0)
        try:
            got: int | None = await kv.incr(key, 0)
        except dmem.InvalidValueError:
            got = None
        assert got == want, f"incr on stored {raw!r}: {got!r}, parse_counter: {want!r}"
        if want is None:
            assert await client.get(_value_key(kv, key)) == raw, f"{raw!r} was changed"
            continue
        # The int64 edges of the sum, from this value.
        for delta in (INT64_MAX - want, INT64_MAX - want + 1, INT64_MIN - want - 1):
            if not INT64_MIN <= delta <= INT64_MAX:
                continue
            before = await client.get(_value_key(kv, key))
            after = _expected(before, delta)
            try:
                result: int | None = await kv.incr(key, delta)
            except dmem.InvalidValueError:
                result = None
            assert result == after, f"{before!r} + {delta}: {result!r}, expected {after!r}"
            stored = await client.get(_value_key(kv, key))
            assert stored == (before if after is None else str(after).encode())
        left = await client.pttl(_value_key(kv, key))
        assert 0 < left <= 600_000, "incr dropped or changed the key's expiry"


async def test_incr_overflow_message_names_the_values(kv: dmem.Store) -> None:
    await kv.set("top", INT64_MAX)
    with pytest.raises(dmem.InvalidValueError, match=f"{INT64_MAX} \\+ 1 is outside"):
        await kv.incr("top")
    await kv.set("s", "5")
    with pytest.raises(dmem.InvalidValueError, match="not an int"):
        await kv.incr("s")
    await _raw(kv).set(_value_key(kv, "big"), b"9223372036854775808")
    with pytest.raises(dmem.InvalidValueError, match="outside signed 64-bit"):
        await kv.incr("big")


async def test_incr_creates_a_key_without_the_tags_of_a_stale_hash(kv: dmem.Store) -> None:
    """A tag hash left without its value (Redis expired the value first, or another client
    deleted it) must not give the counter tags: a created key has none."""
    await kv.set("n", 5, tags={"t": "old"})
    await _raw(kv).delete(_value_key(kv, "n"))
    assert await kv.incr("n", 2, ttl=60) == 2
    assert await kv.get_tags("n") == {}
    assert await kv.find_by_tag("t", "old") == []
    left = await kv.ttl("n")
    assert left is not None and 59 < left <= 60


async def test_compare_and_set_replaces_the_tag_index(kv: dmem.Store) -> None:
    await kv.set("k", 1, ttl=100, tags={"a": "1", "b": "2"})
    assert await kv.compare_and_set("k", 1, 2, tags={"b": "3"})
    assert await kv.get_tags("k") == {"b": "3"}
    assert await kv.find_by_tag("a", "1") == []
    assert await kv.find_by_tag("b", "2") == []
    assert await kv.find_by_tag("b", "3") == ["k"]
    assert await kv.ttl("k") is None
    assert await kv.compare_and_delete("k", 2)
    assert await kv.find_by_tag("b", "3") == []
    raw = _raw(kv)
    prefix = kv.provider._where("k")[0]  # type: ignore[attr-defined]
    assert await raw.exists(prefix + "m:k") == 0, "the tag hash outlived the key"


async def test_compare_and_set_refuses_a_large_value_before_any_io(redis_url: str) -> None:
    limit = 4 * 1024 * 1024
    async with dmem.open(redis_url, namespace="cas-limit", max_value_bytes=limit) as kv:
        await kv.set("k", "small")
        client = kv.provider._client  # type: ignore[attr-defined]
        kv.provider._client = None  # type: ignore[attr-defined]  # any I/O would fail
        try:
            with pytest.raises(dmem.InvalidValueError, match="max_value_bytes"):
                await kv.compare_and_set("k", "small", b"x" * (limit + 1))
        finally:
            kv.provider._client = client  # type: ignore[attr-defined]
        assert await kv.get("k") == "small"
        await kv.clear()


async def test_scripts_are_loaded_at_open(restartable_redis: RedisServer) -> None:
    async with dmem.open(restartable_redis.url, namespace="scripts") as kv:  # a fresh server
        shas = [script.sha for script in _coordination.SCRIPTS]
        assert await _raw(kv).script_exists(*shas) == [True] * len(shas)


async def test_delete_by_tag_in_a_cluster_reaches_every_bucket(redis_cluster_url: str) -> None:
    namespace = f"dbt-{uuid.uuid4().hex[:6]}"
    async with dmem.open(redis_cluster_url, namespace=namespace, buckets=8) as kv:
        items = {f"k{i}": i for i in range(200)}
        await kv.set_many(items, tags={"g": "1"})
        await kv.set("other", 1, tags={"g": "2"})
        layout = kv.provider._layout  # type: ignore[attr-defined]
        assert {layout.bucket(key) for key in items} == set(range(8))
        assert await kv.delete_by_tag("g", "1") == 200
        assert await kv.keys() == ["other"]
        assert await kv.incr("c", 5) == 5
        assert await kv.compare_and_set("c", 5, "x", tags={"g": "2"})
        assert sorted(await kv.find_by_tag("g", "2")) == ["c", "other"]
        assert await kv.delete_by_tag("g", "2") == 2
        assert await kv.count() == 0


# --- a lost reply: incr and the compares are never re-sent -----------------------------------
@pytest.fixture
async def lossy(restartable_redis: RedisServer) -> AsyncIterator[tuple[Any, dmem.Store]]:
    from test_redis_faults import LOST_REPLY_OPTIONS, ReplyDropper

    proxy = ReplyDropper(restartable_redis.port)
    port = await proxy.start()
    url = f"redis://127.0.0.1:{port}/0"
    async with dmem.open(url, namespace="lost", **LOST_REPLY_OPTIONS) as kv:
        yield proxy, kv
    await proxy.stop()


async def test_lost_reply_of_incr_is_an_error_and_counts_once(
    lossy: tuple[Any, dmem.Store],
) -> None:
    proxy, kv = lossy
    assert await kv.incr("n", 10) == 10
    proxy.drop_next_reply = True
    # Re-sent, it would add twice: without a reply the outcome is unknown, an error.
    with pytest.raises(dmem.ProviderUnavailableError):
        await kv.incr("n")
    assert proxy.dropped == 1
    assert await kv.get("n") == 11, "incr ran twice (or not at all)"


async def test_lost_reply_of_a_compare_is_an_error_not_false(
    lossy: tuple[Any, dmem.Store],
) -> None:
    proxy, kv = lossy
    await kv.set("token", "a")
    proxy.drop_next_reply = True
    # Re-sent, it would find its own write and answer False (a lock's extend or release
    # reported as lost when it was not).
    with pytest.raises(dmem.ProviderUnavailableError):
        await kv.compare_and_set("token", "a", "b")
    assert await kv.get("token") == "b"
    proxy.drop_next_reply = True
    with pytest.raises(dmem.ProviderUnavailableError):
        await kv.compare_and_delete("token", "b")
    assert not await kv.exists("token")
    assert proxy.dropped == 2


async def test_concurrent_incr_and_compare_and_set_on_one_key(kv: dmem.Store) -> None:
    """incr and compare_and_set interleaved on one key: every step lands exactly once."""
    await kv.set("n", 0)

    async def bump() -> None:
        for _ in range(100):
            await kv.incr("n")

    async def double() -> int:
        wins = 0
        for _ in range(50):
            current = await kv.get("n")
            if await kv.compare_and_set("n", current, current + 1000):
                wins += 1
        return wins

    results = await asyncio.gather(bump(), bump(), double(), double())
    wins = results[2] + results[3]
    assert await kv.get("n") == 200 + 1000 * wins
