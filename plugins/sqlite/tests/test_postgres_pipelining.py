"""Automatic pipelining on PostgreSQL (option ``pipelining``, on by default).

Reads (get, get_entry, exists, ttl) that arrive while every slot of the store's reader is
busy go out together as one statement; each caller must get exactly its own outcome, or its
own error, whatever the others do. Every test checks that batches actually formed (the
reader's ``Coalescer`` counters), so coalescing silently never happening fails them.

The fault tests stop, lock and kill their own throwaway server, never the session's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from typing import Any

import dmem
import pytest
from dmem import InvalidArgumentError, KeyNotFoundError, ProviderUnavailableError
from dmem.coalescing import Coalescer
from pgserver import PostgresServer, throwaway

asyncpg = pytest.importorskip("asyncpg")

TIMEOUT = 1.0
BOUND = TIMEOUT + 1.0  # the slack is for a busy two-core machine, not for the client


def _coalescer(kv: dmem.Store, kind: str = "_reader") -> Coalescer[Any, Any]:
    """The store's reads' coalescer (``kind="_writer"``: its plain sets')."""
    batcher = getattr(kv.provider, kind)
    assert batcher is not None, "pipelining is on by default"
    coalescer: Coalescer[Any, Any] = batcher.coalescer
    return coalescer


async def _seed(kv: dmem.Store, tag: str) -> dict[str, Any]:
    """Live, expired and missing keys; what a get of each should return."""
    expected: dict[str, Any] = {}
    await kv.set_many({f"live{i}": {"tag": tag, "i": i} for i in range(60)})
    await kv.set_many({f"short{i}": i for i in range(20)}, ttl=0.2)
    await kv.set_many({f"long{i}": [tag, i] for i in range(20)}, ttl=600)
    await asyncio.sleep(0.3)  # the short ones expired
    expected.update({f"live{i}": {"tag": tag, "i": i} for i in range(60)})
    expected.update({f"short{i}": None for i in range(20)})
    expected.update({f"long{i}": [tag, i] for i in range(20)})
    expected.update({f"missing{i}": None for i in range(20)})
    return expected


async def test_200_concurrent_gets_each_get_their_own_value(postgres_url: str) -> None:
    async with (
        dmem.open(postgres_url, namespace="pipe-a", pool_size=4) as a,
        dmem.open(postgres_url, namespace="pipe-b", pool_size=4) as b,
    ):
        # One pool (same settings), so one reader: a batch may mix the two namespaces.
        assert _coalescer(a) is _coalescer(b)
        coalescer = _coalescer(a)
        try:
            want_a = await _seed(a, "a")
            want_b = await _seed(b, "b")
            names = sorted(want_a)
            # Every key twice per store (duplicates in one batch each get the value).
            calls = [
                (kv, want, names[i % len(names)])
                for i in range(200)
                for kv, want in ((a, want_a), (b, want_b))
            ]
            batches, items = coalescer.batches, coalescer.items
            got = await asyncio.gather(*(kv.get(key) for kv, _, key in calls))
            assert got == [want[key] for _, want, key in calls]
            assert coalescer.batches > batches, "no batch formed"
            assert coalescer.items - items > coalescer.batches - batches, "batches of one only"
            print(
                f"{len(calls)} gets: {coalescer.batches - batches} batches carrying "
                f"{coalescer.items - items} of them"
            )

            # get_with_ttl (get_entry), exists and ttl, mixed with gets.
            batches = coalescer.batches
            keys = [names[i % len(names)] for i in range(160)]
            results = await asyncio.gather(
                *(a.get_with_ttl(key) for key in keys),
                *(a.exists(key) for key in keys),
                *(a.ttl(key) for key in keys),
                *(b.get(key) for key in keys),
                return_exceptions=True,
            )
            n = len(keys)
            entries, exists, ttls, gets = (results[i * n : (i + 1) * n] for i in range(4))
            for key, entry, found, ttl, value in zip(
                keys, entries, exists, ttls, gets, strict=True
            ):
                live = want_a[key] is not None
                assert found is live, key
                assert value == want_b[key], key
                if not live:
                    assert entry is None, key
                    assert isinstance(ttl, KeyNotFoundError), (key, ttl)
                    continue
                assert isinstance(entry, tuple), (key, entry)
                assert entry[0] == want_a[key], key
                if key.startswith("long"):
                    assert entry[1] is not None and 590 < entry[1] <= 600, (key, entry)
                    assert isinstance(ttl, float) and 590 < ttl <= 600, (key, ttl)
                else:
                    assert entry[1] is None and ttl is None, (key, entry, ttl)
            assert coalescer.batches > batches, "no batch formed"
        finally:
            await a.clear()
            await b.clear()


async def test_200_concurrent_plain_sets_each_write_their_row(postgres_url: str) -> None:
    async with dmem.open(postgres_url, namespace="pipe-set", pool_size=4) as kv:
        coalescer = _coalescer(kv, "_writer")
        try:
            # Tagged before: a plain set replaces the tags too (none left).
            await kv.set_many({f"k{i}": "old" for i in range(0, 150, 3)}, tags={"t": "x"})
            batches, items = coalescer.batches, coalescer.items
            calls: list[tuple[str, Any, float | None]] = [
                (f"k{i}", f"v{i}", 600 if i % 2 else None) for i in range(150)
            ]
            calls += [(f"short{i}", i, 0.2) for i in range(20)]
            calls += [(f"k{i}", f"again{i}", None) for i in range(30)]  # a key set twice
            results = await asyncio.gather(*(kv.set(k, v, ttl=t) for k, v, t in calls))
            assert results == [True] * len(calls)
            assert coalescer.batches > batches, "no batch formed"
            assert coalescer.items - items > coalescer.batches - batches, "batches of one only"
            print(
                f"{len(calls)} sets: {coalescer.batches - batches} batches carrying "
                f"{coalescer.items - items} of them"
            )
            values = await kv.get_many([f"k{i}" for i in range(150)])
            for i in range(150):
                # Two concurrent sets of one key: either may land last.
                assert values[f"k{i}"] in ({f"v{i}", f"again{i}"} if i < 30 else {f"v{i}"}), i
            assert await kv.find_by_tag("t", "x") == []
            for i in range(30, 150):
                ttl = await kv.ttl(f"k{i}")
                assert (ttl is None) if i % 2 == 0 else (ttl is not None and 590 < ttl <= 600)
            assert await kv.get_many([f"short{i}" for i in range(20)]) == {
                f"short{i}": i for i in range(20)
            }
            await asyncio.sleep(0.3)
            assert await kv.get_many([f"short{i}" for i in range(20)]) == {}
        finally:
            await kv.clear()


async def test_a_cancelled_waiter_does_not_disturb_the_others(postgres_url: str) -> None:
    async with dmem.open(postgres_url, namespace="pipe-cancel", pool_size=4) as kv:
        coalescer = _coalescer(kv)
        try:
            await kv.set_many({f"k{i}": i for i in range(100)})
            batches = coalescer.batches
            tasks = [asyncio.create_task(kv.get(f"k{i}")) for i in range(100)]
            await asyncio.sleep(0)  # every task has made its call: the first ones run, the
            # rest wait for a batch
            for task in tasks[10:30]:  # waiting ones, before their batch starts
                task.cancel()
            await asyncio.sleep(0.0005)
            for task in tasks[60:70]:  # maybe waiting, maybe in a batch that runs
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for i, result in enumerate(results):
                if 10 <= i < 30:
                    assert isinstance(result, asyncio.CancelledError), (i, result)
                elif 60 <= i < 70:
                    assert result == i or isinstance(result, asyncio.CancelledError), (i, result)
                else:
                    assert result == i, (i, result)
            assert coalescer.batches > batches, "no batch formed"
            # Every slot came back: a lone call runs at once, and batches still form.
            assert coalescer.take()
            coalescer.give()
            batches = coalescer.batches
            assert await asyncio.gather(*(kv.get(f"k{i}") for i in range(100))) == list(range(100))
            assert coalescer.batches > batches
        finally:
            await kv.clear()


async def test_pipelining_false_never_batches(postgres_url: str) -> None:
    async with (
        dmem.open(postgres_url, namespace="pipe-off", pool_size=4, pipelining=False) as off,
        dmem.open(postgres_url + "?pipelining=false", namespace="pipe-off", pool_size=4) as url,
        dmem.open(postgres_url, namespace="pipe-off", pool_size=4) as on,
    ):
        provider: Any = off.provider
        assert provider._reader is None
        assert url.provider._reader is None  # type: ignore[attr-defined]
        # The option is part of the shared pool's key: on and off never share a pool.
        assert provider._pool is url.provider._pool  # type: ignore[attr-defined]
        assert provider._pool is not on.provider._pool  # type: ignore[attr-defined]
        coalescer = _coalescer(on)
        writes = _coalescer(on, "_writer")
        assert provider._writer is None
        try:
            write_batches = writes.batches
            assert await asyncio.gather(*(off.set(f"k{i}", i) for i in range(50))) == [True] * 50
            assert writes.batches == write_batches
            batches = coalescer.batches
            keys = [f"k{i % 60}" for i in range(200)]
            got = await asyncio.gather(*(off.get(key) for key in keys))
            assert got == [int(key[1:]) if int(key[1:]) < 50 else None for key in keys]
            assert await asyncio.gather(*(off.exists(key) for key in keys)) == [
                int(key[1:]) < 50 for key in keys
            ]
            assert coalescer.batches == batches
        finally:
            await off.clear()
    with pytest.raises(InvalidArgumentError, match="pipelining"):
        await dmem.open(postgres_url, pipelining="sometimes")


async def test_with_namespace_shares_the_reader(postgres_url: str) -> None:
    async with dmem.open(postgres_url, namespace="pipe-ns", pool_size=4) as kv:
        other = await kv.with_namespace("pipe-ns2")
        try:
            assert _coalescer(other) is _coalescer(kv)
            await kv.set("k", "mine")
            await other.set("k", "other")
            got = await asyncio.gather(*(s.get("k") for _ in range(100) for s in (kv, other)))
            assert got == ["mine", "other"] * 100
        finally:
            await kv.clear()
            await other.clear()
            await other.aclose()


# --- faults, on a throwaway server ------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with throwaway() as started:
        yield started


def _own_errors(results: list[Any]) -> list[ProviderUnavailableError]:
    """The callers' errors: each a ProviderUnavailableError of its own (no instance, and no
    traceback, shared between two callers), with the driver's error as its cause."""
    errors = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(e, ProviderUnavailableError) for e in errors), errors[:5]
    assert len({id(e) for e in errors}) == len(errors), "callers share an error instance"
    assert all(e.__cause__ is not None for e in errors), errors[:5]
    return errors  # type: ignore[return-value]


async def test_a_stopped_server_fails_each_waiting_caller_within_timeout(
    server: PostgresServer,
) -> None:
    kv = await dmem.open(server.url, namespace="pipe", timeout=TIMEOUT, pool_size=4)
    try:
        coalescer = _coalescer(kv)
        await kv.set("k", "v")
        await asyncio.gather(*(kv.get("k") for _ in range(8)))  # connections open
        batches = coalescer.batches

        async def timed(call: Awaitable[Any]) -> tuple[Any, float]:
            start = time.monotonic()
            try:
                return await asyncio.wait_for(call, 30), time.monotonic() - start
            except Exception as exc:  # noqa: BLE001 - checked below
                return exc, time.monotonic() - start

        writes = _coalescer(kv, "_writer")
        write_batches = writes.batches
        with server.paused():
            outcomes = await asyncio.gather(*(timed(kv.get("k")) for _ in range(40)))
            outcomes += await asyncio.gather(*(timed(kv.set("k", i)) for i in range(40)))
        errors = _own_errors([result for result, _ in outcomes])
        assert len(errors) == 80
        assert writes.batches > write_batches, "no batch of sets formed"
        slow = [seconds for _, seconds in outcomes if seconds > BOUND]
        assert not slow, f"calls took longer than timeout={TIMEOUT} s + slack: {slow}"
        assert coalescer.batches > batches, "no batch formed"
        # Running again: the same store, batches and all.
        batches = coalescer.batches
        assert await asyncio.gather(*(kv.get("k") for _ in range(40))) in (
            ["v"] * 40,
            *([i] * 40 for i in range(40)),  # a set cut off while stopped may land
        )
        assert coalescer.batches > batches
        assert await asyncio.gather(*(kv.set("k", i) for i in range(40))) == [True] * 40
    finally:
        server.resume()
        await kv.aclose()


async def _wait_for_backends(admin: Any, where: str, count: int) -> list[int]:
    """Pids of at least ``count`` backends waiting on a lock whose query matches ``where``."""
    deadline = time.monotonic() + 10
    while True:
        rows = await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
            f"query {where} AND pid <> pg_backend_pid()"
        )
        if len(rows) >= count:
            return [row[0] for row in rows]
        assert time.monotonic() < deadline, f"{len(rows)} backends waiting ({where})"
        await asyncio.sleep(0.01)


async def test_a_server_killed_mid_batch_fails_each_caller_on_its_own(
    server: PostgresServer,
) -> None:
    """The batch's statement is at the server (held by a table lock) when the server dies:
    every caller of the batch gets a ProviderUnavailableError of its own."""
    kv = await dmem.open(server.url, namespace="pipe-kill", timeout=10, pool_size=10)
    locker = await asyncpg.connect(server.url)
    watcher = await asyncpg.connect(server.url)  # outside the locker's transaction, whose
    # view of pg_stat_activity would stay the one it first read
    tasks: list[asyncio.Task[Any]] = []
    crashed = False
    try:
        coalescer = _coalescer(kv)
        await kv.set_many({f"k{i}": i for i in range(40)})
        batches, items = coalescer.batches, coalescer.items
        await locker.execute("BEGIN; LOCK TABLE dmem_kv IN ACCESS EXCLUSIVE MODE")
        tasks = [asyncio.create_task(kv.get(f"k{i}")) for i in range(40)]
        # The calls that took the slots wait on the lock; ending their backends frees the
        # slots, and the rest go out as one batch, which waits on the lock in turn.
        singles = await _wait_for_backends(watcher, "NOT LIKE '%unnest%'", 4)
        await watcher.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", singles
        )
        await _wait_for_backends(watcher, "LIKE '%unnest%'", 1)
        assert coalescer.batches == batches + 1
        assert coalescer.items - items == 36
        crashed = True
        await asyncio.to_thread(server.crash)
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        assert len(_own_errors(results)) == 40
    finally:
        locker.terminate()
        watcher.terminate()
        if crashed:
            await asyncio.to_thread(server.launch)
        await asyncio.gather(*tasks, return_exceptions=True)
        await kv.aclose()
    # Restarted (the crash may have lost the last commits: synchronous_commit is off there).
    async with dmem.open(server.url, namespace="pipe-kill", timeout=10) as again:
        await again.set_many({f"k{i}": i for i in range(40)})
        assert await asyncio.gather(*(again.get(f"k{i}") for i in range(40))) == list(range(40))
        await again.clear()
