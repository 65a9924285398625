"""Fixtures of the dmem-sqlite tests: SQLite files in temp dirs, and a real PostgreSQL.

PostgreSQL: ``DMEM_TEST_POSTGRES_URL`` when set, else a throwaway server started once
per session with initdb/pg_ctl (``pgserver.py``) on a free loopback port. When neither
works the tests skip, or fail under ``DMEM_REQUIRE_BACKENDS=1`` (CI).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pgserver import PostgresServer, throwaway


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer | None]:
    """The session's own server (None when DMEM_TEST_POSTGRES_URL is used instead)."""
    if os.environ.get("DMEM_TEST_POSTGRES_URL"):
        yield None
        return
    with throwaway() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(pg_server: PostgresServer | None) -> str:
    url = os.environ.get("DMEM_TEST_POSTGRES_URL")
    if url:
        return url
    assert pg_server is not None
    return pg_server.url
