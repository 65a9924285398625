"""The embedded default store is private: what dmem creates for it is the user's alone.

Agent memory holds secrets, so the directories dmem creates on the way to
``default.db`` are 0700 and the database file (with SQLite's ``-wal`` and ``-shm``)
0600, whatever the umask; directories and files that already exist keep their modes.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import dmem
import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o002, 0o277], ids=["umask022", "umask002", "umask277"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The process umask for the test: the modes must not depend on it.

    022 and 002 are the usual ones; 277 would also take the owner's write bit away,
    which an explicit mode must restore.
    """
    value: int = request.param
    old = os.umask(value)
    try:
        yield value
    finally:
        os.umask(old)


def user_made(db: Path, *, directory_mode: int, file_mode: int) -> None:
    """The data directory and the database file as the user made them before dmem ran."""
    db.parent.mkdir(parents=True)
    db.parent.chmod(directory_mode)
    db.touch()
    db.chmod(file_mode)


def db_files(db: Path) -> list[Path]:
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]


async def test_default_store_under_home_is_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: int
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o755)
    monkeypatch.delenv("DMEM_URL", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))
    db = Path(dmem.default_url().removeprefix("sqlite:///"))
    # The data directory is under the home directory (on Linux ~/.local/share/dmem).
    parts = db.parent.relative_to(home).parts
    created = [home.joinpath(*parts[: i + 1]) for i in range(len(parts))]
    assert created and not any(d.exists() for d in created)
    async with dmem.open() as kv:
        await kv.set("secret", "s3cr3t")  # a write: the -wal and -shm files exist now
        for path in db_files(db):
            assert mode(path) == 0o600, path
    assert {d: oct(mode(d)) for d in created} == {d: "0o700" for d in created}
    assert mode(db) == 0o600
    assert mode(home) == 0o755  # not created by dmem: left alone


@pytest.mark.skipif(sys.platform != "linux", reason="XDG_DATA_HOME is the Linux data directory")
async def test_default_store_under_xdg_data_home_is_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: int
) -> None:
    monkeypatch.delenv("DMEM_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg" / "data"))
    assert dmem.default_url() == f"sqlite:///{tmp_path}/xdg/data/dmem/default.db"
    before = mode(tmp_path)
    async with dmem.open() as kv:
        await kv.set("secret", "s3cr3t")
        db = tmp_path / "xdg" / "data" / "dmem" / "default.db"
        assert [oct(mode(p)) for p in db_files(db)] == ["0o600"] * 3
    for d in ("xdg", "xdg/data", "xdg/data/dmem"):
        assert mode(tmp_path / d) == 0o700, d
    assert mode(tmp_path) == before


async def test_an_existing_default_store_keeps_its_modes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: int
) -> None:
    """The user made the directory and the file, and chose their modes: dmem keeps them."""
    home = tmp_path / "home"
    monkeypatch.delenv("DMEM_URL", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))
    db = Path(dmem.default_url().removeprefix("sqlite:///"))
    user_made(db, directory_mode=0o755, file_mode=0o644)
    async with dmem.open() as kv:
        await kv.set("k", 1)
        assert await kv.get("k") == 1
    assert (mode(db.parent), mode(db)) == (0o755, 0o644)
