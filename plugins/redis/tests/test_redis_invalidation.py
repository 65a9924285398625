"""The Redis invalidation channel (``open_invalidation``: CLIENT TRACKING, broadcast mode).

Writes made through another store, by a client that is not dmem, by a script, FLUSHDB and a
Cluster's writes on every primary reach the listener; other namespaces' do not; a killed
server takes the channel down (the listener is told) and the restarted one brings it back;
and two processes: B reading through a cache the channel keeps coherent never reads a value
older than A's last returned write for more than the delivery latency (p99 <= 5 ms).
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
from pathlib import Path

import dmem
import pytest
import redis.asyncio as aioredis
from dmem._invalidation import InvalidationChannel

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sqlite" / "tests"))

from dmem_conformance.staleness import analyse
from pushed_stale_child import Recorder, run_pair
from redis_servers import RedisServer, SentinelSet


@pytest.fixture(params=["standalone", "cluster", "sentinel"])
def url(request: pytest.FixtureRequest) -> str:
    fixture = {
        "standalone": "redis_url",
        "cluster": "redis_cluster_url",
        "sentinel": "redis_sentinel_url",
    }[request.param]
    base: str = request.getfixturevalue(fixture)
    return base


async def _channel(kv: dmem.Store, listener: Recorder) -> InvalidationChannel:
    channel = await kv.provider.open_invalidation(listener)  # type: ignore[attr-defined]
    assert isinstance(channel, InvalidationChannel)
    assert channel.up and channel.mode == "redis-tracking" and channel.bound is None
    return channel


async def test_writes_of_other_stores_reach_the_listener(url: str) -> None:
    listener = Recorder()
    reader = await dmem.open(url, namespace="inv")
    writer = await dmem.open(url, namespace="inv", share_connection=False)
    other = await dmem.open(url, namespace="inv2", share_connection=False)
    channel = await _channel(reader, listener)
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
        assert "down" not in listener.events
    finally:
        await channel.close()
        assert not channel.up
        await channel.close()  # idempotent
        for kv in (other, writer, reader):
            await kv.clear()
            await kv.aclose()


async def test_writes_of_other_clients_and_flush_reach_the_listener(redis_url: str) -> None:
    listener = Recorder()
    kv = await dmem.open(redis_url, namespace="inv-raw")
    raw = aioredis.Redis.from_url(redis_url)
    channel = await _channel(kv, listener)
    try:
        await raw.set("dmem:7:inv-raw:k:from-redis-cli", b"1")  # not dmem: caught too
        await raw.set("dmem:7:inv-raw:m:bookkeeping", b"1")  # not a value key: not reported
        await listener.wait(lambda: "from-redis-cli" in listener.seen())
        assert listener.seen() == {"from-redis-cli"}
        await raw.flushdb()
        await listener.wait(lambda: None in listener.events)
    finally:
        await channel.close()
        await raw.aclose()
        await kv.aclose()


async def test_a_channel_to_a_stopped_server_is_unavailable(
    restartable_redis: RedisServer,
) -> None:
    kv = await dmem.open(restartable_redis.url, namespace="inv-down", timeout=0.5)
    try:
        restartable_redis.kill()
        with pytest.raises(dmem.ProviderUnavailableError):
            await kv.provider.open_invalidation(Recorder())  # type: ignore[attr-defined]
    finally:
        await kv.aclose()


async def test_killed_and_restarted_server_takes_the_channel_down_and_up(
    restartable_redis: RedisServer,
) -> None:
    listener = Recorder()
    url = restartable_redis.url
    kv = await dmem.open(url, namespace="inv-restart", timeout=1)
    channel = await _channel(kv, listener)
    try:
        restartable_redis.kill()
        await listener.wait(lambda: "down" in listener.events)
        assert not channel.up
        restartable_redis.start()
        await listener.wait(lambda: "up" in listener.events, timeout=20)
        assert channel.up
        assert listener.events[-2:] == ["down", "up"], listener.events
        writer = await dmem.open(url, namespace="inv-restart", share_connection=False)
        try:
            await writer.set("after", 1)
            await listener.wait(lambda: "after" in listener.seen())
        finally:
            await writer.aclose()
    finally:
        await channel.close()
        await kv.aclose()


# The machine running the tests is shared (2 cores, other suites): a process that is not
# scheduled for a few ms makes a few writes look stale that long. The p99 bound is met by
# one of up to ATTEMPTS runs; "never stale beyond ALLOWANCE" must hold in every run.
ATTEMPTS = 3
P99_BOUND = 0.005
ALLOWANCE = 0.050  # scheduling allowance on top of the push bound (None)


@pytest.mark.parametrize("reader", ["listener", "Cache"])
@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_two_processes_staleness(
    topology: str, reader: str, request: pytest.FixtureRequest
) -> None:
    """B reads through a listener of the test's own (TinyCache), or through dmem's Cache."""
    url = request.getfixturevalue("redis_url" if topology == "standalone" else "redis_cluster_url")
    p99s = []
    for attempt in range(ATTEMPTS):
        report = run_pair(url, f"stale-{topology}-{attempt}", real_cache=reader == "Cache")
        staleness, broken = analyse(report["returned"], report["rows"], ALLOWANCE)
        assert report["downs"] == 0
        assert len(staleness) == 1000 and max(staleness) < float("inf"), "B missed writes"
        assert not broken, broken[:5]
        assert report["hits"] > 0, "the cache never served a hit: nothing was measured"
        p99 = statistics.quantiles(staleness, n=100)[98]
        p99s.append(p99)
        print(
            f"\n{topology}, {reader}: p50 {statistics.median(staleness) * 1000:.2f} ms, p99 "
            f"{p99 * 1000:.2f} ms, max {max(staleness) * 1000:.2f} ms, {report['reads']} reads"
        )
        if p99 <= P99_BOUND:
            return
    pytest.fail(f"p99 staleness over {P99_BOUND * 1000:g} ms in every run: {p99s}")


async def test_a_server_that_stops_answering_takes_the_channel_down(
    restartable_redis: RedisServer,
) -> None:
    listener = Recorder()
    kv = await dmem.open(restartable_redis.url, namespace="inv-stop", timeout=1)
    channel = await _channel(kv, listener)
    pid = restartable_redis.pid
    assert pid is not None
    try:
        os.kill(pid, signal.SIGSTOP)  # the connection stays open; only the PING tells
        try:
            # A second of silence, then PING, then the timeout (1 s): slack for the machine.
            await listener.wait(lambda: "down" in listener.events, timeout=6)
            assert not channel.up
        finally:
            os.kill(pid, signal.SIGCONT)
        await listener.wait(lambda: "up" in listener.events, timeout=20)
        assert channel.up
    finally:
        await channel.close()
        await kv.aclose()


async def test_a_sentinel_failover_takes_the_channel_to_the_new_primary(
    failover_sentinel_set: SentinelSet,
) -> None:
    setup = failover_sentinel_set
    listener = Recorder()
    kv = await dmem.open(setup.url, namespace="inv-failover", timeout=2)
    channel = await _channel(kv, listener)
    try:
        old = setup.current_primary()
        old.kill()  # SIGKILL: the sentinels promote the replica after about a second
        await listener.wait(lambda: "down" in listener.events)
        await listener.wait(lambda: "up" in listener.events, timeout=60)
        assert setup.primary_port() != old.port, "up again, but not on the new primary"
        writer = await dmem.open(
            setup.url, namespace="inv-failover", share_connection=False, timeout=2
        )
        try:
            await writer.set("after", 1)  # written on the new primary
            await listener.wait(lambda: "after" in listener.seen())
        finally:
            await writer.aclose()
    finally:
        await channel.close()
        await kv.aclose()
