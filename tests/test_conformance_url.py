"""``dmem conformance URL`` on real backends: it leaves nothing behind."""

from __future__ import annotations

import importlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dmem_conformance._env import backend_missing

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Sekr3t-pw-4711"


def _redis_servers() -> Any:
    # The Redis plugin's tests start throwaway servers; reuse them rather than copy them.
    sys.path.insert(0, str(ROOT / "plugins" / "redis" / "tests"))
    return importlib.import_module("redis_servers")


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _suite(url: str) -> None:
    """The whole suite on ``url``, as ``dmem conformance URL`` runs it; it must pass."""
    done = _run("-m", "dmem_conformance.runner", url)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "clauses:" in done.stdout, done.stdout[-3000:]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Any]:
    servers = _redis_servers()
    reason = servers.have_redis()
    if reason:
        backend_missing(reason)
    server = servers.RedisServer(tmp_path / "redis", password=PASSWORD)
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        backend_missing(f"cannot start redis-server: {exc}")
    yield server
    server.stop()


def test_a_sqlite_run_leaves_no_row(tmp_path: Path) -> None:
    db = tmp_path / "conformance.db"
    _suite(f"sqlite:///{db}")
    with sqlite3.connect(db) as conn:
        # Every namespace the run used: the keys table and the tag index.
        rows = conn.execute("SELECT namespace, key FROM dmem_kv").fetchall()
        tags = conn.execute("SELECT count(*) FROM dmem_kv_tags").fetchone()[0]
    assert rows == [], f"the run left rows behind: {rows[:10]}"
    assert tags == 0


def test_a_redis_run_leaves_no_key(redis_server: Any) -> None:
    _suite(redis_server.url)
    left = redis_server.cli("DBSIZE")
    assert left == "0", f"the run left {left} key(s): {redis_server.cli('--scan')[:2000]}"
