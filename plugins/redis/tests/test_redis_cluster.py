"""Redis Cluster specifics: data spread over every primary, calls across slots, per-bucket
atomicity, SCAN of every primary, and a primary that dies and comes back."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dmem
import pytest
import redis.asyncio as aioredis
from dmem_redis import RedisProvider
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis_servers import RedisServer, require_redis, start_cluster

# `timeout` bounds a whole call (connecting, retries and backoff included).
OPTIONS: dict[str, Any] = {"timeout": 1.0, "retries": 1, "retry_backoff_max": 0.2}


@pytest.fixture
async def ckv(redis_cluster_url: str) -> AsyncIterator[dmem.Store]:
    async with dmem.open(redis_cluster_url, namespace=f"c-{uuid.uuid4().hex[:6]}") as kv:
        yield kv
        await kv.clear()


def _nodes(url: str) -> list[tuple[str, int]]:
    hosts = url.split("://", 1)[1]
    return [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in hosts.split(",")]


async def _primaries(url: str) -> list[aioredis.Redis]:
    host, port = _nodes(url)[0]
    cluster = RedisCluster(startup_nodes=[ClusterNode(host, port)])
    await cluster.initialize()
    clients = [aioredis.Redis(host=n.host, port=n.port) for n in cluster.get_primaries()]
    await cluster.aclose()
    return clients


async def test_data_spreads_over_every_primary_and_listing_sees_all(
    ckv: dmem.Store, redis_cluster_url: str
) -> None:
    items = {f"user:{i}": i for i in range(300)}
    assert await ckv.set_many(items, tags={"kind": "user"}) == 300
    primaries = await _primaries(redis_cluster_url)
    assert len(primaries) == 3
    prefix = f"dmem:{{*}}:{len(ckv.namespace)}:{ckv.namespace}:k:*"
    for client in primaries:
        on_node = [k async for k in client.scan_iter(match=prefix, count=1000)]
        assert len(on_node) > 30, "a primary holds (almost) none of the keys"
        await client.aclose()
    # SCAN of every primary: listing, count, scan and find_by_tag see all 300.
    assert sorted(await ckv.keys()) == sorted(items)
    assert await ckv.count("user:1*") == len([k for k in items if k.startswith("user:1")])
    assert dict([kv async for kv in ckv.scan()]) == items
    assert sorted(await ckv.find_by_tag("kind", "user")) == sorted(items)
    assert await ckv.get_many([*items, "nope"]) == items
    assert await ckv.delete_many(list(items)[:100]) == 100
    assert len(await ckv.find_by_tag("kind", "user")) == 200
    assert await ckv.clear() == 200


async def test_clear_leaves_no_bookkeeping(ckv: dmem.Store, redis_cluster_url: str) -> None:
    await ckv.set_many({f"k{i}": i for i in range(100)}, tags={"a": "1", "b": "x:y"}, ttl=60)
    assert await ckv.clear() == 100
    ns = ckv.namespace
    for client in await _primaries(redis_cluster_url):
        left = [k async for k in client.scan_iter(match=f"dmem:*:{len(ns)}:{ns}:*")]
        assert left == []
        await client.aclose()


async def test_one_key_update_is_one_slot_script(ckv: dmem.Store) -> None:
    provider = ckv.provider
    assert isinstance(provider, RedisProvider)
    layout = provider._layout
    # Value key, tag hash and tag-index entry of a key share its bucket's hash tag.
    key = "some key"
    prefix = layout.prefixes[layout.bucket(key)]
    assert layout.value_key(key).startswith(prefix) and prefix.count("{") == 1
    await ckv.set(key, 1, tags={"t": "v"})
    await ckv.set(key, 2, tags={"t": "w"})
    assert await ckv.find_by_tag("t", "v") == [] and await ckv.find_by_tag("t", "w") == [key]


async def test_user_hash_tags_do_not_break_placement(ckv: dmem.Store) -> None:
    # A user key with its own {...} must not move it out of its bucket's slot.
    keys = ["{a}1", "{a}2", "x{b}y", "}{", "{", "}"]
    await ckv.set_many({k: k for k in keys}, tags={"t": "v"})
    assert sorted(await ckv.keys()) == sorted(keys)
    assert sorted(await ckv.find_by_tag("t", "v")) == sorted(keys)
    assert await ckv.get_many(keys) == {k: k for k in keys}


@pytest.mark.parametrize("buckets", ["1", "7"])
async def test_bucket_count_is_an_option(redis_cluster_url: str, buckets: str) -> None:
    async with dmem.open(
        redis_cluster_url, namespace=f"b-{uuid.uuid4().hex[:6]}", buckets=buckets
    ) as kv:
        await kv.set_many({f"k{i}": i for i in range(50)}, tags={"t": "v"})
        assert len(await kv.find_by_tag("t", "v")) == 50
        assert await kv.count() == 50
        assert await kv.clear() == 50


async def test_primary_dies_and_returns(tmp_path: Path) -> None:
    """Kill one primary of a cluster of our own: its keys fail fast, then recover."""
    require_redis()
    servers = start_cluster(tmp_path / "cluster", persistent=True)
    try:
        url = "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in servers)
        async with dmem.open(url, namespace="f", **OPTIONS) as kv:
            await kv.set_many({f"k{i}": i for i in range(60)}, tags={"t": "v"})
            victim: RedisServer = servers[1]
            victim.kill()
            started = time.monotonic()
            with pytest.raises(dmem.ProviderUnavailableError):
                # Some of these live on the dead primary.
                await kv.get_many([f"k{i}" for i in range(60)])
            assert time.monotonic() - started < 8.0
            victim.start()  # same port and nodes.conf: it rejoins the cluster
            back = time.monotonic()
            while True:
                try:
                    assert len(await kv.find_by_tag("t", "v")) == 60
                    break
                except dmem.ProviderUnavailableError:
                    await asyncio.sleep(0.1)
                    assert time.monotonic() - back < 15.0, "cluster did not recover"
            recovered = time.monotonic() - back
            assert await kv.count() == 60
            assert await kv.get_many([f"k{i}" for i in range(60)]) == {
                f"k{i}": i for i in range(60)
            }
            print(f"cluster recovered {recovered:.2f}s after the primary restarted")
    finally:
        for server in servers:
            server.stop()


async def test_stopped_primary_fails_calls_within_timeout(tmp_path: Path) -> None:
    """SIGSTOP one primary of a cluster of our own: calls that need it fail within
    ``timeout`` (one attempt, a slot-map refresh and a second attempt included), and work
    again once it resumes. The stop stays under the nodes' cluster-node-timeout (2 s), so the
    cluster itself does not mark the node failed."""
    require_redis()
    servers = start_cluster(tmp_path / "cluster")
    try:
        # The stopped node is the first startup node, which a slot-map refresh asks first.
        url = "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in servers)
        keys = [f"k{i}" for i in range(60)]
        async with dmem.open(url, namespace="stop", **OPTIONS) as kv:
            await kv.set_many(dict.fromkeys(keys, 1))
            victim = servers[0].process
            assert victim is not None
            took = []
            os.kill(victim.pid, signal.SIGSTOP)
            try:
                for call in (lambda: kv.get_many(keys), lambda: kv.set_many({k: 2 for k in keys})):
                    started = time.monotonic()
                    with pytest.raises(dmem.ProviderUnavailableError):
                        await call()
                    took.append(time.monotonic() - started)
            finally:
                os.kill(victim.pid, signal.SIGCONT)
            print("cluster, a primary stopped:", [round(t, 2) for t in took])
            assert max(took) <= OPTIONS["timeout"] + 0.5, took
            back = time.monotonic()
            while True:
                try:
                    assert len(await kv.get_many(keys)) == 60
                    break
                except dmem.ProviderUnavailableError:
                    await asyncio.sleep(0.1)
                    assert time.monotonic() - back < 15.0, "cluster did not recover"
    finally:
        for server in servers:
            server.stop()


# --- writes sent once (if_not_exists, incr, compare-and-set) on connections that failed ------
async def _kill_clients_named(url: str, name: str) -> int:
    """CLIENT KILL, on every primary, each connection whose client name is ``name``."""
    killed = 0
    for primary in await _primaries(url):
        for client in await primary.client_list():
            if client.get("name") == name:
                killed += await primary.client_kill_filter(_id=client["id"])
        await primary.aclose()
    return killed


async def test_once_writes_reconnect_what_the_server_closed(redis_cluster_url: str) -> None:
    """Writes that are never re-sent (if_not_exists, incr, compare-and-set/delete) go out on
    a checked connection: after the server closed the pooled ones (a restart, an idle
    timeout, CLIENT KILL), each write reconnects first instead of failing with an unknown
    outcome. Before, the first such write on each node raised ProviderUnavailableError."""
    name = f"dmem-stale-{uuid.uuid4().hex[:8]}"
    keys = [f"k{i}" for i in range(48)]  # over every bucket's node
    async with dmem.open(
        redis_cluster_url, namespace=name, client_name=name, share_connection=False
    ) as kv:
        rounds: list[tuple[str, Any]] = [
            ("set if_not_exists", lambda k: kv.set(k, 1, if_not_exists=True)),
            ("incr", lambda k: kv.incr(k)),
            ("compare_and_set", lambda k: kv.compare_and_set(k, 2, 3)),
            ("compare_and_delete", lambda k: kv.compare_and_delete(k, 3)),
        ]
        expected = [True, 2, True, True]
        await kv.get_many(keys)  # a connection to every primary
        for (label, write), want in zip(rounds, expected, strict=True):
            assert await _kill_clients_named(redis_cluster_url, name) >= 3
            results = await asyncio.gather(*(write(k) for k in keys))
            assert results == [want] * len(keys), f"{label} after CLIENT KILL: {results}"
        assert await kv.set_many(dict.fromkeys(keys, 1), if_not_exists=True) == len(keys)
        assert await _kill_clients_named(redis_cluster_url, name) >= 3
        assert await kv.set_many(dict.fromkeys(keys, 2), if_not_exists=True) == 0
        assert await kv.get_many(keys) == dict.fromkeys(keys, 1)
        await kv.clear()


async def test_once_write_retries_a_connect_that_times_out(tmp_path: Path) -> None:
    """A write that is never re-sent still retries connecting, which sends nothing.

    One primary is stopped (SIGSTOP) with its accept queue full (``--tcp-backlog 1`` and two
    idle sockets), so the kernel drops new connection attempts and they time out; it resumes
    after the first attempt has timed out. ``set(if_not_exists=True)`` must succeed on a
    later attempt. Before, redis-py's cluster connections made one attempt: the write failed.
    """
    require_redis()
    servers = start_cluster(tmp_path / "cluster", extra=["--tcp-backlog", "1"])
    connect_timeout = 0.3
    try:
        url = "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in servers)
        options = {
            "connect_timeout": connect_timeout,
            "retries": 3,
            "retry_backoff": 0.05,
            "retry_backoff_max": 0.1,
            "timeout": 8.0,
            "client_name": "dmem-connect-retry",
        }
        async with dmem.open(url, namespace="cr", share_connection=False, **options) as kv:
            provider = kv.provider
            assert isinstance(provider, RedisProvider)
            victim = servers[0]
            assert victim.process is not None

            def on_victim(key: str) -> bool:
                node = provider._client.get_node_from_key(provider._layout.value_key(key))
                return bool(node.port == victim.port)

            key = next(k for k in (f"k{i}" for i in range(1000)) if on_victim(k))
            await kv.set(key + "-warm", 0)  # the topology is known before the stop
            await _kill_clients_named(url, "dmem-connect-retry")  # no live connection left
            fillers: list[socket.socket] = []
            os.kill(victim.process.pid, signal.SIGSTOP)
            try:
                for _ in range(2):  # the accept queue holds backlog + 1 = 2 connections
                    fillers.append(socket.create_connection(("127.0.0.1", victim.port), 1.0))
                started = time.monotonic()
                write = asyncio.create_task(kv.set(key, "won", if_not_exists=True))
                await asyncio.sleep(connect_timeout * 1.5)  # the first attempt has timed out
                assert not write.done(), "the write ended while the primary was stopped"
            finally:
                os.kill(victim.process.pid, signal.SIGCONT)
            assert await write is True
            took = time.monotonic() - started
            for filler in fillers:
                filler.close()
            print(f"cluster, a connect timed out: the write succeeded after {took:.2f}s")
            assert took > connect_timeout, "no connection attempt timed out: nothing was tested"
            assert await kv.get(key) == "won"
    finally:
        for server in servers:
            server.stop()
