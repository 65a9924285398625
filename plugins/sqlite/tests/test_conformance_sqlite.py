"""The conformance suite on SQLite files, alone and under Cache+Compression."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import dmem_conformance
import pytest
from dmem import Cache, Compression
from dmem_conformance.testkit import alternating_factory

CHAINS: dict[str, Sequence[Any]] = {
    "plain": (),
    "cache+compression": (Cache(), Compression(threshold=16)),
}


class TestSQLiteConformance(dmem_conformance.KVSuite):
    requires_members: ClassVar[frozenset[str]] = dmem_conformance.OPTIONAL_MEMBERS

    @pytest.fixture(params=list(CHAINS.values()), ids=list(CHAINS))
    def middleware(self, request: pytest.FixtureRequest) -> Sequence[Any]:
        chain: Sequence[Any] = request.param
        return chain

    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> dmem_conformance.StoreFactory:
        # Every call opens a new provider on the same file: odd ones on the worker thread
        # the process shares, even ones on a thread + connection of their own (alternating).
        # A value limit (5 MiB) the suite can cross, for the batch.refused clause.
        return alternating_factory(
            f"sqlite:///{tmp_path / 'conformance.db'}", max_value_bytes=5 * 1024 * 1024
        )

    @pytest.fixture
    def unreachable_store_factory(self, tmp_path: Path) -> dmem_conformance.StoreFactory:
        # A database whose parent "directory" is a regular file cannot be opened: the
        # file-backend analogue of a server that is down.
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        return dmem_conformance.url_factory(f"sqlite:///{blocker / 'x.db'}", timeout=2)
