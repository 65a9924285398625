"""The ``dmem`` command on real stores: SQLite files, and the in-process memory backend
where a command only reads (the CLI refuses to write into ``memory://``: the data would
die with its process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from dmem.cli import main

URL = "memory://cli-tests"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_set_get_keys_ttl_delete(db: str) -> None:
    URL = db  # the name the assertions below always used
    assert run("set", URL, "user:1", '{"name": "Ada"}', "--ttl", "60", "--tag", "team=a:b") == (
        0,
        "written\n",
    )
    assert run("set", URL, "user:2", "123", "--string") == (0, "written\n")
    assert run("set", URL, "user:2", "1", "--nx")[0] == 1
    assert run("get", URL, "user:1") == (0, '{"name": "Ada"}\n')
    assert run("get", URL, "user:2") == (0, '"123"\n')
    assert run("keys", URL, "user:?") == (0, "user:1\nuser:2\n")
    code, out = run("ttl", URL, "user:1")
    assert code == 0 and 59 < float(out) <= 60
    assert run("ttl", URL, "user:2") == (0, "none\n")
    assert run("delete", URL, "user:1", "user:2", "user:3") == (0, "2\n")
    assert run("get", URL, "user:1")[0] == 1


def test_errors_are_one_line_without_secrets(db: str) -> None:
    code, out = run("get", "memory://u:hunter2@x?colour=1", "k")
    assert code == 1
    assert "InvalidArgumentError" in out
    assert "hunter2" not in out
    code, out = run("set", db, "k", "not json")
    assert code == 2 and "--string" in out


def test_health_json() -> None:
    code, out = run("health", URL, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["status"] == "healthy" and report["url"] == URL


def test_copy_keeps_values_tags_and_ttl(tmp_path: Path) -> None:
    src, dst = f"sqlite:///{tmp_path / 'src.db'}", f"sqlite:///{tmp_path / 'dst.db'}"
    run("set", src, "a", "[1, 2]", "--ttl", "100", "--tag", "t=1")
    run("set", src, "b", "true")
    code, out = run("copy", src, dst)
    assert code == 0 and "copied 2 keys" in out
    assert run("get", dst, "a") == (0, "[1, 2]\n")
    assert float(run("ttl", dst, "a")[1]) > 90
    assert run("tags", dst, "a") == (0, '{"t": "1"}\n')


def test_bench_reports_a_rate_per_operation() -> None:
    code, out = run("bench", "memory://cli-bench", "--ops", "50")
    assert code == 0
    rows = [line.rsplit(None, 2) for line in out.strip().splitlines()]
    rates = {name: float(rate.replace(",", "")) for name, rate, _ in rows}
    assert set(rates) == {"set", "get", "set_many of 50 (keys/s)", "get_many of 50 (keys/s)"}
    assert all(rate > 0 for rate in rates.values())
