"""Across processes: a writer SIGKILLed mid-batch leaves all or none; if_not_exists races.

Real processes on a real SQLite file (and on PostgreSQL): the child is
``proc_child.py``, run with this interpreter.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import dmem
import pytest

CHILD = str(Path(__file__).with_name("proc_child.py"))
KEYS = 10_000
T = TypeVar("T")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    pytest.importorskip("asyncpg")
    base: str = request.getfixturevalue("postgres_url")
    # A table of its own, apart from the conformance tables (each test clears it first).
    return f"{base}{'&' if '?' in base else '?'}table=dmem_proc"


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """The tests drive processes with blocking calls, so they are sync; dmem runs here."""
    return asyncio.run(coro)


async def _count(url: str, namespace: str) -> int:
    async with dmem.open(url, namespace=namespace) as kv:
        return await kv.count()


async def _clear(url: str, namespace: str) -> None:
    async with dmem.open(url, namespace=namespace) as kv:
        await kv.clear()


def _wait_for_wal_growth(db_path: str, baseline: int, timeout: float = 10.0) -> None:
    """Until the WAL holds over 1 MB of this batch's (uncommitted) pages: mid-transaction."""
    wal = Path(db_path + "-wal")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if wal.exists() and wal.stat().st_size > baseline + 1_000_000:
            return
        time.sleep(0.0005)
    pytest.fail("the child's transaction never reached the WAL")


@pytest.mark.parametrize("moment", ["at-start", "mid-transaction", "late"])
def test_sigkill_during_set_many_leaves_all_or_none(url: str, moment: str) -> None:
    # Create the schema first, so the child spends its time in the batch itself.
    _run(_clear(url, "crash"))
    child = subprocess.Popen(
        [sys.executable, CHILD, "set_many", url, str(KEYS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        db_path = url.split("sqlite:///", 1)[1] if url.startswith("sqlite") else None
        wal = Path(f"{db_path}-wal") if db_path else None
        baseline = wal.stat().st_size if wal is not None and wal.exists() else 0
        assert child.stdout.readline().strip() == "started"
        if moment == "mid-transaction" and db_path is not None:
            # Provably inside the transaction: its pages are spilling into the WAL.
            _wait_for_wal_growth(db_path, baseline)
        elif moment == "mid-transaction":
            time.sleep(0.05)
        elif moment == "late":
            time.sleep(0.25)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    count = _run(_count(url, "crash"))
    assert count in (0, KEYS), f"a killed set_many left {count} of {KEYS} keys"
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[1]
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
    # And the database takes writes again at once.
    _run(_write_after_crash(url))


async def _write_after_crash(url: str) -> None:
    async with dmem.open(url, namespace="crash") as kv:
        assert await kv.set("after", 1)
        await kv.clear()


def test_two_processes_if_not_exists_win_each_key_once(url: str, tmp_path: Path) -> None:
    _run(_clear(url, "race"))
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, CHILD, "race", url, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        time.sleep(1.0)  # both are connected and spinning on the start line
        go.write_text("go")
        outputs = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            child.kill()
            child.wait()
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, f"a racer failed: {err[-2000:]}"
    won = [json.loads(out) for out, _ in outputs]
    assert sorted(won[0] + won[1]) == [f"key:{i:03d}" for i in range(200)]
    assert not set(won[0]) & set(won[1]), "a key was won by both processes"
    owner = {key: child.pid for child, keys in zip(children, won, strict=True) for key in keys}
    stored = _run(_values(url))
    assert stored == owner, "the stored value of a key is not its winner's"


async def _values(url: str) -> dict[str, Any]:
    async with dmem.open(url, namespace="race") as kv:
        stored = await kv.get_many([f"key:{i:03d}" for i in range(200)])
        await kv.clear()
        return stored
