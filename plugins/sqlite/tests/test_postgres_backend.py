"""PostgreSQL specifics: restart, no secrets anywhere, options, purge, collation."""

from __future__ import annotations

import asyncio
import time

import dmem
import pytest
from dmem import InvalidArgumentError, ProviderUnavailableError
from pgserver import PostgresServer, free_port
from tagcheck import check_tag_rows_follow_every_kind_of_write

pytest.importorskip("asyncpg")


async def test_restart_fails_while_down_and_recovers_without_reinitializing(
    pg_server: PostgresServer | None, postgres_url: str
) -> None:
    if pg_server is None:
        pytest.skip("needs the suite's own server (DMEM_TEST_POSTGRES_URL is not restarted)")
    kv = await dmem.open(postgres_url, namespace="restart", timeout=2)
    try:
        await kv.set("k", 1)
        pg_server.halt()
        try:
            start = time.monotonic()
            with pytest.raises(ProviderUnavailableError):
                await kv.get("k")
            with pytest.raises(ProviderUnavailableError):
                await kv.set("k", 2)
            assert time.monotonic() - start < 10
            assert not (await kv.health()).ok
        finally:
            pg_server.launch()
        for _ in range(50):  # the server accepts connections again within a moment
            try:
                assert await kv.get("k") == 1
                break
            except ProviderUnavailableError:
                await asyncio.sleep(0.1)
        assert await kv.set("k", 3)
        assert await kv.get("k") == 3
        await kv.clear()
    finally:
        await kv.aclose()


async def test_password_never_shows() -> None:
    url = f"postgresql://dmem:hunter2-secret@127.0.0.1:{free_port()}/db"
    with pytest.raises(ProviderUnavailableError) as info:
        await dmem.open(url, timeout=2)
    text = f"{info.value} {info.value!r} {info.value.__cause__}"
    assert "hunter2-secret" not in text
    provider = dmem.create_provider(url, {})
    assert "hunter2-secret" not in repr(provider)
    store = dmem.Store(provider, url=url)
    assert "hunter2-secret" not in repr(store)
    report = await provider.health()
    assert report.status == "unhealthy"
    assert "hunter2-secret" not in str(report.to_dict())


@pytest.mark.parametrize(
    "options",
    [{"table": "x y"}, {"pool_size": "0"}, {"command_timeout": "-3"}, {"synchronous": "full"}],
)
def test_bad_options_are_rejected_before_connecting(options: dict[str, str]) -> None:
    with pytest.raises(InvalidArgumentError):
        dmem.create_provider(f"postgresql://u@127.0.0.1:{free_port()}/db", dict(options))


async def test_keys_compare_bytewise_and_prefix_ranges_are_exact(postgres_url: str) -> None:
    # COLLATE "C": the range for "a" must not pick up "A", "á" or "b".
    async with dmem.open(postgres_url, namespace="collation") as kv:
        keys = ["a", "a\U0010ffff", "ab", "A", "á", "b", "a:é", "Z"]
        await kv.set_many({key: key for key in keys})
        assert sorted(await kv.keys("a*")) == sorted(["a", "a\U0010ffff", "ab", "a:é"])
        assert await kv.count("a*") == 4
        assert sorted(await kv.keys("a?")) == sorted(["a\U0010ffff", "ab"])
        await kv.clear()


async def test_expired_rows_are_purged(postgres_url: str) -> None:
    import asyncpg

    async with dmem.open(postgres_url, namespace="purge", table="dmem_purge") as kv:
        await kv.clear()
        await kv.set_many({f"short:{i}": i for i in range(30)}, ttl=0.01, tags={"t": "x"})
        await asyncio.sleep(0.05)
        purger = kv.provider._purger  # type: ignore[attr-defined]  # the table's (_pgshared)
        purger.next = 0.0  # don't wait 5 s in a test
        await kv.set("trigger", 1)
        for _ in range(100):
            if purger.task is None:
                break
            await asyncio.sleep(0.02)
        conn = await asyncpg.connect(postgres_url)
        try:
            rows = await conn.fetchval("SELECT count(*) FROM dmem_purge WHERE namespace = 'purge'")
            tags = await conn.fetchval(
                "SELECT count(*) FROM dmem_purge_tags WHERE namespace = 'purge'"
            )
        finally:
            await conn.close()
        assert (rows, tags) == (1, 0)
        await kv.clear()


async def test_tag_rows_follow_every_kind_of_write(postgres_url: str) -> None:
    import asyncpg

    async with dmem.open(postgres_url, namespace="retag", table="dmem_retag") as kv:
        await kv.clear()
        conn = await asyncpg.connect(postgres_url)

        async def tag_rows() -> list[tuple[str, str, str]]:
            rows = await conn.fetch(
                "SELECT key, name, value FROM dmem_retag_tags WHERE namespace = 'retag' "
                "ORDER BY key, name"
            )
            return [(row[0], row[1], row[2]) for row in rows]

        try:
            await check_tag_rows_follow_every_kind_of_write(kv, tag_rows)
        finally:
            await conn.close()
        await kv.clear()


async def test_a_statement_past_command_timeout_fails_in_time_and_the_store_recovers(
    postgres_url: str,
) -> None:
    """A statement stuck behind a lock is cut off by command_timeout, then calls succeed again."""
    import asyncpg

    kv = await dmem.open(postgres_url, namespace="stuck", command_timeout=0.8, pool_size=2)
    blocker = await asyncpg.connect(postgres_url)
    try:
        await kv.set("k", 1)
        table = "dmem_kv"
        blocked = blocker.transaction()
        await blocked.start()
        await blocker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        start = time.monotonic()
        with pytest.raises(ProviderUnavailableError, match=r"command_timeout=0\.8"):
            await kv.set("k", 2)
        elapsed = time.monotonic() - start
        assert 0.6 <= elapsed < 1.5, elapsed
        await blocked.rollback()
        assert await kv.get("k") == 1  # the cut-off write did not happen
        assert await kv.set("k", 3)
        assert await kv.get("k") == 3
        await kv.clear()
    finally:
        await blocker.close()
        await kv.aclose()
