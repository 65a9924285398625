"""Shared fixtures of the langchain-dmem tests: real backends, nothing mocked.

* ``sqlite_url``: a SQLite file in the test's tmp dir;
* ``redis_url``: ``DMEM_TEST_REDIS_URL``, else a throwaway redis-server (session);
* ``postgres_url``: ``DMEM_TEST_POSTGRES_URL``, else a throwaway PostgreSQL started with
  initdb/pg_ctl (session, ``plugins/sqlite/tests/pgserver.py``);
* ``url``: each of memory, SQLite, PostgreSQL and Redis in turn (parametrized);
* ``namespace``: a namespace of the test's own, so that tests on the session's servers
  start empty and never see each other's keys.

A backend that cannot be started skips its tests, or fails them under
``DMEM_REQUIRE_BACKENDS=1``.
"""

from __future__ import annotations

import importlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dmem_conformance import backend_missing, testkit

ROOT = Path(__file__).resolve().parents[3]
BACKENDS = ("memory", "sqlite", "postgresql", "redis")

REDIS_SERVER = ["redis-server", "--port", "{port}", "--bind", "127.0.0.1", "--save", ""]
redis_server = testkit.server_fixture([*REDIS_SERVER, "--appendonly", "no"], name="redis_server")


def _fixture_module(directory: str, name: str) -> Any:
    """A helper module of a plugin's tests (it starts a real server)."""
    path = str(ROOT / directory)
    if path not in sys.path:
        sys.path.insert(0, path)
    return importlib.import_module(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'langchain.db'}"


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    url = os.environ.get("DMEM_TEST_REDIS_URL")
    if url:
        return url
    server: testkit.ServerProcess = request.getfixturevalue("redis_server")
    return f"redis://127.0.0.1:{server.port}/0"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    url = os.environ.get("DMEM_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    pgserver = _fixture_module("plugins/sqlite/tests", "pgserver")
    try:
        server = pgserver.PostgresServer.start()
    except (pgserver.PostgresUnavailable, OSError) as exc:
        backend_missing(f"cannot start a throwaway PostgreSQL: {exc}")
    try:
        yield str(server.url)
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest) -> str:
    """A URL of each backend in turn; stores of one test on it share their data."""
    if request.param == "memory":
        return f"memory://langchain-{uuid.uuid4().hex}"
    fixture = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "redis": "redis_url"}
    return str(request.getfixturevalue(fixture[request.param]))


@pytest.fixture
def namespace() -> str:
    return f"langchain-test-{uuid.uuid4().hex[:12]}"
