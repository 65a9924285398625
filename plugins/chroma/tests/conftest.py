"""Chroma fixtures: a throwaway ``chroma run`` server per session, embedded data dirs.

``DMEM_TEST_CHROMA_URL`` (e.g. ``chroma+http://127.0.0.1:8000``) points the
server tests at an existing Chroma instead. When no server can be started or
reached, the tests call ``backend_missing`` (skip locally, fail in CI).
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dmem_conformance import testkit
from dmem_conformance._env import backend_missing
from dmem_conformance.testkit import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent))  # alternating.py

_STARTUP_SECONDS = 90.0

__all__ = ["chroma_run", "free_port"]


def _chroma_cli() -> str | None:
    # The CLI installed next to this interpreter (the venv), else on PATH.
    beside = Path(sys.executable).with_name("chroma")
    return str(beside) if beside.exists() else shutil.which("chroma")


def _heartbeat(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/api/v2/heartbeat", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def chroma_run(data: Path) -> testkit.ServerProcess:
    """A started ``chroma run`` on a free loopback port, its database and log in ``data``
    (ready when its heartbeat answers; stopped with SIGTERM, SIGKILL after 15 s). A server
    that cannot be started skips the test, or fails it under DMEM_REQUIRE_BACKENDS=1."""
    cli = _chroma_cli()
    if cli is None:
        backend_missing("the chroma CLI is not installed (pip install chromadb)")
    server = testkit.ServerProcess(
        [cli, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", "{port}"],
        ready=lambda s: _heartbeat(s.host, s.port),
        startup_timeout=_STARTUP_SECONDS,
        stop_timeout=15.0,
        workdir=data,
        env={"ANONYMIZED_TELEMETRY": "False"},
    )
    try:
        server.start()
    except testkit.ServerFailed as exc:
        backend_missing(f"chroma run did not come up on port {server.port}: {exc}")
    return server


@pytest.fixture(scope="session")
def start_chroma() -> Callable[[Path], testkit.ServerProcess]:
    """:func:`chroma_run`, for a test module that needs a server of its own."""
    return chroma_run


@pytest.fixture(scope="session")
def chroma_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``chroma+http://127.0.0.1:PORT`` of a server started for this session."""
    given = os.environ.get("DMEM_TEST_CHROMA_URL")
    if given:
        yield given
        return
    server = chroma_run(tmp_path_factory.mktemp("chroma-server"))
    try:
        yield f"chroma+http://127.0.0.1:{server.port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chroma_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedded data directory per session; tests isolate by namespace (collection)."""
    return tmp_path_factory.mktemp("chroma-embedded")


@pytest.fixture
def chroma_down_url() -> str:
    """A Chroma URL on a loopback port nothing listens on: connections are refused at once."""
    return f"chroma+http://127.0.0.1:{free_port()}"
