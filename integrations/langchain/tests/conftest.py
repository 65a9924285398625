"""Shared fixtures of the langchain-dmem tests: real backends, nothing mocked.

* ``sqlite_url``: a SQLite file in the test's tmp dir;
* ``redis_url``, ``postgres_url``: from the repository's root ``conftest.py``
  (``DMEM_TEST_*_URL``, else throwaway servers, session);
* ``url``: each of memory, SQLite, PostgreSQL and Redis in turn (parametrized);
* ``namespace``: a namespace of the test's own, so that tests on the session's servers
  start empty and never see each other's keys.

A backend that cannot be started skips its tests, or fails them under
``DMEM_REQUIRE_BACKENDS=1``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BACKENDS = ("memory", "sqlite", "postgresql", "redis")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'langchain.db'}"


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
