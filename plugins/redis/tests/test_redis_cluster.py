"""Redis Cluster specifics: data spread over every primary, calls across slots, per-bucket
atomicity, SCAN of every primary, and a primary that dies and comes back."""

from __future__ import annotations

import asyncio
import os
import signal
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
