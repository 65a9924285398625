"""Chroma fixtures: a throwaway ``chroma run`` server per session, embedded data dirs.

``DMEM_TEST_CHROMA_URL`` (e.g. ``chroma+http://127.0.0.1:8000``) points the
server tests at an existing Chroma instead. When no server can be started or
reached, the tests call ``backend_missing`` (skip locally, fail in CI).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dmem_conformance._env import backend_missing

_STARTUP_SECONDS = 90.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


@pytest.fixture(scope="session")
def chroma_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``chroma+http://127.0.0.1:PORT`` of a server started for this session."""
    given = os.environ.get("DMEM_TEST_CHROMA_URL")
    if given:
        yield given
        return
    cli = _chroma_cli()
    if cli is None:
        backend_missing("the chroma CLI is not installed (pip install chromadb)")
    port = free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log = (data / "server.log").open("wb")
    process = subprocess.Popen(
        [cli, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    try:
        deadline = time.monotonic() + _STARTUP_SECONDS
        while not _heartbeat("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (data / "server.log").read_text(errors="replace")[-2000:]
                backend_missing(f"chroma run did not come up on port {port}: {tail}")
            time.sleep(0.2)
        yield f"chroma+http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def chroma_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedded data directory per session; tests isolate by namespace (collection)."""
    return tmp_path_factory.mktemp("chroma-embedded")


@pytest.fixture
def chroma_down_url() -> str:
    """A Chroma URL on a loopback port nothing listens on: connections are refused at once."""
    return f"chroma+http://127.0.0.1:{free_port()}"
