"""Every URL form reaches a real server: standalone, unix socket, TLS, Sentinel, Cluster."""

from __future__ import annotations

from typing import Any

import dmem
import pytest
from redis_servers import PASSWORD


async def _roundtrip(url: str, **options: Any) -> None:
    async with dmem.open(url, namespace="connect-test", **options) as kv:
        await kv.clear()
        assert await kv.set("k", {"a": [1, "2"]}, ttl=30, tags={"t": "x:y"})
        assert await kv.get("k") == {"a": [1, "2"]}
        assert await kv.find_by_tag("t", "x:y") == ["k"]
        health = await kv.health()
        assert health.ok, health
        assert PASSWORD not in repr(health) and PASSWORD not in repr(kv)
        assert PASSWORD not in repr(kv.provider)
        assert await kv.clear() == 1


async def test_standalone(redis_url: str) -> None:
    await _roundtrip(redis_url)


async def test_unix_socket(redis_unix_url: str) -> None:
    await _roundtrip(redis_unix_url)


async def test_tls(redis_tls: tuple[str, dict[str, Any]]) -> None:
    url, options = redis_tls
    await _roundtrip(url, **options)


async def test_tls_rejects_unknown_ca(redis_tls: tuple[str, dict[str, Any]]) -> None:
    url, _ = redis_tls
    # No CA given: the server's certificate (from the test CA) cannot be verified.
    with pytest.raises(dmem.ProviderError):
        await dmem.open(url, namespace="x", timeout=2)


async def test_sentinel(redis_sentinel_url: str) -> None:
    await _roundtrip(redis_sentinel_url)
    async with dmem.open(redis_sentinel_url, namespace="s") as kv:
        assert (await kv.health()).details["mode"] == "sentinel"


async def test_cluster(redis_cluster_url: str) -> None:
    await _roundtrip(redis_cluster_url)
