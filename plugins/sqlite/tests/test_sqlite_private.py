"""SQLite files and directories that dmem creates are private (0600 and 0700), whatever the umask.

What already exists keeps its mode: the user made it and chose it. SQLite gives the
``-wal``, ``-shm`` and ``-journal`` files the mode of the database file, so a private
database file keeps them private too (checked here rather than assumed).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import dmem
import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sidecar(db: Path, suffix: str) -> Path:
    return db.with_name(db.name + suffix)


def user_made(path: Path, mode: int, *, directory: bool = False) -> Path:
    """``path`` as the user would have made it, before dmem sees it."""
    if directory:
        path.mkdir(parents=True, exist_ok=True)
    else:
        path.touch()
    path.chmod(mode)
    return path


@pytest.fixture(params=[0o022, 0o002, 0o277], ids=["umask022", "umask002", "umask277"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """022 and 002 are the usual umasks; 277 also takes the owner's write bit away."""
    value: int = request.param
    old = os.umask(value)
    try:
        yield value
    finally:
        os.umask(old)


async def test_a_new_relative_file_is_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: int
) -> None:
    monkeypatch.chdir(tmp_path)
    async with dmem.open("sqlite:///new.db") as kv:
        await kv.set("secret", "s3cr3t", tags={"kind": "token"})
        modes = {s: oct(mode(sidecar(tmp_path / "new.db", s))) for s in ("-wal", "-shm")}
        assert modes == {"-wal": "0o600", "-shm": "0o600"}
    assert mode(tmp_path / "new.db") == 0o600


async def test_missing_directories_are_private_and_existing_ones_kept(
    tmp_path: Path, umask: int
) -> None:
    user_made(tmp_path, 0o755, directory=True)
    db = tmp_path / "a" / "b" / "kv.db"
    async with dmem.open(f"sqlite:///{db}") as kv:
        await kv.set("k", 1)
        assert [oct(mode(p)) for p in (db, sidecar(db, "-wal"), sidecar(db, "-shm"))] == [
            "0o600"
        ] * 3
    assert (mode(tmp_path / "a"), mode(tmp_path / "a" / "b")) == (0o700, 0o700)
    assert mode(tmp_path) == 0o755
    # A second store on the same file changes nothing.
    async with dmem.open(f"sqlite:///{db}") as kv:
        assert await kv.get("k") == 1
    assert (mode(tmp_path / "a"), mode(db)) == (0o700, 0o600)


async def test_an_existing_file_keeps_its_mode(tmp_path: Path, umask: int) -> None:
    """A file the user made (empty, as ``touch`` leaves it) is theirs: 0644 stays 0644."""
    db = user_made(tmp_path / "shared.db", 0o644)
    async with dmem.open(f"sqlite:///{db}") as kv:
        await kv.set("k", 1)
        # SQLite gives the -wal and -shm files the database file's mode.
        assert [oct(mode(p)) for p in (db, sidecar(db, "-wal"), sidecar(db, "-shm"))] == [
            "0o644"
        ] * 3


async def test_the_rollback_journal_follows_the_database_mode(tmp_path: Path, umask: int) -> None:
    """A file dmem made, later written by another tool in rollback-journal mode."""
    db = tmp_path / "kv.db"
    async with dmem.open(f"sqlite:///{db}") as kv:
        await kv.set("k", 1)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        # PERSIST keeps the journal file after the commit, so its mode can be read.
        assert conn.execute("PRAGMA journal_mode=PERSIST").fetchone()[0] == "persist"
        conn.execute("INSERT INTO dmem_kv (namespace, key, value) VALUES ('', 'j', x'31')")
        assert mode(sidecar(db, "-journal")) == 0o600
    finally:
        conn.close()
    assert mode(db) == 0o600


async def test_in_memory_store_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with dmem.open("sqlite://") as kv:
        await kv.set("k", 1)
    assert os.listdir(tmp_path) == []


async def test_a_file_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    """Creating the file first keeps the old error: ProviderUnavailableError, cause chained."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(dmem.ProviderUnavailableError) as info:
        await dmem.open(f"sqlite:///{blocker}/kv.db")
    assert isinstance(info.value.__cause__, OSError)
