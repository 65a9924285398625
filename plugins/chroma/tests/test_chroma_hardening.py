"""dmem-chroma hardening: private data directories, the one meaning of ``timeout``, no secret shown.

- ``chroma:///PATH``: the directories dmem creates are 0700 whatever the umask; what
  exists keeps its mode.
- ``timeout``: a server that stops answering (SIGSTOP) makes every call fail with
  ``ProviderUnavailableError`` within ``timeout`` (plus slack), and the same store works
  again once the server does, without being re-opened.
- Secrets: a token given as an option, in the URL's query or as URL user info never
  appears in an error, a repr or a health report (Hypothesis, over a wide alphabet).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import dmem
import pytest

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o002, 0o277], ids=["umask022", "umask002", "umask277"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """022 and 002 are the usual umasks; 277 also takes the owner's write bit away."""
    value: int = request.param
    old = os.umask(value)
    try:
        yield value
    finally:
        os.umask(old)


def user_made_directory(path: Path, mode: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    return path


# --- private data directories --------------------------------------------------------------
@posix_only
async def test_a_new_data_directory_is_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: int
) -> None:
    user_made_directory(tmp_path, 0o755)
    monkeypatch.chdir(tmp_path)
    async with dmem.open("chroma:///new/dir", namespace="private") as kv:
        await kv.set("secret", "s3cr3t")
    async with dmem.open_vector("chroma:///vectors", namespace="private") as vectors:
        await vectors.upsert([dmem.VectorRecord("r", (1.0, 0.0))])
    modes = {d: oct(mode(tmp_path / d)) for d in ("new", "new/dir", "vectors")}
    assert modes == {"new": "0o700", "new/dir": "0o700", "vectors": "0o700"}
    assert mode(tmp_path) == 0o755  # not created by dmem: left alone
    # Chroma's own files inside get Chroma's modes (from the umask); the 0700 directory
    # keeps everyone else out of them.
    assert (tmp_path / "new" / "dir" / "chroma.sqlite3").is_file()


@posix_only
async def test_an_existing_data_directory_keeps_its_mode(tmp_path: Path, umask: int) -> None:
    data = user_made_directory(tmp_path / "shared", 0o750)
    async with dmem.open(f"chroma:///{data}", namespace="kept") as kv:
        await kv.set("k", 1)
        assert await kv.get("k") == 1
    assert mode(data) == 0o750
