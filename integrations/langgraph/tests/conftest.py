"""Shared fixtures of the langgraph-checkpoint-dmem tests: real backends, nothing mocked.

* ``sqlite_url``: a SQLite file in the test's tmp dir (function scope);
* ``redis_url``, ``postgres_url``: from the repository's root ``conftest.py``
  (``DMEM_TEST_*_URL``, else throwaway servers, session).

A backend that cannot be started skips its tests, or fails them under
``DMEM_REQUIRE_BACKENDS=1``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'langgraph.db'}"
