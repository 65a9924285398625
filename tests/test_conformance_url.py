"""``dmem conformance URL`` on real backends: it leaves nothing behind, and a backend that
is down gets one line and an exit code of its own, before any clause runs."""

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
from dmem_conformance.runner import EXIT_BAD_URL, EXIT_UNREACHABLE, probe
from dmem_conformance.testkit import free_port

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


def _suite(url: str) -> str:
    """The whole suite on ``url``, as ``dmem conformance URL`` runs it; it must pass."""
    done = _run("-m", "dmem_conformance.runner", url)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "clauses:" in done.stdout, done.stdout[-3000:]
    return done.stdout


def _result(table: str, clause: str) -> str:
    """The result column of ``clause`` in the runner's table."""
    for line in table.splitlines():
        if line.startswith(clause + " "):
            return line.split()[1]
    raise AssertionError(f"{clause} is not in the table:\n{table[-3000:]}")


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
    table = _suite(f"sqlite:///{db}")
    # The plugin's unreachable twin (a file under the null device) runs the down clause.
    assert _result(table, "errors.unavailable") == "passed"
    assert "partial verdict: the down-backend clause" not in table
    # Without a max_value_bytes option the provider declares no limit: batch.refused does
    # not run, and the run says so.
    assert _result(table, "batch.refused") == "skipped"
    assert "partial verdict: batch.refused did not run" in table
    with sqlite3.connect(db) as conn:
        # Every namespace the run used: the keys table and the tag index.
        rows = conn.execute("SELECT namespace, key FROM dmem_kv").fetchall()
        tags = conn.execute("SELECT count(*) FROM dmem_kv_tags").fetchone()[0]
    assert rows == [], f"the run left rows behind: {rows[:10]}"
    assert tags == 0


def test_a_redis_run_leaves_no_key(redis_server: Any) -> None:
    table = _suite(redis_server.url)
    # The plugin's unreachable twin (the same URL on a closed port) runs the down clause.
    assert _result(table, "errors.unavailable") == "passed"
    assert "partial verdict: the down-backend clause" not in table
    left = redis_server.cli("DBSIZE")
    assert left == "0", f"the run left {left} key(s): {redis_server.cli('--scan')[:2000]}"


@pytest.mark.parametrize("scheme", ["redis", "postgresql"])
def test_a_backend_that_is_down_gets_one_line(scheme: str) -> None:
    url = f"{scheme}://user:{PASSWORD}@127.0.0.1:{free_port()}/0"
    if scheme == "postgresql":
        url = url.removesuffix("/0") + "/test"
    done = _run("-m", "dmem", "conformance", url, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == EXIT_UNREACHABLE, output[-3000:]
    lines = output.splitlines()
    assert len(lines) == 1, output[-3000:]
    assert lines[0].startswith(f"cannot reach URL: {scheme}://user:***@127.0.0.1:"), lines[0]
    assert PASSWORD not in output


def test_probe(tmp_path: Path) -> None:
    assert probe("memory://probe-test") is None
    refused = probe("nosuch://x")
    assert refused is not None and refused[0] == EXIT_BAD_URL
    assert refused[1].startswith("cannot open URL: nosuch://x: ")
    refused = probe(f"sqlite:///{tmp_path}/missing.db?create=false")
    assert refused is not None and refused[0] == EXIT_BAD_URL
    assert not (tmp_path / "missing.db").exists()
    refused = probe(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0")
    assert refused is not None and refused[0] == EXIT_UNREACHABLE
    assert PASSWORD not in refused[1] and "\n" not in refused[1]


def test_unreachable_option_runs_the_down_clause_and_catches_a_live_twin(tmp_path: Path) -> None:
    # --unreachable given a URL that is up: errors.unavailable must fail (health() says
    # healthy, calls succeed), so a backend that hides an outage cannot pass by it.
    db = f"sqlite:///{tmp_path / 'up.db'}"
    done = _run("-m", "dmem", "conformance", db, "--unreachable", db, "-k", "unreachable_backend")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert _result(done.stdout, "errors.unavailable") == "FAILED"
    assert "partial verdict" not in done.stdout
