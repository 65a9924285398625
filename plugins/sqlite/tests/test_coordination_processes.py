"""get_or_set(lock=True) and Store.lock across processes, on a SQLite file and PostgreSQL.

The tests are dmem_conformance.processes' (four real processes, one factory call among them,
one lock holder at a time); this module gives them the URLs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dmem_conformance.processes import ProcessCoordinationTests


class TestSqlAcrossProcesses(ProcessCoordinationTests):
    @pytest.fixture(params=["sqlite", "postgresql"])
    def url(self, request: pytest.FixtureRequest, tmp_path: Path) -> str:
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / 'coord.db'}"
        pytest.importorskip("asyncpg")
        base: str = request.getfixturevalue("postgres_url")
        return f"{base}{'&' if '?' in base else '?'}table=dmem_coord"
