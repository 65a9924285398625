"""Fixtures of real backends for the test folders under the root that have none of their own.

``tests/`` and ``integrations/*/tests/`` share these (the plugins' test folders define their
own, a password-protected Redis among them, which take precedence there):

* ``redis_server``, ``redis_url``: ``DMEM_TEST_REDIS_URL``, else a throwaway redis-server on a
  free loopback port (session);
* ``postgres_url``: ``DMEM_TEST_POSTGRES_URL``, else a throwaway PostgreSQL started with
  initdb/pg_ctl (session; ``plugins/sqlite/tests/pgserver.py``).

A backend that cannot be started skips its tests, or fails them under
``DMEM_REQUIRE_BACKENDS=1``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dmem_conformance import backend_missing, testkit

ROOT = Path(__file__).resolve().parent
REDIS_SERVER = ["redis-server", "--port", "{port}", "--bind", "127.0.0.1", "--save", ""]

redis_server = testkit.server_fixture([*REDIS_SERVER, "--appendonly", "no"], name="redis_server")


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
    helpers = str(ROOT / "plugins" / "sqlite" / "tests")
    if helpers not in sys.path:
        sys.path.insert(0, helpers)
    pgserver = importlib.import_module("pgserver")
    try:
        server = pgserver.PostgresServer.start()
    except (pgserver.PostgresUnavailable, OSError) as exc:
        backend_missing(f"cannot start a throwaway PostgreSQL: {exc}")
    try:
        yield str(server.url)
    finally:
        server.stop()
