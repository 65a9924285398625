"""Suite tests of contract v1.1: counters, compare-and-set/delete, delete_by_tag.

Each operation is optional for a provider (``incr``, ``compare_and_set``,
``compare_and_delete``, ``delete_by_tag`` on ``store.provider``): a provider without one
gets its clauses reported as not run, never as passed; the store raises
``NotSupportedError`` for it.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import dmem
import pytest

from ._base import StorePool, SuiteBase
from ._marks import clause

__all__ = ["CoordinationTests"]

COUNTER_CONNECTIONS = 8
COUNTER_STEPS = 500
CONTENDERS = 16
ROUNDS = 10
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
NOT_INTS: list[Any] = ["5", 1.5, True, None, [1], {"n": 1}, b"1", "", -0.0, 2.0]


class CoordinationTests(SuiteBase):
    _dmem_suite_class: ClassVar[bool] = True

    def _needs(self, store: dmem.Store, *operations: str) -> None:
        for name in operations:
            if not callable(getattr(store.provider, name, None)):
                self.lacks_optional(name, f"the provider has no {name}() (contract v1.1)")

    async def _connections(self, store: dmem.Store, pool: StorePool, n: int) -> list[dmem.Store]:
        """``n`` stores on the same namespace: other connections where the backend shares
        data between them (``shared_connections``), else the one store ``n`` times."""
        if "shared_connections" in type(self).lacks:
            return [store] * n
        return [store, *[await pool.open() for _ in range(n - 1)]]

    # --- counters ----------------------------------------------------------------------------
    @clause("counter.exact")
    async def test_incr_from_many_connections(
        self, store: dmem.Store, dmem_stores: StorePool
    ) -> None:
        self._needs(store, "incr")
        conns = await self._connections(store, dmem_stores, COUNTER_CONNECTIONS)

        async def bump(conn: dmem.Store) -> list[int]:
            return [await conn.incr("hits") for _ in range(COUNTER_STEPS)]

        seen = await asyncio.gather(*(bump(conn) for conn in conns))
        total = COUNTER_CONNECTIONS * COUNTER_STEPS
        assert await store.get("hits") == total, "increments were lost"
        returned = sorted(value for values in seen for value in values)
        assert returned == list(range(1, total + 1)), (
            "incr returned duplicate or skipped values: not atomic"
        )

    @clause("counter.semantics")
    async def test_incr_semantics(self, store: dmem.Store) -> None:
        self._needs(store, "incr")
        assert await store.incr("n") == 1, "a missing key starts at 0"
        assert await store.incr("n", 41) == 42
        assert await store.decr("n", 2) == 40
        assert await store.incr("n", -50) == -10
        assert await store.get("n") == -10, "the stored value is the int"

        # ttl applies only when incr creates the key; an existing key keeps expiry and tags.
        assert await store.incr("fresh", 5, ttl=60) == 5
        left = await store.ttl("fresh")
        assert left is not None and 0 < left <= 60, "incr's ttl on the key it created"
        await store.set("kept", 7, ttl=100, tags={"t": "x"})
        assert await store.incr("kept", 1, ttl=5) == 8
        left = await store.ttl("kept")
        assert left is not None and left > 50, "incr changed the expiry of an existing key"
        assert await store.get_tags("kept") == {"t": "x"}, "incr dropped the key's tags"
        await store.set("forever", 1)
        await store.incr("forever", ttl=5)
        assert await store.ttl("forever") is None, "incr gave an existing key an expiry"

        # An expired key counts as missing.
        await store.set("gone", 100, ttl=0.05)
        await asyncio.sleep(0.12)
        assert await store.incr("gone") == 1, "incr counted on from an expired value"

        # Not an int, or a result outside signed 64-bit: InvalidValueError, nothing changed.
        for n, value in enumerate(NOT_INTS):
            await store.set(f"bad{n}", value, tags={"t": "b"})
            with pytest.raises(dmem.InvalidValueError):
                await store.incr(f"bad{n}")
            assert await store.get(f"bad{n}") == value, f"incr changed {value!r}"
        await store.set("top", INT64_MAX)
        with pytest.raises(dmem.InvalidValueError):
            await store.incr("top")
        assert await store.get("top") == INT64_MAX
        assert await store.incr("top", -1) == INT64_MAX - 1
        await store.set("bottom", INT64_MIN)
        with pytest.raises(dmem.InvalidValueError):
            await store.decr("bottom")
        assert await store.get("bottom") == INT64_MIN
        assert await store.incr("edge", INT64_MAX) == INT64_MAX
        with pytest.raises(dmem.InvalidValueError):
            await store.incr("edge", 1)
        assert await store.get("edge") == INT64_MAX

    # --- compare-and-set / compare-and-delete ------------------------------------------------
    @clause("cas.semantics")
    async def test_compare_and_set_semantics(self, store: dmem.Store) -> None:
        self._needs(store, "compare_and_set", "compare_and_delete")
        assert not await store.compare_and_set("k", None, 1), "a missing key matched"
        assert not await store.exists("k")
        assert not await store.compare_and_delete("k", None)

        await store.set("k", {"a": 1, "b": [1, 2]}, ttl=100, tags={"t": "old"})
        assert not await store.compare_and_set("k", {"a": 2, "b": [1, 2]}, "x")
        assert not await store.compare_and_set("k", {"b": [1, 2], "a": 1}, "x"), (
            "equal means equal encoded bytes: another key order does not match"
        )
        assert await store.get("k") == {"a": 1, "b": [1, 2]}, "a failed compare changed it"
        assert await store.get_tags("k") == {"t": "old"}

        # A match replaces value, tags and expiry (no ttl means none), like set.
        assert await store.compare_and_set("k", await store.get("k"), "v2", tags={"t": "new"})
        assert await store.get("k") == "v2"
        assert await store.get_tags("k") == {"t": "new"}
        assert await store.ttl("k") is None
        assert await store.find_by_tag("t", "old") == []
        assert await store.compare_and_set("k", "v2", 3, ttl=50)
        left = await store.ttl("k")
        assert left is not None and 0 < left <= 50

        # Awkward values compare exactly: None, "", 0 vs False vs 0.0.
        for value, other in ((None, ""), (0, False), (0, 0.0), ("", b""), (1, "1")):
            await store.set("w", value)
            assert not await store.compare_and_set("w", other, "x"), f"{other!r} matched {value!r}"
            assert not await store.compare_and_delete("w", other)
            assert await store.compare_and_set("w", value, value)

        assert not await store.compare_and_delete("k", 4)
        assert await store.compare_and_delete("k", 3)
        assert not await store.exists("k")

        await store.set("short", "s", ttl=0.05, tags={"t": "s"})
        await asyncio.sleep(0.12)
        assert not await store.compare_and_set("short", "s", "again"), "an expired key matched"
        assert not await store.compare_and_delete("short", "s")
        assert not await store.exists("short")

    @clause("cas.contenders")
    async def test_compare_and_set_one_winner(
        self, store: dmem.Store, dmem_stores: StorePool
    ) -> None:
        self._needs(store, "compare_and_set", "compare_and_delete")
        conns = await self._connections(store, dmem_stores, 4)
        await store.set("slot", 0)
        for round_ in range(ROUNDS):

            async def contend(n: int, expected: int = round_) -> bool:
                conn = conns[n % len(conns)]
                return await conn.compare_and_set("slot", expected, expected + 1)

            results = await asyncio.gather(*(contend(n) for n in range(CONTENDERS)))
            assert sum(results) == 1, (
                f"round {round_}: {sum(results)} compare_and_set winners out of {CONTENDERS}"
            )
        assert await store.get("slot") == ROUNDS

        await store.set("token", "mine")
        removed = await asyncio.gather(
            *(conns[n % len(conns)].compare_and_delete("token", "mine") for n in range(CONTENDERS))
        )
        assert sum(removed) == 1, f"{sum(removed)} compare_and_delete winners"

    # --- delete_by_tag -----------------------------------------------------------------------
    @clause("tags.delete-by-tag")
    async def test_delete_by_tag(self, store: dmem.Store, dmem_stores: StorePool) -> None:
        self._needs(store, "delete_by_tag")
        other = await dmem_stores.open("-other")
        await store.set_many({f"a{i}": i for i in range(30)}, tags={"user": "1", "kind": "a"})
        await store.set("b", "x", tags={"user": "2"})
        await store.set("retagged", 1, tags={"user": "1"})
        await store.set("retagged", 2, tags={"user": "2"})  # no longer user=1
        await store.set("short", 1, ttl=0.05, tags={"user": "1"})
        await other.set("theirs", 1, tags={"user": "1"})
        await asyncio.sleep(0.12)  # "short" expired: not live, not counted

        assert await store.delete_by_tag("user", "1") == 30
        assert sorted(await store.keys()) == ["b", "retagged"]
        assert await store.find_by_tag("user", "1") == []
        assert await store.find_by_tag("kind", "a") == [], "the keys' other tags stayed"
        assert await other.get("theirs") == 1, "delete_by_tag crossed namespaces"
        assert await other.find_by_tag("user", "1") == ["theirs"]
        assert await store.delete_by_tag("user", "1") == 0
        assert await store.delete_by_tag("nobody", "x") == 0
        assert await store.delete_by_tag("user", "2") == 2
        assert await store.count() == 0

    # --- get_or_set and locks (the store's, over the operations above) ------------------------
    @clause("get-or-set.single-flight")
    async def test_get_or_set_single_flight(
        self, store: dmem.Store, dmem_stores: StorePool
    ) -> None:
        calls = 0

        async def factory() -> dict[str, int]:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return {"n": calls}

        got = await asyncio.gather(*(store.get_or_set("cold", factory, ttl=60) for _ in range(50)))
        assert calls == 1, f"50 concurrent get_or_set on one cold key called the factory {calls}x"
        assert all(value == {"n": 1} for value in got)
        assert await store.get("cold") == {"n": 1}

        class Boom(Exception):
            pass

        async def failing() -> int:
            await asyncio.sleep(0.02)
            raise Boom

        results = await asyncio.gather(
            *(store.get_or_set("bad", failing) for _ in range(10)), return_exceptions=True
        )
        assert all(isinstance(r, Boom) for r in results), "the factory's error reaches everyone"
        assert not await store.exists("bad"), "a failed factory stored something"

        # lock=True: callers on other connections wait for the one factory call too.
        self._needs(store, "compare_and_delete")
        conns = await self._connections(store, dmem_stores, 4)
        calls = 0
        got = await asyncio.gather(
            *(conns[n % 4].get_or_set("shared", factory, lock=True) for n in range(20))
        )
        assert calls == 1, f"get_or_set(lock=True) on 4 connections called the factory {calls}x"
        assert all(value == got[0] for value in got)
        assert await store.keys("dmem:lock:*") == [], "get_or_set left its lock behind"

    @clause("lock.exclusive")
    async def test_lock_mutual_exclusion(self, store: dmem.Store, dmem_stores: StorePool) -> None:
        self._needs(store, "compare_and_set", "compare_and_delete")
        conns = await self._connections(store, dmem_stores, 4)
        inside = 0
        most = 0

        async def worker(conn: dmem.Store) -> None:
            nonlocal inside, most
            for _ in range(3):
                async with conn.lock("job", ttl=10, wait=30):
                    inside += 1
                    most = max(most, inside)
                    await asyncio.sleep(0.005)
                    inside -= 1

        await asyncio.gather(*(worker(conns[n % 4]) for n in range(8)))
        assert most == 1, f"{most} holders of one lock at the same time"
        assert not await store.exists("job"), "the lock's key stayed after release"

        held = store.lock("held", ttl=10)
        await held.acquire()
        with pytest.raises(dmem.LockNotAcquiredError):
            await conns[-1].lock("held", ttl=10, wait=0.05).acquire()
        other = conns[-1].lock("held", ttl=10)
        assert not await other.release(), "a non-owner released the lock"
        assert await held.extend(20)
        assert await held.release()

        brief = await store.lock("brief", ttl=0.05).__aenter__()
        await asyncio.sleep(0.12)  # its ttl runs out while held; another takes the key
        assert await conns[-1].set("brief", "thief", if_not_exists=True)
        with pytest.raises(dmem.LockLostError):
            await brief.__aexit__(None, None, None)
        assert await store.get("brief") == "thief", "the owner of an expired lock deleted it"
