"""The SQLite invalidation channel (``sqlite-poll``) under a real ``Cache``: writes by other
connections and processes reach the cache within the bound (issue 19)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import dmem
from dmem import Cache, Store
from dmem.middleware import CacheProvider
from dmem_conformance.staleness import analyse, percentile, run_pair

BOUND = 0.05  # the channel's default bound (SQLiteProvider.invalidation_interval)
ALLOWANCE = 0.02  # scheduling allowance on a loaded 2-core machine, beyond the bound


def _cache(store: Store) -> CacheProvider:
    top = store._top
    assert isinstance(top, CacheProvider)
    return top


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'inval.db'}"


async def _eventually(store: Store, key: str, want: object, within: float) -> float:
    """Seconds until ``store.get(key) == want`` (reading every 1 ms), failing after ``within``."""
    started = time.monotonic()
    while await store.get(key) != want:
        if time.monotonic() - started > within:
            raise AssertionError(f"{key} did not become {want!r} within {within} s")
        await asyncio.sleep(0.001)
    return time.monotonic() - started


async def test_a_write_on_another_connection_reaches_the_cache_within_the_bound(
    tmp_path: Path,
) -> None:
    url = _url(tmp_path)
    async with (
        dmem.open(url, middleware=[Cache()]) as cached,
        dmem.open(url, share_connection=False) as other,
    ):
        report = await cached.health()
        assert report.ok
        assert report.details["cache"] == {
            "invalidation": "sqlite-poll",
            "bound_s": BOUND,
            "channel_up": True,
            "entries": 0,
            "hits": 0,
            "misses": 0,
        }
        await cached.set("k", 1)
        await cached.set("other", 1)
        # The log reports this store's own writes too (costing one read each): let them
        # arrive before counting hits.
        await asyncio.sleep(2 * BOUND)
        assert await cached.get("k") == 1
        assert await cached.get("other") == 1
        await other.set("k", 2)
        assert await _eventually(cached, "k", 2, BOUND + ALLOWANCE) <= BOUND + ALLOWANCE
        hits = _cache(cached).hits
        assert await cached.get("other") == 1  # only "k" was dropped
        assert _cache(cached).hits == hits + 1
        await other.delete("k")
        await _eventually(cached, "k", None, BOUND + ALLOWANCE)


async def test_a_write_by_a_client_that_is_not_dmem_reaches_the_cache(tmp_path: Path) -> None:
    url = _url(tmp_path)
    async with dmem.open(url, middleware=[Cache()], namespace="ns") as cached:
        await cached.set("k", "dmem")
        assert await cached.get("k") == "dmem"
        foreign = sqlite3.connect(tmp_path / "inval.db", isolation_level=None)
        try:
            foreign.execute("DELETE FROM dmem_kv WHERE namespace = 'ns' AND key = 'k'")
        finally:
            foreign.close()
        await _eventually(cached, "k", None, BOUND + ALLOWANCE)


async def test_other_namespaces_and_tables_drop_nothing(tmp_path: Path) -> None:
    url = _url(tmp_path)
    async with (
        dmem.open(url, middleware=[Cache()], namespace="a") as cached,
        dmem.open(url, share_connection=False, namespace="b") as other_ns,
        dmem.open(url, share_connection=False, namespace="a", table="t2") as other_table,
    ):
        await cached.set("k", 1)
        await asyncio.sleep(2 * BOUND)  # the log's report of this write, as above
        assert await cached.get("k") == 1
        await other_ns.set("k", 2)
        await other_table.set("k", 3)
        await asyncio.sleep(2 * BOUND)
        hits = _cache(cached).hits
        assert await cached.get("k") == 1
        assert _cache(cached).hits == hits + 1


async def test_in_memory_sqlite_has_no_channel_and_keeps_the_ttl_bound() -> None:
    async with dmem.open("sqlite://", middleware=[Cache(ttl=9)]) as cached:
        cache = (await cached.health()).details["cache"]
        assert isinstance(cache, dict)
        assert cache["invalidation"] == "ttl" and cache["bound_s"] == 9.0


async def _channel_up(store: Store, want: bool) -> None:
    deadline = time.monotonic() + 5
    while True:
        cache = (await store.health()).details["cache"]
        assert isinstance(cache, dict)
        if cache["channel_up"] is want:
            return
        assert time.monotonic() < deadline, f"channel_up never became {want}"
        await asyncio.sleep(0.01)


async def test_a_poll_that_fails_takes_the_channel_down_until_it_works_again(
    tmp_path: Path,
) -> None:
    url = _url(tmp_path)
    async with dmem.open(url, middleware=[Cache()]) as cached:
        await cached.set("k", 1)
        await asyncio.sleep(2 * BOUND)
        assert await cached.get("k") == 1
        # Another client drops the change log: the next poll fails (a real failure of the
        # file as the poller sees it), so the cache must empty and stop serving.
        foreign = sqlite3.connect(tmp_path / "inval.db", isolation_level=None)
        try:
            foreign.execute("DROP TABLE dmem_kv_changes")
            foreign.execute("DROP TRIGGER dmem_kv_changes_insert")
            foreign.execute("DROP TRIGGER dmem_kv_changes_update")
            foreign.execute("DROP TRIGGER dmem_kv_changes_delete")
        finally:
            foreign.close()
        await _channel_up(cached, False)
        assert not _cache(cached)._entries
        report = await cached.health()
        assert report.status == "degraded" and "down" in report.message
        misses = _cache(cached).misses
        assert await cached.get("k") == 1
        assert await cached.get("k") == 1
        assert _cache(cached).misses == misses + 2  # nothing served from the cache
        # Another cached store on the file puts the log back: the poll works again.
        async with dmem.open(url, middleware=[Cache()], share_connection=False) as second:
            await _channel_up(cached, True)
            assert (await cached.health()).ok
            assert await cached.get("k") == 1
            hits = _cache(cached).hits
            assert await cached.get("k") == 1
            assert _cache(cached).hits == hits + 1  # caching again
            await second.set("k", 2)
            await _eventually(cached, "k", 2, BOUND + ALLOWANCE)


def test_two_processes_stay_within_the_bound(tmp_path: Path) -> None:
    """A (this process) writes 1,000 times; B reads through its Cache in another process."""
    report = run_pair(_url(tmp_path), "stale", writes=1000)
    assert report["mode"] == "sqlite-poll"
    staleness, broken = analyse(report["returned"], report["rows"], BOUND + ALLOWANCE)
    p99 = percentile(staleness, 0.99)
    print(
        f"sqlite-poll staleness over {len(staleness)} writes: p50 "
        f"{percentile(staleness, 0.5) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max "
        f"{max(staleness) * 1000:.1f} ms; B read {report['reads']} times, {report['hits']} hits"
    )
    assert p99 <= BOUND, f"p99 staleness {p99 * 1000:.1f} ms is over the {BOUND * 1000} ms bound"
    assert broken == []
    assert report["hits"] > report["reads"] // 2  # the cache did serve most reads
