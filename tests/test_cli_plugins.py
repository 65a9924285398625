"""Subcommands that plugins bring, through the ``dmem_register_commands`` hook.

``dmem conformance`` comes from the dmem-conformance distribution this way; throwaway
plugins "installed" as a module plus a ``*.dist-info`` folder on ``PYTHONPATH`` (as
tests/test_plugins.py does) show that a plugin adds commands, cannot replace a core one,
and that a broken hook breaks nothing else. Each of those runs ``python -m dmem`` in a
subprocess, so the process-wide registry starts fresh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from dmem.cli import main

ROOT = Path(__file__).resolve().parent.parent


def dmem_process(
    *args: str, site: Path | None = None, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "DMEM_LOAD_PLUGINS"}
    if site is not None:
        environ["PYTHONPATH"] = str(site)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "dmem", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _install(site: Path, name: str, source: str) -> None:
    (site / f"{name}.py").write_text(textwrap.dedent(source))
    dist = site / f"{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[dmem]\n{name} = {name}\n")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    _install(
        tmp_path,
        "hello_plugin",
        """
        import click
        import dmem

        @dmem.hookimpl
        def dmem_register_commands(cli):
            @cli.command()
            @click.argument("name")
            def hello(name):
                "Say hello."
                click.echo(f"hello {name}")
        """,
    )
    _install(
        tmp_path,
        "greedy_plugin",
        """
        import click
        import dmem

        @dmem.hookimpl
        def dmem_register_commands(cli):
            @cli.command(name="get")
            def hijack():
                click.echo("hijacked")

            @cli.command()
            def greedy():
                click.echo("greedy")
        """,
    )
    _install(
        tmp_path,
        "raising_plugin",
        """
        import dmem

        @dmem.hookimpl
        def dmem_register_commands(cli):
            raise RuntimeError("commands blew up")
        """,
    )
    return tmp_path


def test_plugin_commands_are_added_never_replace_core_ones(site: Path) -> None:
    done = dmem_process("hello", "Ada", site=site)
    assert (done.returncode, done.stdout) == (0, "hello Ada\n"), done.stderr
    assert dmem_process("greedy", site=site).stdout == "greedy\n"
    got = dmem_process("get", "sqlite://", "k", site=site)
    assert got.returncode == 1 and "hijacked" not in got.stdout + got.stderr
    assert "not found" in got.stderr
    listing = dmem_process("--help", site=site).stdout
    assert "hello" in listing and "greedy" in listing and "conformance" in listing
    plugins = {
        p["name"]: p for p in json.loads(dmem_process("plugins", "--json", site=site).stdout)
    }
    assert plugins["hello_plugin"]["commands"] == ["hello"]
    assert plugins["hello_plugin"]["error"] is None
    assert plugins["greedy_plugin"]["commands"] == ["greedy"]
    assert plugins["greedy_plugin"]["error"] == "command 'get' already exists; ignored"
    assert plugins["raising_plugin"]["error"] == "RuntimeError: commands blew up"
    assert plugins["conformance"]["commands"] == ["conformance"]
    assert plugins["conformance"]["distribution"] == "dmem-conformance"


def test_the_core_cli_does_not_import_the_suite() -> None:
    source = "\n".join(
        path.read_text() for path in (ROOT / "core" / "src" / "dmem").glob("*cli*.py")
    )
    assert "dmem_conformance" not in source
    code = (
        "import sys, dmem.cli; "
        "assert not [m for m in sys.modules if m.startswith('dmem_conformance')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_conformance_comes_from_the_plugin() -> None:
    with click.Context(main) as ctx:
        command = main.get_command(ctx, "conformance")
    assert command is not None and command.callback is not None
    assert command.callback.__module__ == "dmem_conformance.cli_plugin"
    result = CliRunner().invoke(main, ["conformance", "--help"])
    assert result.exit_code == 0
    assert "--profile [ci|thorough]" in result.stdout and "PYTEST_ARGS" in result.stdout


def test_conformance_profile_lists_its_choices() -> None:
    result = CliRunner().invoke(main, ["conformance", "memory://x", "--profile", "fast"])
    assert result.exit_code == 2
    assert "'fast' is not one of 'ci', 'thorough'" in result.stderr


@pytest.mark.parametrize("url", ["memory://", "memory:///", "memory://?namespace=x"])
def test_conformance_on_private_memory_explains_the_shareable_form(url: str) -> None:
    result = CliRunner().invoke(main, ["conformance", url])
    assert result.exit_code == 2
    assert "memory://NAME is shared" in result.stderr
    assert "dmem conformance memory://conformance" in result.stderr
    assert "clause" in result.stderr and "passed" not in result.output  # the suite never ran


def test_conformance_runs_the_suite_on_a_named_memory_store() -> None:
    # As a process: the suite runs pytest in-process, which is best kept out of this one.
    done = dmem_process("conformance", "memory://cli-conformance", "-k", "if_not_exists_with_ttl")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "passed" in done.stdout and "partial run:" in done.stdout


def test_a_missing_plugin_command_names_its_extra() -> None:
    done = dmem_process("conformance", "memory://x", "-k", "y", DMEM_LOAD_PLUGINS="")
    assert done.returncode == 2
    assert done.stderr.startswith("error: 'dmem conformance' comes with a plugin")
    assert "pip install 'dmem[conformance]'" in done.stderr
    unknown = dmem_process("no-such-command")
    assert unknown.returncode == 2 and "No such command" in unknown.stderr
