"""Many namespaces, one connection: SQLite stores share a worker thread per file, PostgreSQL
stores one pool per server (per event loop); ``with_namespace`` and ``dmem.open`` alike,
closed with the last store; ``share_connection=false`` opts out."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import dmem
import pytest
from dmem import InvalidArgumentError, NotInitializedError, Store
from dmem_sqlite import _pgshared, _sqlite_db
from dmem_sqlite._config import parse_postgres, parse_sqlite

COUNT = 100


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "dmem-sqlite"]


async def _until_workers(count: int) -> int:
    """The number of worker threads once it is ``count`` (a stopped one exits a moment
    after its last job), or after 5 s."""
    deadline = time.monotonic() + 5
    while len(_workers()) != count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    return len(_workers())


async def _check_isolated(stores: list[Store]) -> None:
    for i, store in enumerate(stores):
        await store.set("k", i, tags={"n": str(i)})
        await store.set(f"only{i}", i)
    for i, store in enumerate(stores):
        assert await store.get("k") == i, f"namespace {store.namespace!r} lost its key"
        assert sorted(await store.keys()) == ["k", f"only{i}"]
        assert await store.find_by_tag("n", str(i)) == ["k"]
        assert await store.count() == 2


# --- SQLite ---------------------------------------------------------------------------------
async def test_sqlite_100_namespaces_one_worker_thread(tmp_path: Path) -> None:
    before = await _until_workers(0)
    kv = await dmem.open(f"sqlite:///{tmp_path / 'ns.db'}", namespace="root")
    derived = [await kv.with_namespace(f"ns{i}") for i in range(COUNT)]
    assert len(_workers()) == before + 1, "100 namespaces of one file: one worker thread"
    assert all(d.provider._worker is kv.provider._worker for d in derived)  # type: ignore[attr-defined]
    await _check_isolated([kv, *derived])
    # The parent closes first: the others keep the thread.
    await kv.aclose()
    with pytest.raises(NotInitializedError):
        await kv.get("k")
    assert await derived[5].get("k") == 6  # index 0 was kv's
    for store in derived[:-1]:
        await store.aclose()
    assert await derived[-1].get("k") == COUNT
    assert len(_workers()) == before + 1
    await derived[-1].aclose()
    assert await _until_workers(before) == before, "the last store did not stop the thread"
    with pytest.raises(NotInitializedError):
        await derived[-1].get("k")


async def test_sqlite_stores_opened_on_one_file_share_its_thread(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'open.db'}"
    before = await _until_workers(0)
    stores = [await dmem.open(url, namespace=f"o{i}") for i in range(COUNT)]
    other_table = await dmem.open(url, namespace="o1", table="second")
    assert len(_workers()) == before + 1
    await _check_isolated(stores)
    assert await other_table.get("k") is None, "tables are separate on one connection too"
    own = await dmem.open(url, namespace="o1", share_connection="false")
    assert len(_workers()) == before + 2, "share_connection=false: a thread of its own"
    assert await own.get("k") == 1, "the same data through its own connection"
    elsewhere = await dmem.open(f"sqlite:///{tmp_path / 'other.db'}")
    assert len(_workers()) == before + 3, "another file: another thread"
    for store in [*stores, other_table, own, elsewhere]:
        await store.aclose()
    assert await _until_workers(before) == before


async def test_sqlite_in_memory_stays_private_but_derives(tmp_path: Path) -> None:
    async with dmem.open("sqlite://") as one, dmem.open("sqlite://") as two:
        await one.set("k", "one")
        assert await two.get("k") is None, "two sqlite:// stores share one database"
        async with one.with_namespace("x") as derived:
            assert await derived.get("k") is None
            await derived.set("k", "derived")
            # The same private database: a third store on namespace "" of it sees one's key.
            async with derived.with_namespace("") as back:
                assert await back.get("k") == "one"
        assert await one.get("k") == "one"


async def test_sqlite_purge_covers_every_table_of_the_shared_connection(tmp_path: Path) -> None:
    path = tmp_path / "purge.db"
    url = f"sqlite:///{path}"
    async with dmem.open(url, table="ta") as a, dmem.open(url, table="tb") as b:
        derived = await b.with_namespace("other")
        await a.set_many({f"a{i}": i for i in range(20)}, ttl=0.01)
        await derived.set_many({f"b{i}": i for i in range(20)}, ttl=0.01, tags={"t": "x"})
        database = b.provider._lease.value  # type: ignore[attr-defined]
        assert [table for table, _ in database._purged] == ["ta", "tb"]
        await a.aclose()  # the last store of table ta: no store of this process uses it
        assert [table for table, _ in database._purged] == ["tb"]
        await asyncio.sleep(1.1)  # past the purge interval
        await b.set("trigger", 1)  # purging rides along with writes
        conn = sqlite3.connect(path)
        try:
            left_b = conn.execute("SELECT count(*) FROM tb").fetchone()[0]
            tags_b = conn.execute("SELECT count(*) FROM tb_tags").fetchone()[0]
        finally:
            conn.close()
        assert (left_b, tags_b) == (1, 0)
        await derived.aclose()


async def test_sqlite_one_thread_serves_every_event_loop(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'loops.db'}"
    before = await _until_workers(0)
    kv = await dmem.open(url, namespace="main")
    seen: list[Any] = []

    def in_another_loop() -> None:
        async def work() -> None:
            async with dmem.open(url, namespace="thread") as other:
                seen.append(len(_workers()))
                await other.set("k", "thread")
                seen.append(await other.get("k"))

        asyncio.run(work())

    thread = threading.Thread(target=in_another_loop)
    thread.start()
    await asyncio.to_thread(thread.join)
    assert seen == [before + 1, "thread"]
    assert await kv.get("k") is None
    await kv.aclose()
    assert await _until_workers(before) == before


async def test_sqlite_unopenable_file_leaves_no_thread(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    url = f"sqlite:///{blocker / 'x.db'}"
    before = await _until_workers(0)
    for _ in range(3):
        with pytest.raises(dmem.ProviderUnavailableError):
            await dmem.open(url, timeout=2)
    assert await _until_workers(before) == before
    config = parse_sqlite(url, {})
    assert _sqlite_db._DATABASES.users(_sqlite_db._key(config)) == 0


async def test_sqlite_provider_level_with_namespace_needs_an_open_provider() -> None:
    provider = dmem.create_provider("sqlite://", {})
    with pytest.raises(NotInitializedError):
        provider.with_namespace("x")


def test_share_connection_option_is_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="share_connection"):
        dmem.create_provider(f"sqlite:///{tmp_path / 'x.db'}?share_connection=sometimes", {})


# --- PostgreSQL -----------------------------------------------------------------------------
async def _server_connections(url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        # Every client backend of the server but this one.
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        return int(count)
    finally:
        await conn.close()


async def test_postgres_100_namespaces_one_pool(postgres_url: str) -> None:
    pytest.importorskip("asyncpg")
    pool_size = 3
    before = await _server_connections(postgres_url)
    kv = await dmem.open(postgres_url, namespace="shared-root", pool_size=pool_size)
    derived = [await kv.with_namespace(f"shared-{i}") for i in range(COUNT)]
    pool = kv.provider._pool  # type: ignore[attr-defined]
    assert all(d.provider._pool is pool for d in derived)  # type: ignore[attr-defined]
    for store in [kv, *derived]:
        await store.clear()
    # Concurrent calls from every store: still at most pool_size connections.
    await asyncio.gather(*(s.set("k", i) for i, s in enumerate(derived)))
    assert await _server_connections(postgres_url) - before <= pool_size
    await _check_isolated([kv, *derived])
    opened = [
        await dmem.open(postgres_url, namespace=f"o{i}", pool_size=pool_size) for i in range(5)
    ]
    assert all(s.provider._pool is pool for s in opened), "dmem.open shares the pool too"  # type: ignore[attr-defined]
    own = await dmem.open(postgres_url, namespace="o", pool_size=pool_size, share_connection=False)
    assert own.provider._pool is not pool  # type: ignore[attr-defined]
    other_size = await dmem.open(postgres_url, namespace="o", pool_size=pool_size + 1)
    assert other_size.provider._pool is not pool, "another pool_size: another pool"  # type: ignore[attr-defined]
    await kv.aclose()
    assert await derived[0].get("k") == 1, "closing the parent closed the pool"
    for store in [*derived, *opened, own, other_size]:
        await store.clear()
        await store.aclose()
    assert pool._closed
    with pytest.raises(NotInitializedError):
        await derived[0].get("k")


async def test_postgres_unreachable_server_leaves_no_pool() -> None:
    pytest.importorskip("asyncpg")
    from pgserver import free_port

    url = f"postgresql://dmem@127.0.0.1:{free_port()}/none"
    for _ in range(2):
        with pytest.raises(dmem.ProviderUnavailableError):
            await dmem.open(url, timeout=2)
    config = parse_postgres(url, {"timeout": 2})
    assert _pgshared._SERVERS.users(_pgshared._key(config, config.connect_kwargs())) == 0
