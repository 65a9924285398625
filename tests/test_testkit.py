"""dmem_conformance.testkit: ports, throwaway server processes, the down twin of a URL, and
the secret-leak checks (the project's own fixtures use them too)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dmem_conformance import testkit

HTTP_SERVER = [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"]


def test_free_and_closed_ports() -> None:
    port = testkit.free_port()
    assert 0 < port < 65536 and not testkit.port_accepts(port)
    with testkit.closed_port() as closed, socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", closed)) != 0  # refused while the block runs


def test_the_plugin_fixtures(dmem_free_port: int, dmem_closed_port: int) -> None:
    assert dmem_free_port != dmem_closed_port
    assert not testkit.port_accepts(dmem_closed_port)


def test_a_server_process_waits_until_ready_and_stops() -> None:
    with testkit.ServerProcess(HTTP_SERVER) as server:
        assert server.running and testkit.port_accepts(server.port)
        assert f"{server.port}" in " ".join(server.argv)
        pid = server.pid
    assert not server.running and pid is not None
    assert not testkit.port_accepts(server.port)
    assert not server.workdir.exists()  # its own temporary directory is gone


def test_a_server_that_exits_fails_with_its_output() -> None:
    command = [sys.executable, "-c", "import sys; print('no config here'); sys.exit(3)"]
    with pytest.raises(testkit.ServerFailed, match=r"exited with 3(.|\n)*no config here"):
        testkit.ServerProcess(command).start()


def test_a_server_never_ready_and_a_missing_binary_fail() -> None:
    never = testkit.ServerProcess(HTTP_SERVER, ready=lambda s: False, startup_timeout=0.5)
    with pytest.raises(testkit.ServerFailed, match="timed out"):
        never.start()
    assert not never.running
    with pytest.raises(testkit.ServerFailed, match="not installed"):
        testkit.ServerProcess(["dmem-no-such-server-binary"]).start()


def test_server_fixture_skips_or_fails_in_ci(tmp_path: Path) -> None:
    (tmp_path / "test_servers.py").write_text(
        textwrap.dedent(
            f"""
            from dmem_conformance import testkit

            web = testkit.server_fixture({HTTP_SERVER!r}, name="web")
            gone = testkit.server_fixture(["dmem-no-such-server-binary"], name="gone")

            def test_up(web):
                assert testkit.port_accepts(web.port)

            def test_gone(gone):
                pass
            """
        )
    )

    def summary(required: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DMEM_")}
        env["DMEM_REQUIRE_BACKENDS"] = required
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
        done = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        return done.stdout.strip().splitlines()[-1]

    assert re.match(r"1 passed, 1 skipped", summary("")), summary("")
    assert re.match(r"1 passed, 1 error", summary("1")), summary("1")


def test_the_down_twin_is_the_plugins() -> None:
    assert testkit.unreachable_url("redis://127.0.0.1:6379/0?timeout=2") == (
        "redis://127.0.0.1:1/0?timeout=2"
    )
    with pytest.raises(LookupError, match="declares no unreachable twin"):
        testkit.unreachable_url("memory://x")
    factory = testkit.unreachable_factory("redis://:Sekrit-pw@127.0.0.1:6379/0")
    assert "Sekrit" not in repr(factory)


def test_assert_secret_hidden() -> None:
    testkit.assert_secret_hidden("Qx7#vW2!", ["redis://u:***@h (12.5 ms)", "latency_ms=12.3"])
    with pytest.raises(AssertionError, match="'x7#v' of the secret"):
        testkit.assert_secret_hidden("Qx7#vW2!", ["bad port 'x7#v'"])
    with pytest.raises(AssertionError, match="shows in"):  # its percent-encoded form too
        testkit.assert_secret_hidden("Qx7#vW2!", ["Qx7%23vW2%21"])
    testkit.assert_secret_hidden("Qx7#vW2!", ["bad port 'x7#v'"], fixed={"x7#v"})
    error = ValueError("outer")
    error.__cause__ = KeyError("inner")
    assert {"outer", "'inner'"} <= set(testkit.exception_texts(error))
