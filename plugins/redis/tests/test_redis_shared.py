"""Many namespaces, one connection: Redis stores of a process (and event loop) on one server
share one client and pool, ``with_namespace`` and ``dmem.open`` alike; the server's
``connected_clients`` grows by at most the pool's size; ``share_connection=false`` opts out."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dmem
import pytest
from dmem import NotInitializedError, Store
from dmem_redis import _shared
from dmem_redis._config import parse_config
from redis_servers import RedisServer, free_port, require_redis

COUNT = 100


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own, so its client count is ours alone."""
    require_redis()
    own = RedisServer(tmp_path / "shared", password="shared-secret-pw")
    try:
        own.start()
    except (RuntimeError, OSError) as exc:
        from dmem_conformance._env import backend_missing

        backend_missing(f"cannot start redis-server: {exc}")
    yield own
    own.stop()


def clients(server: RedisServer) -> int:
    """The server's connected clients, less the redis-cli asking."""
    for line in server.cli("INFO", "clients").splitlines():
        if line.startswith("connected_clients:"):
            return int(line.split(":", 1)[1]) - 1
    raise AssertionError("no connected_clients in INFO clients")


async def settled(server: RedisServer, expected: int) -> int:
    """The client count once it is ``expected`` (a closed connection leaves the server's count
    a moment later), or after 5 s."""
    deadline = time.monotonic() + 5
    count = clients(server)
    while count != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        count = clients(server)
    return count


async def check_isolated(stores: list[Store]) -> None:
    for i, store in enumerate(stores):
        await store.set("k", i, tags={"n": str(i)})
        await store.set(f"only{i}", i)
    for i, store in enumerate(stores):
        assert await store.get("k") == i, f"namespace {store.namespace!r} lost its key"
        assert sorted(await store.keys()) == ["k", f"only{i}"]
        assert await store.find_by_tag("n", str(i)) == ["k"]
        assert await store.count() == 2


async def test_100_namespaces_one_pool(server: RedisServer) -> None:
    pool_size = 4
    before = clients(server)
    kv = await dmem.open(server.url, namespace="root", max_connections=pool_size)
    derived = [await kv.with_namespace(f"ns{i}") for i in range(COUNT)]
    assert all(d.provider._client is kv.provider._client for d in derived)  # type: ignore[attr-defined]
    assert all(d.provider.max_value_bytes == kv.provider.max_value_bytes for d in derived)  # type: ignore[attr-defined]
    assert clients(server) - before == 1, "opening 100 namespaces opened connections"
    # 100 stores calling at once: the pool's connections, no more.
    await asyncio.gather(*(s.set("k", i) for i, s in enumerate(derived)))
    grown = clients(server) - before
    assert 1 <= grown <= pool_size, f"{grown} connections for a pool of {pool_size}"
    await check_isolated([kv, *derived])
    assert clients(server) - before <= pool_size
    # The parent closes first; the others keep the pool.
    await kv.aclose()
    with pytest.raises(NotInitializedError):
        await kv.get("k")
    assert await derived[0].get("k") == 1
    for store in derived[:-1]:
        await store.clear()
        await store.aclose()
    assert await derived[-1].get("k") == COUNT
    await derived[-1].clear()
    await derived[-1].aclose()
    assert await settled(server, before) == before, "the last store left connections open"
    with pytest.raises(NotInitializedError):
        await derived[-1].get("k")


async def test_unbounded_pool_used_in_turn_is_one_connection(server: RedisServer) -> None:
    before = clients(server)
    kv = await dmem.open(server.url, namespace="root")
    derived = [await kv.with_namespace(f"seq{i}") for i in range(COUNT)]
    await check_isolated(derived)
    assert clients(server) - before == 1
    for store in [*derived, kv]:
        await store.clear()
        await store.aclose()
    assert await settled(server, before) == before


async def test_stores_opened_on_one_server_share_its_client(server: RedisServer) -> None:
    before = clients(server)
    stores = [await dmem.open(server.url, namespace=f"o{i}") for i in range(COUNT)]
    client = stores[0].provider._client  # type: ignore[attr-defined]
    assert all(s.provider._client is client for s in stores)  # type: ignore[attr-defined]
    await check_isolated(stores)
    assert clients(server) - before == 1
    own = await dmem.open(server.url, namespace="o1", share_connection=False)
    assert own.provider._client is not client  # type: ignore[attr-defined]
    assert await own.get("k") == 1, "the same data through a client of its own"
    assert clients(server) - before == 2
    other_db = await dmem.open(server.url.replace("/0", "/1"), namespace="o1")
    assert other_db.provider._client is not client, "another database: another client"  # type: ignore[attr-defined]
    for store in [*stores, own, other_db]:
        await store.clear()
        await store.aclose()
    assert await settled(server, before) == before


async def test_a_later_open_checks_the_server_answers(server: RedisServer) -> None:
    kv = await dmem.open(server.url, namespace="up", timeout=2, retries=0)
    server.stop()
    try:
        with pytest.raises(dmem.ProviderUnavailableError):
            await dmem.open(server.url, namespace="second", timeout=2, retries=0)
        # with_namespace sends nothing: it opens, and its calls fail while the server is down.
        derived = await kv.with_namespace("derived")
        with pytest.raises(dmem.ProviderUnavailableError):
            await derived.get("k")
    finally:
        server.start()
    assert await derived.set("k", 1)  # back without re-initializing
    await derived.aclose()
    await kv.clear()
    await kv.aclose()


async def test_unreachable_server_leaves_no_client() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    for _ in range(2):
        with pytest.raises(dmem.ProviderUnavailableError):
            await dmem.open(url, timeout=1, retries=0)
    config = parse_config(url, {"timeout": 1, "retries": 0})
    assert _shared._CLIENTS.users(_shared.connection_key(config)) == 0


async def test_clients_are_never_shared_across_event_loops(server: RedisServer) -> None:
    kv = await dmem.open(server.url, namespace="main")
    seen: list[Any] = []

    def in_another_loop() -> None:
        async def work() -> None:
            async with dmem.open(server.url, namespace="thread") as other:
                seen.append(other.provider._client)  # type: ignore[attr-defined]
                assert await other.set("k", "thread")

        asyncio.run(work())

    thread = threading.Thread(target=in_another_loop)
    thread.start()
    await asyncio.to_thread(thread.join)
    assert len(seen) == 1 and seen[0] is not kv.provider._client  # type: ignore[attr-defined]
    assert await kv.get("k") is None
    await kv.aclose()


def test_the_connection_key_holds_every_connection_option() -> None:
    base = parse_config("redis://:pw@127.0.0.1:6380/2", {"namespace": "a"})
    same = parse_config(
        "redis://:pw@127.0.0.1:6380/2", {"namespace": "b", "max_value_bytes": 5 * 2**20}
    )
    assert _shared.connection_key(base) == _shared.connection_key(same)
    for url, options in [
        ("redis://:other@127.0.0.1:6380/2", {}),
        ("redis://:pw@127.0.0.1:6380/3", {}),
        ("redis://:pw@127.0.0.1:6380/2", {"timeout": 3}),
        ("redis://:pw@127.0.0.1:6380/2", {"max_connections": 3}),
    ]:
        assert _shared.connection_key(parse_config(url, options)) != _shared.connection_key(base)
    assert _shared.connection_key(parse_config("redis://h", {"share_connection": "no"})) is None
