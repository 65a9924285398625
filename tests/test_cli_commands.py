"""The ``dmem`` subcommands one by one, through the real click group on real stores.

SQLite files for anything that writes (the CLI refuses to write into ``memory://``),
a port nobody listens on for a backend that is down.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from dmem.cli import main
from dmem_conformance.testkit import free_port as closed_port  # bound, then released

PASSWORD = "pw-Cli-Sekrit-91"


def invoke(*args: str, input: str | bytes | None = None) -> Result:  # noqa: A002 - click's name
    return CliRunner().invoke(main, list(args), input=input)


def ok(*args: str) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def one_error_line(result: Result) -> str:
    """The single ``error: ...`` line of a failed command (and nothing like a traceback)."""
    assert result.exit_code != 0
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


# --- reading and writing keys ------------------------------------------------------------
def test_count_tags_find_by_tag(db: str) -> None:
    ok("set", db, "user:1", '{"n": 1}', "--tag", "team=a:b", "--tag", "role=")
    ok("set", db, "user:2", "2", "--tag", "team=a:b")
    ok("set", db, "other", "3")
    assert ok("count", db) == "3\n"
    assert ok("count", db, "user:*") == "2\n"
    assert json.loads(ok("tags", db, "user:1")) == {"team": "a:b", "role": ""}
    assert ok("tags", db, "other") == "{}\n"
    assert ok("find-by-tag", db, "team", "a:b") == "user:1\nuser:2\n"
    assert ok("find-by-tag", db, "team", "nope") == ""
    line = one_error_line(invoke("tags", db, "missing"))
    assert "KeyNotFoundError" in line


def test_expire_and_persist(db: str) -> None:
    ok("set", db, "k", "1")
    assert ok("expire", db, "k", "100") == "expiry set\n"
    assert 99 < float(ok("ttl", db, "k")) <= 100
    assert ok("persist", db, "k") == "expiry removed\n"
    assert ok("ttl", db, "k") == "none\n"
    assert invoke("expire", db, "missing", "5").exit_code == 1
    assert invoke("persist", db, "missing").exit_code == 1


def test_get_meta_prints_value_ttl_and_tags(db: str) -> None:
    ok("set", db, "k", '{"a": [1, 2.0, "3"]}', "--ttl", "50", "--tag", "t=x")
    meta = json.loads(ok("get", db, "k", "--meta"))
    assert meta.pop("ttl") == pytest.approx(50, abs=5)
    assert meta == {"key": "k", "value": {"a": [1, 2.0, "3"]}, "tags": {"t": "x"}}
    assert isinstance(json.loads(ok("get", db, "k", "--meta"))["value"]["a"][1], float)
    ok("set", db, "s", "123", "--string")
    assert json.loads(ok("get", db, "s", "--meta")) == {
        "key": "s",
        "value": "123",
        "tags": {},
        "ttl": None,
    }
    assert invoke("get", db, "missing", "--meta").exit_code == 1


def test_clear_asks_first_unless_yes(db: str) -> None:
    ok("set", db, "a", "1")
    ok("set", db, "b", "2")
    declined = invoke("clear", db, input="n\n")
    assert declined.exit_code == 1 and "Remove all 2 keys" in declined.stderr
    assert ok("count", db) == "2\n"
    no_answer = invoke("clear", db, input="")  # stdin at its end: no consent
    assert no_answer.exit_code == 1
    assert ok("count", db) == "2\n"
    accepted = invoke("clear", db, input="y\n")
    assert accepted.exit_code == 0 and accepted.stdout == "2\n"
    ok("set", db, "c", "3")
    assert ok("clear", db, "--yes") == "1\n"
    assert ok("count", db) == "0\n"


def test_namespace_option_on_every_store_command(db: str) -> None:
    ok("set", db, "k", "1", "--namespace", "a", "--tag", "t=1")
    ok("set", db, "k", "2", "-n", "b")
    assert ok("get", db, "k", "-n", "a") == "1\n"
    assert ok("get", db, "k", "-n", "b") == "2\n"
    assert invoke("get", db, "k").exit_code == 1  # the default namespace is another one
    assert ok("keys", db, "-n", "a") == "k\n"
    assert ok("count", db, "-n", "a") == "1\n"
    assert ok("tags", db, "k", "-n", "a") == '{"t": "1"}\n'
    assert ok("find-by-tag", db, "t", "1", "-n", "a") == "k\n"
    assert ok("find-by-tag", db, "t", "1", "-n", "b") == ""
    ok("expire", db, "k", "100", "-n", "a")
    assert ok("ttl", db, "k", "-n", "b") == "none\n"
    ok("persist", db, "k", "-n", "a")
    assert ok("clear", db, "--yes", "-n", "b") == "1\n"
    assert ok("delete", db, "k", "-n", "a") == "1\n"
    health = json.loads(ok("health", db, "--json", "-n", "a"))
    assert health["status"] == "healthy"
    line = one_error_line(invoke("get", f"{db}?namespace=x", "k", "-n", "y"))
    assert "given both in the URL and as an argument" in line
    for command in ("copy", "export", "import", "bench"):
        assert "--namespace" in ok(command, "--help"), command


# --- what the CLI refuses -------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ("set", "memory://", "k", "1"),
        ("set", "memory://shared", "k", "1"),
        ("delete", "memory://shared", "k"),
        ("import", "memory://shared", "-"),
        ("copy", "sqlite://", "memory://shared"),
        ("clear", "memory://shared", "--yes"),
        ("expire", "memory://shared", "k", "5"),
        ("persist", "memory://shared", "k"),
    ],
    ids=lambda args: args[0],
)
def test_writes_into_memory_are_refused_with_the_reason(args: tuple[str, ...]) -> None:
    result = invoke(*args, input=b"")
    line = one_error_line(result)
    assert result.exit_code == 2
    assert "lives inside one process" in line and "lost" in line and "sqlite:///" in line


def test_reading_memory_is_allowed() -> None:
    assert invoke("keys", "memory://cli-read").exit_code == 0
    assert invoke("count", "memory://").stdout == "0\n"


@pytest.mark.parametrize(
    "args",
    [
        ("bench", "memory://", "--ops", "-5"),
        ("bench", "memory://", "--ops", "0"),
        ("bench", "memory://", "--size", "-1"),
        ("copy", "sqlite://", "sqlite://", "--batch", "0"),
        ("export", "sqlite://", "--batch", "-1"),
        ("import", "sqlite://", "-", "--batch", "0"),
        ("set", "sqlite://", "k", "1", "--ttl", "0"),
        ("set", "sqlite://", "k", "1", "--ttl", "-5"),
        ("set", "sqlite://", "k", "1", "--ttl", "nan"),
        ("expire", "sqlite://", "k", "0"),
        ("expire", "sqlite://", "k", "--", "-1"),
        ("expire", "sqlite://", "k", "inf"),
    ],
    ids=lambda args: "_".join(args[0:1] + args[-2:]),
)
def test_numeric_options_refuse_nonsense(args: tuple[str, ...]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.stderr


def test_deeply_nested_json_is_an_invalid_value(db: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    line = one_error_line(invoke("set", db, "k", deep))
    assert line == "error: InvalidValueError: value is nested deeper than 64 levels"
    line = one_error_line(invoke("set", db, "k", "[" * 65 + "]" * 65))
    assert "InvalidValueError" in line
    assert ok("set", db, "k", "[" * 64 + "]" * 64) == "written\n"
    line = one_error_line(invoke("set", db, "k", str(2**64)))
    assert "InvalidValueError" in line and "64-bit" in line
    line = one_error_line(invoke("set", db, "k", "NaN"))
    assert "InvalidValueError" in line


# --- errors ---------------------------------------------------------------------------------
def test_dmem_errors_are_one_line_without_secrets() -> None:
    port = closed_port()
    for url in (
        f"redis://user:{PASSWORD}@127.0.0.1:{port}/0",
        f"redis://127.0.0.1:{port}/0?password={PASSWORD}",
        f"postgresql://user:{PASSWORD}@127.0.0.1:{port}/test",
    ):
        for args in (("get", url, "k"), ("keys", url), ("export", url), ("count", url)):
            result = invoke(*args)
            line = one_error_line(result)
            assert result.exit_code == 1
            assert "ProviderUnavailableError" in line, line
            assert PASSWORD not in result.output
    line = one_error_line(invoke("get", "nosuch://x", "k"))
    assert "PluginNotFoundError" in line
    line = one_error_line(invoke("get", "sqlite://", ""))
    assert "InvalidKeyError" in line
    line = one_error_line(invoke("keys", "sqlite://", "[abc"))
    assert "InvalidPatternError" in line


def test_health_json_reports_a_backend_that_is_down() -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{closed_port()}/0"
    result = invoke("health", url, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["status"] == "unhealthy"
    assert report["provider"] == "redis"
    assert report["url"].startswith("redis://:***@127.0.0.1:")
    assert "ProviderUnavailableError" in report["message"]
    assert PASSWORD not in result.output
    plain = invoke("health", url)
    assert plain.exit_code == 1 and plain.stdout.startswith("unhealthy: redis cannot open")
    result = invoke("health", "nosuch://x", "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["status"] == "unhealthy"


def test_bench_namespace_must_be_empty(db: str) -> None:
    ok("set", db, "k", "1", "-n", "mine")
    result = invoke("bench", db, "-n", "mine", "--ops", "5")
    assert result.exit_code == 2 and "not empty" in result.stderr
    assert ok("get", db, "k", "-n", "mine") == "1\n"  # untouched
    assert "set_many of 5" in ok("bench", db, "-n", "scratch", "--ops", "5")
    assert ok("count", db, "-n", "scratch") == "0\n"


# --- version --------------------------------------------------------------------------------
def test_version_lists_dmem_and_each_plugin_distribution() -> None:
    lines = ok("--version").splitlines()
    assert lines[0] == f"dmem {importlib.metadata.version('dmem')}"
    expected = {
        ep.dist.name
        for ep in importlib.metadata.entry_points(group="dmem")
        if ep.dist is not None and ep.dist.name != "dmem"
    }
    assert "dmem-conformance" in expected and "dmem-sqlite" in expected
    shown = {line.split()[0]: line.split()[1] for line in lines[1:]}
    assert set(shown) == expected
    for dist, version in shown.items():
        assert version == importlib.metadata.version(dist)
