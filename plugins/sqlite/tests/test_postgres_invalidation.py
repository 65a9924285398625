"""The PostgreSQL invalidation channel (``open_invalidation``: LISTEN, NOTIFY from triggers).

Writes made through another store (its own pool), by plain SQL from a client that is not
dmem, a big batch (the payload without keys) and TRUNCATE reach the listener; other
namespaces' do not; a killed server takes the channel down and the restarted one brings it
back; and two processes: B reading through a cache the channel keeps coherent sees A's
writes within the delivery latency (p99 <= 5 ms, see test_redis_invalidation.py for the
measure and the allowance).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator

import dmem
import pytest
from dmem._invalidation import InvalidationChannel
from dmem_conformance.staleness import analyse
from pgserver import PostgresServer, throwaway
from pushed_stale_child import Recorder, run_pair

asyncpg = pytest.importorskip("asyncpg")

ATTEMPTS = 3  # the p99 bound is met by one of up to 3 runs (the machine is shared)
P99_BOUND = 0.005
ALLOWANCE = 0.050  # "never stale" allowance for scheduling on top of the push bound (None)


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A throwaway server this test may crash and restart."""
    with throwaway() as started:
        yield started


async def _channel(kv: dmem.Store, listener: Recorder) -> InvalidationChannel:
    channel = await kv.provider.open_invalidation(listener)  # type: ignore[attr-defined]
    assert isinstance(channel, InvalidationChannel)
    assert channel.up and channel.mode == "postgres-notify" and channel.bound is None
    return channel


async def test_writes_of_other_stores_and_clients_reach_the_listener(postgres_url: str) -> None:
    listener = Recorder()
    reader = await dmem.open(postgres_url, namespace="inv", table="dmem_inv_test")
    writer = await dmem.open(
        postgres_url, namespace="inv", table="dmem_inv_test", share_connection=False
    )
    other = await dmem.open(postgres_url, namespace="inv2", table="dmem_inv_test")
    channel = await _channel(reader, listener)
    second = await _channel(reader, Recorder())  # the triggers exist: installed once
    try:
        await other.set("a", 1)  # another namespace: never reported
        await writer.set("a", 1)
        await writer.set_many({f"k{i}": i for i in range(20)}, tags={"t": "x"})
        await writer.incr("counter")
        await writer.delete("a")
        await writer.expire("k1", 60)
        await writer.delete_by_tag("t", "x")
        wanted = {"a", "counter", *(f"k{i}" for i in range(20))}
        await listener.wait(lambda: wanted <= listener.seen())
        assert listener.seen() <= wanted, listener.seen() - wanted
        assert None not in listener.events and "down" not in listener.events

        # A client that is not dmem: plain SQL on the table.
        raw = await asyncpg.connect(postgres_url.replace("postgresql+dmem", "postgresql"))
        try:
            count = len(listener.events)
            await raw.execute(
                "UPDATE dmem_inv_test SET value = $1 WHERE namespace = 'inv' AND key = 'counter'",
                b"5",
            )
            await listener.wait(lambda: len(listener.events) > count)
            assert listener.events[-1] == ["counter"]
            # A batch whose keys do not fit a NOTIFY payload: "any key" of the namespace.
            await writer.set_many({f"long-key-{i:04d}-" + "x" * 40: i for i in range(400)})
            await listener.wait(lambda: None in listener.events)
            count = listener.events.count(None)
            await raw.execute("TRUNCATE dmem_inv_test")
            await listener.wait(lambda: listener.events.count(None) > count)
        finally:
            await raw.close()
    finally:
        await channel.close()
        await second.close()
        assert not channel.up
        await channel.close()  # idempotent
        for kv in (other, writer, reader):
            await kv.clear()
            await kv.aclose()


async def test_a_killed_and_restarted_server_takes_the_channel_down_and_up(
    own_server: PostgresServer,
) -> None:
    listener = Recorder()
    kv = await dmem.open(own_server.url, namespace="inv-restart", timeout=1)
    channel = await _channel(kv, listener)
    try:
        own_server.crash()
        await listener.wait(lambda: "down" in listener.events)
        assert not channel.up
        own_server.launch()
        await listener.wait(lambda: "up" in listener.events, timeout=30)
        assert channel.up
        assert listener.events[-2:] == ["down", "up"], listener.events
        writer = await dmem.open(own_server.url, namespace="inv-restart", share_connection=False)
        try:
            await writer.set("after", 1)
            await listener.wait(lambda: "after" in listener.seen())
        finally:
            await writer.aclose()
    finally:
        await channel.close()
        await kv.aclose()


async def test_a_channel_to_a_stopped_server_is_unavailable(own_server: PostgresServer) -> None:
    kv = await dmem.open(own_server.url, namespace="inv-down", timeout=1)
    try:
        own_server.crash()
        with pytest.raises(dmem.ProviderUnavailableError):
            await kv.provider.open_invalidation(Recorder())  # type: ignore[attr-defined]
    finally:
        await kv.aclose()


@pytest.mark.parametrize("reader", ["listener", "Cache"])
def test_two_processes_staleness(postgres_url: str, reader: str) -> None:
    """B reads through a listener of the test's own (TinyCache), or through dmem's Cache."""
    p99s = []
    for attempt in range(ATTEMPTS):
        report = run_pair(postgres_url, f"stale-{attempt}", real_cache=reader == "Cache")
        staleness, broken = analyse(report["returned"], report["rows"], ALLOWANCE)
        assert report["downs"] == 0
        assert len(staleness) == 1000 and max(staleness) < float("inf"), "B missed writes"
        assert not broken, broken[:5]
        assert report["hits"] > 0, "the cache never served a hit: nothing was measured"
        p99 = statistics.quantiles(staleness, n=100)[98]
        p99s.append(p99)
        print(
            f"\npostgresql, {reader}: p50 {statistics.median(staleness) * 1000:.2f} ms, p99 "
            f"{p99 * 1000:.2f} ms, max {max(staleness) * 1000:.2f} ms, {report['reads']} reads"
        )
        if p99 <= P99_BOUND:
            return
    pytest.fail(f"p99 staleness over {P99_BOUND * 1000:g} ms in every run: {p99s}")
