"""SQLite specifics: URLs and options, the embedded default, schema, WAL, purge, helpers."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import dmem
import pytest
from dmem import InvalidArgumentError, ProviderError, compile_pattern
from dmem_sqlite import SQLiteProvider
from dmem_sqlite._common import is_prefix_glob, upper_bound
from tagcheck import check_tag_rows_follow_every_kind_of_write


async def test_default_store_is_a_sqlite_file_in_the_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DMEM_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "not" / "yet"))
    async with dmem.open() as kv:
        await kv.set("hello", "world")
        assert await kv.get("hello") == "world"
        assert isinstance(kv.provider, SQLiteProvider)
    assert (tmp_path / "not" / "yet" / "dmem" / "default.db").is_file()
    async with dmem.open() as kv:  # persistent
        assert await kv.get("hello") == "world"


async def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c" / "x.db"
    async with dmem.open(f"sqlite:///{path}") as kv:
        assert await kv.set("k", 1)
    assert path.is_file()


async def test_in_memory_url_is_private_to_its_store() -> None:
    async with dmem.open("sqlite://") as one, dmem.open("sqlite:///:memory:") as two:
        await one.set("k", 1)
        assert await two.get("k") is None
        assert await one.get("k") == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"table": "kv; DROP TABLE x"}, "table must match"),
        ({"table": "1abc"}, "table must match"),
        ({"table": "a" * 41}, "table must match"),
        ({"synchronous": "off"}, "synchronous"),
        ({"busy_timeout": "-1"}, "busy_timeout"),
        ({"timeout": "soon"}, "timeout"),
        ({"nonsense": "1"}, "unknown sqlite option"),
        ({"namespace": "a\x00b"}, "NUL"),
    ],
)
async def test_bad_options_fail_before_any_io(
    tmp_path: Path, options: dict[str, str], message: str
) -> None:
    path = tmp_path / "never.db"
    with pytest.raises(InvalidArgumentError, match=message):
        await dmem.open(f"sqlite:///{path}", **options)
    assert not path.exists()


async def test_url_query_options_and_host_rejected(tmp_path: Path) -> None:
    async with dmem.open(f"sqlite:///{tmp_path / 'q.db'}?table=other&synchronous=full") as kv:
        report = await kv.health()
        assert report.ok
        assert report.details["table"] == "other"
        assert report.details["synchronous"] == "full"
        assert report.details["journal_mode"] == "wal"
    with pytest.raises(InvalidArgumentError, match="no host"):
        await dmem.open("sqlite://somehost/x.db")


async def test_tables_are_separate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    async with dmem.open(url, table="first") as a, dmem.open(url, table="second") as b:
        await a.set("k", "a")
        assert await b.get("k") is None
        assert await b.count() == 0


async def test_schema_version_is_recorded_and_a_newer_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    async with dmem.open(f"sqlite:///{path}") as kv:
        await kv.set("k", 1)
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value FROM dmem_kv_meta WHERE name = 'schema_version'")
        assert row.fetchone()[0] == "1"
        conn.execute("UPDATE dmem_kv_meta SET value = '99' WHERE name = 'schema_version'")
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(ProviderError, match="newer dmem-sqlite"):
        await dmem.open(f"sqlite:///{path}")


async def test_expired_rows_are_purged_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    async with dmem.open(f"sqlite:///{path}") as kv:
        await kv.set_many({f"short:{i}": i for i in range(50)}, ttl=0.01, tags={"t": "x"})
        await kv.set("long", 1)
        await asyncio.sleep(1.1)  # past the purge interval
        await kv.set("trigger", 1)  # purging rides along with writes
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute("SELECT count(*) FROM dmem_kv").fetchone()[0]
            tag_rows = conn.execute("SELECT count(*) FROM dmem_kv_tags").fetchone()[0]
        finally:
            conn.close()
        assert rows == 2
        assert tag_rows == 0


async def test_tag_rows_follow_every_kind_of_write(tmp_path: Path) -> None:
    path = tmp_path / "t.db"

    async def tag_rows() -> list[tuple[str, str, str]]:
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute("SELECT key, name, value FROM dmem_kv_tags ORDER BY key, name")
            return [(row[0], row[1], row[2]) for row in rows]
        finally:
            conn.close()

    async with dmem.open(f"sqlite:///{path}") as kv:
        await check_tag_rows_follow_every_kind_of_write(kv, tag_rows)


async def test_many_concurrent_writers_on_one_file(tmp_path: Path) -> None:
    """Group commit within a connection, the busy timeout between connections (the second
    store's own, not the one the process shares): no 'database is locked'."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    async with dmem.open(url) as one, dmem.open(url, share_connection=False) as two:
        results = await asyncio.gather(
            *(store.set(f"{n}:{i}", i) for i in range(200) for n, store in (("a", one), ("b", two)))
        )
        assert all(results)
        assert await one.count() == 400


async def test_event_loop_stays_free_during_a_big_batch(tmp_path: Path) -> None:
    """SQLite work happens on the worker thread: a ticker keeps ticking during set_many."""
    async with dmem.open(f"sqlite:///{tmp_path / 'l.db'}") as kv:
        items = {f"k{i}": "x" * 2000 for i in range(20_000)}
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        task = asyncio.create_task(ticker())
        start = time.perf_counter()
        await kv.set_many(items)
        took = time.perf_counter() - start
        task.cancel()
        # The loop ran the ticker while the batch was being written.
        assert len(gaps) > 5, f"ticker ran {len(gaps)} times during a {took:.2f}s batch"


def test_upper_bound() -> None:
    assert upper_bound("") is None
    assert upper_bound("user:") == "user;"
    assert upper_bound("a\U0010ffff") == "b"
    assert upper_bound("\U0010ffff") is None
    assert upper_bound("a\ud7ff") == "a\ue000"  # skips the surrogates
    for key in ["user:", "user:\U0010ffff", "user:é", "user:\x7f"]:
        assert "user:" <= key < "user;"


@pytest.mark.parametrize(
    ("source", "expected"),
    [("*", True), ("user:*", True), ("user:**", True), (r"a\*", False), (r"a\\*", True),
     ("a?*", False), ("a*b", False), ("abc", False), ("[ab]*", False)],
)  # fmt: skip
def test_is_prefix_glob(source: str, expected: bool) -> None:
    assert is_prefix_glob(compile_pattern(source)) is expected
