"""Suite tests: if_not_exists, TTL, expire/persist and tags.

TTL tests use short ttls (0.1-0.3 s) and one sleep each, so network backends
stay fast. Timing checks are made against the contract's window (live for at
least ``t - 10 ms``, gone after ``t + 50 ms``) measured around each call; a
liveness check that the machine could not make in time is retried with a
longer ttl rather than reported as a contract failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, ClassVar

import dmem
import pytest
from dmem import KeyNotFoundError

from ._base import StorePool, SuiteBase
from ._marks import clause
from .strategies import tag_maps

__all__ = ["ExpiryTests"]

EARLY = 0.010  # a key may expire up to 10 ms early...
LATE = 0.050  # ...and must be gone 50 ms after its ttl
SLACK = 0.010  # our own margin past the deadline


async def sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


async def timed(coro: Any) -> tuple[float, float, Any]:
    """(start, end, result) of awaiting ``coro``, on the monotonic clock."""
    start = time.monotonic()
    result = await coro
    return start, time.monotonic(), result


def gone_after(end: float, ttl: float) -> float:
    """When a key written by a call that returned at ``end`` must be gone."""
    return end + ttl + LATE + SLACK


async def _race_batches(
    store_of: Callable[[int], dmem.Store], *, writers: int, reader: dmem.Store
) -> None:
    """Writers race set_many(if_not_exists=True) over the same keys, each in its own order.

    Each key must be won exactly once: the counts set_many returns add up to the number
    of keys, and each writer's count is the number of keys holding its value.
    """
    for round_ in range(4):
        keys = [f"batch{round_}:{k}" for k in range(24)]
        ttl = None if round_ % 2 == 0 else 60

        def order(writer: int, keys: list[str] = keys) -> list[str]:
            # Different orders, so writers meet on different keys first.
            turn = writer * 5 % len(keys)
            ordered = keys[turn:] + keys[:turn]
            return ordered[::-1] if writer % 2 else ordered

        counts = await asyncio.gather(
            *(
                store_of(w).set_many(
                    [(key, f"w{w}") for key in order(w)], if_not_exists=True, ttl=ttl
                )
                for w in range(writers)
            )
        )
        assert sum(counts) == len(keys), (
            f"round {round_}: set_many(if_not_exists) wrote {sum(counts)} times "
            f"for {len(keys)} keys (counts {counts}): some key was won twice or never"
        )
        values = await reader.get_many(keys)
        assert set(values) == set(keys), "a raced key is missing"
        for w, count in enumerate(counts):
            held = sum(1 for value in values.values() if value == f"w{w}")
            assert held == count, f"writer {w} was told {count} keys, holds {held}"


class ExpiryTests(SuiteBase):
    _dmem_suite_class: ClassVar[bool] = True

    # --- if_not_exists ----------------------------------------------------------------------
    @clause("nx.semantics")
    async def test_if_not_exists(self, store: dmem.Store) -> None:
        assert await store.set("k", 1, tags={"t": "1"}, ttl=100) is True
        assert await store.set("k", 2, if_not_exists=True, tags={"t": "2"}, ttl=5) is False
        assert await store.get("k") == 1, "a refused if_not_exists changed the value"
        assert await store.get_tags("k") == {"t": "1"}, "a refused if_not_exists changed tags"
        remaining = await store.ttl("k")
        assert remaining is not None and remaining > 50, "a refused NX changed the expiry"
        assert await store.find_by_tag("t", "2") == []
        assert await store.set("new", 1, if_not_exists=True) is True
        assert await store.delete("new")
        assert await store.set("new", 2, if_not_exists=True) is True
        assert await store.get("new") == 2
        await store.set("none", None)
        assert await store.set("none", 1, if_not_exists=True) is False, "None is a live key"
        written = await store.set_many({"k": 9, "none": 9, "x": 9}, if_not_exists=True)
        assert written == 1
        assert await store.get_many(["k", "none", "x"]) == {"k": 1, "none": None, "x": 9}

    @clause("nx.ttl")
    async def test_if_not_exists_with_ttl(self, store: dmem.Store) -> None:
        ttl = 0.15
        _, end, won = await timed(
            store.set("k", "first", if_not_exists=True, ttl=ttl, tags={"t": "a"})
        )
        assert won is True
        remaining = await store.ttl("k")
        assert remaining is not None and 0 < remaining <= ttl, f"ttl() = {remaining!r}"
        assert await store.set("k", "second", if_not_exists=True, ttl=100) is False
        assert await store.get("k") == "first"
        again = await store.ttl("k")
        assert again is not None and again <= ttl, "a refused NX with ttl changed the expiry"
        await sleep_until(gone_after(end, ttl))
        assert await store.set("k", "third", if_not_exists=True, ttl=100) is True, (
            "if_not_exists refused over an expired key"
        )
        assert await store.get("k") == "third"
        assert await store.get_tags("k") == {}, "the expired key's tags came back"
        assert await store.find_by_tag("t", "a") == []

    @clause("nx.concurrent-tasks")
    async def test_if_not_exists_concurrent_tasks(self, store: dmem.Store) -> None:
        writers = 8
        for round_ in range(6):
            key = f"race{round_}"
            ttl = None if round_ % 2 == 0 else 60
            results = await asyncio.gather(
                *(store.set(key, i, if_not_exists=True, ttl=ttl) for i in range(writers))
            )
            winners = [i for i, won in enumerate(results) if won]
            assert len(winners) == 1, f"{key}: {len(winners)} if_not_exists winners, not one"
            assert await store.get(key) == winners[0], "the value is not the winner's"

    @clause("nx.connections", requires="shared_connections")
    async def test_if_not_exists_across_connections(
        self, store: dmem.Store, dmem_stores: StorePool
    ) -> None:
        others = [await dmem_stores.open() for _ in range(3)]
        await store.set("probe", "visible")
        for other in others:
            if await other.get("probe") != "visible":
                pytest.fail(
                    "two stores from store_factory on one namespace do not share data; "
                    "the backend must declare lacks={'shared_connections': why} or fix it"
                )
        conns = [store, *others]
        for round_ in range(6):
            key = f"race{round_}"
            ttl = None if round_ % 2 == 0 else 60
            results = await asyncio.gather(
                *(
                    conn.set(key, f"{c}.{t}", if_not_exists=True, ttl=ttl)
                    for c, conn in enumerate(conns)
                    for t in range(2)
                )
            )
            winners = [i for i, won in enumerate(results) if won]
            assert len(winners) == 1, (
                f"{key}: {len(winners)} winners across {len(conns)} connections, not one"
            )
            value = await others[-1].get(key)
            assert value == f"{winners[0] // 2}.{winners[0] % 2}", "value is not the winner's"

    @clause("nx.batch-tasks")
    async def test_set_many_if_not_exists_concurrent_tasks(self, store: dmem.Store) -> None:
        await _race_batches(lambda _: store, writers=8, reader=store)

    @clause("nx.batch-connections", requires="shared_connections")
    async def test_set_many_if_not_exists_across_connections(
        self, store: dmem.Store, dmem_stores: StorePool
    ) -> None:
        others = [await dmem_stores.open() for _ in range(3)]
        conns = [store, *others]
        await _race_batches(lambda w: conns[w % len(conns)], writers=8, reader=others[-1])

    # --- expiry -----------------------------------------------------------------------------
    @clause("ttl.expiry")
    async def test_ttl_expiry_window(self, store: dmem.Store) -> None:
        for ttl in (0.3, 1.0, 3.0):
            start, end, _ = await timed(store.set("k", "v", ttl=ttl))
            alive = await store.get("k")
            checked = time.monotonic()
            if checked > start + ttl - EARLY:
                continue  # too slow to tell; try a longer ttl
            assert alive == "v", f"a key with ttl={ttl}s was gone after {checked - start:.3f}s"
            # Late in its life, but still inside the window: must still be there.
            await sleep_until(start + ttl - 0.06)
            alive = await store.exists("k")
            if time.monotonic() <= start + ttl - EARLY:
                assert alive, f"a key with ttl={ttl}s expired more than 10 ms early"
            await sleep_until(gone_after(end, ttl))
            assert await store.get("k", default="gone") == "gone", (
                f"a key with ttl={ttl}s was still there 50 ms after its ttl"
            )
            assert not await store.exists("k")
            return
        pytest.fail("the machine is too slow to check a ttl of 3 s; rerun on a quieter machine")

    @clause("ttl.absent-everywhere")
    async def test_expired_keys_absent_for_every_call(self, store: dmem.Store) -> None:
        ttl = 0.1
        names = [f"e{i}" for i in range(12)]
        await store.set("p", "kept", tags={"t": "x"})
        _, end, _ = await timed(
            store.set_many({name: name for name in names}, ttl=ttl, tags={"t": "x"})
        )
        await sleep_until(gone_after(end, ttl))
        assert await store.get("e0") is None, "get returned an expired key"
        assert await store.exists("e1") is False, "exists saw an expired key"
        assert await store.get_many(["e2", "p", "e0"]) == {"p": "kept"}, "get_many: expired"
        assert await store.keys() == ["p"], "keys listed expired keys"
        assert await store.keys("e*") == []
        assert await store.count() == 1, "count counted expired keys"
        assert await store.count("e?") == 0
        assert [k async for k, _ in store.scan()] == ["p"], "scan yielded expired keys"
        assert await store.find_by_tag("t", "x") == ["p"], "find_by_tag found expired keys"
        assert await store.expire("e4", 10) is False, "expire revived an expired key"
        assert await store.persist("e5") is False, "persist revived an expired key"
        with pytest.raises(KeyNotFoundError):
            await store.ttl("e6")
        with pytest.raises(KeyNotFoundError):
            await store.get_tags("e7")
        assert await store.delete("e8") is False, "delete of an expired key returned True"
        assert await store.delete_many(["e9", "e10"]) == 0, "delete_many counted expired keys"
        assert await store.set("e3", "new", if_not_exists=True) is True
        assert await store.set_many({"e11": "new"}, if_not_exists=True) == 1
        assert await store.get_tags("e3") == {}
        assert await store.clear() == 3, "clear counted expired keys"

    @clause("ttl.remaining")
    async def test_ttl_remaining(self, store: dmem.Store) -> None:
        await store.set("forever", 1)
        assert await store.ttl("forever") is None
        start, _, _ = await timed(store.set("long", 1, ttl=100))
        left = await store.ttl("long")
        assert isinstance(left, float), f"ttl() returned {type(left).__name__}, not float"
        assert 100 - (time.monotonic() - start) - 0.05 <= left <= 100.001, f"ttl() = {left}"
        await store.set("int", 1, ttl=5)
        left = await store.ttl("int")
        assert left is not None and 4 <= left <= 5.001, f"ttl() = {left}"
        await store.set("ms", 1, ttl=20.0004)  # rounded up to whole milliseconds
        left = await store.ttl("ms")
        assert left is not None and 19 <= left <= 20.002, f"ttl() = {left}"

    @clause("ttl.never-zero")
    async def test_time_left_is_never_zero_while_live(self, store: dmem.Store) -> None:
        # Both paths a caller learns the time left by: ttl(), and get_entry's whole
        # milliseconds (what the Cache reads, so 0 would make it treat a live key as
        # expired or keep it for no time). Polled through a key's last milliseconds, where
        # a value rounded down (or a server's own 0 in its last millisecond) shows.
        provider = store.provider
        for _ in range(3):
            await store.set("short", 1, ttl=0.03)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                entry = await provider.get_entry("short")
                if entry is None:
                    break
                left_ms = entry[1]
                assert left_ms is not None and left_ms >= 1, f"get_entry: {left_ms} ms left"
                try:
                    left = await store.ttl("short")
                except KeyNotFoundError:
                    break
                assert left is not None and left > 0, f"ttl() = {left!r} for a live key"
            else:
                raise AssertionError("a key set with ttl=0.03 was still live after 2 s")

    @clause("ttl.expire")
    async def test_expire(self, store: dmem.Store) -> None:
        ttl = 0.1
        await store.set_many({"a": 1, "b": 2}, tags={"t": "x"})
        await store.set("c", 3, ttl=0.1)
        assert await store.expire("missing", 10) is False
        assert not await store.exists("missing"), "expire created a key"
        assert await store.expire("a", ttl) is True
        _, end, extended = await timed(store.expire("c", 100))
        assert extended is True
        left = await store.ttl("a")
        assert left is not None and 0 < left <= ttl, f"ttl() after expire = {left}"
        assert await store.get_tags("a") == {"t": "x"}, "expire changed the tags"
        await sleep_until(gone_after(end, ttl))
        assert await store.exists("a") is False, "expire did not make the key expire"
        assert await store.get("b") == 2
        assert await store.get("c") == 3, "expire did not lengthen the key's life"
        assert await store.find_by_tag("t", "x") == ["b"]

    @clause("ttl.persist")
    async def test_persist(self, store: dmem.Store) -> None:
        ttl = 0.1
        _, end, _ = await timed(store.set_many({"a": 1, "b": 2}, ttl=ttl, tags={"t": "x"}))
        assert await store.persist("a") is True
        assert await store.ttl("a") is None, "persist left an expiry"
        assert await store.get_tags("a") == {"t": "x"}, "persist changed the tags"
        assert await store.persist("missing") is False
        assert not await store.exists("missing"), "persist created a key"
        await store.set("plain", 1)
        assert await store.persist("plain") is True, "persist of a live key without expiry"
        await sleep_until(gone_after(end, ttl))
        assert await store.get("a") == 1, "a persisted key expired"
        assert await store.exists("b") is False
        assert await store.persist("b") is False, "persist of an expired key returned True"
        assert await store.find_by_tag("t", "x") == ["a"]

    @clause("ttl.set-replaces")
    async def test_set_replaces_expiry(self, store: dmem.Store) -> None:
        ttl = 0.1
        await store.set("k", 1, ttl=ttl)
        await store.set("k", 2)
        assert await store.ttl("k") is None, "set without ttl kept the old expiry"
        await store.set("m", 1, ttl=ttl)
        await store.set_many({"m": 2})
        assert await store.ttl("m") is None, "set_many without ttl kept the old expiry"
        await store.set("s", 1, ttl=100)
        _, end, _ = await timed(store.set("s", 2, ttl=ttl))
        await sleep_until(gone_after(end, ttl))
        assert await store.get("k") == 2
        assert await store.get("m") == 2
        assert await store.exists("s") is False, "set with a shorter ttl kept the longer one"

    # --- tags -------------------------------------------------------------------------------
    @clause("tags.replace", given={"tags": tag_maps(), "new_tags": tag_maps()})
    async def test_tags_replace(
        self, store: dmem.Store, tags: dict[str, str], new_tags: dict[str, str]
    ) -> None:
        await store.set("k", 1, tags=tags)
        await store.set("other", 2, tags=tags)
        assert await store.get_tags("k") == tags
        for name, value in tags.items():
            assert sorted(await store.find_by_tag(name, value)) == ["k", "other"]
        await store.set("k", 3, tags=new_tags)
        assert await store.get_tags("k") == new_tags, "set did not replace the tags"
        for name, value in tags.items():
            expected = ["k", "other"] if new_tags.get(name) == value else ["other"]
            assert sorted(await store.find_by_tag(name, value)) == expected, (
                f"find_by_tag({name!r}, {value!r}) after re-tagging"
            )
        await store.set("k", 4)
        assert await store.get_tags("k") == {}, "set without tags kept the old tags"
        for name, value in new_tags.items():
            assert "k" not in await store.find_by_tag(name, value)
        await store.expire("other", 100)
        await store.persist("other")
        assert await store.get_tags("other") == tags, "expire/persist changed the tags"

    @clause("tags.delete")
    async def test_tags_dropped_on_delete(self, store: dmem.Store) -> None:
        await store.set_many({"a": 1, "b": 2, "c": 3, "d": 4}, tags={"t": "x", "u": "y"})
        assert await store.delete("a")
        assert await store.delete_many(["b"]) == 1
        assert sorted(await store.find_by_tag("t", "x")) == ["c", "d"]
        await store.set("a", 1)
        await store.set_many({"b": 2})
        assert await store.get_tags("a") == {}, "delete left the tags behind"
        assert await store.get_tags("b") == {}, "delete_many left the tags behind"
        assert sorted(await store.find_by_tag("u", "y")) == ["c", "d"]
        await store.clear()
        await store.set("c", 3)
        assert await store.find_by_tag("t", "x") == [], "clear left tags behind"
        assert await store.get_tags("c") == {}

    @clause("tags.expiry")
    async def test_tags_dropped_on_expiry(self, store: dmem.Store) -> None:
        ttl = 0.1
        await store.set("keep", 0, tags={"t": "x"})
        _, end, _ = await timed(store.set("k", 1, ttl=ttl, tags={"t": "x"}))
        await store.set("j", 1, tags={"t": "x"})
        await store.expire("j", ttl)
        await sleep_until(gone_after(end, ttl))
        assert await store.find_by_tag("t", "x") == ["keep"], "find_by_tag found expired keys"
        await store.set("k", 2)
        assert await store.get_tags("k") == {}, "an expired key's tags came back"
        assert await store.find_by_tag("t", "x") == ["keep"]

    @clause("tags.values")
    async def test_tag_names_and_values_with_separators(self, store: dmem.Store) -> None:
        cases = {
            "k1": {"a:b": "c"},
            "k2": {"a": "b:c"},
            "k3": {"a": "b=c"},
            "k4": {"a=b": "c"},
            "k5": {"e": ""},
            "k6": {"a": "b", "c": "d"},
            "k7": {"a b": "c d", "é": "日本"},
            "k8": {"*": "?"},
        }
        for key, tags in cases.items():
            await store.set(key, key, tags=tags)
        for key, tags in cases.items():
            assert await store.get_tags(key) == tags
            for name, value in tags.items():
                assert await store.find_by_tag(name, value) == [key], (
                    f"find_by_tag({name!r}, {value!r})"
                )
        assert await store.find_by_tag("a", "b:") == []
        assert await store.find_by_tag("a:b", "") == []
        assert await store.find_by_tag("a", "*") == [], "find_by_tag treated * as a glob"
        assert await store.find_by_tag("*", "*") == []
        many = {f"m{i}": i for i in range(20)}
        await store.set_many(many, tags={"group": "g:1"})
        found = await store.find_by_tag("group", "g:1")
        assert len(found) == len(set(found)), "find_by_tag returned duplicates"
        assert sorted(found) == sorted(many)
