"""The dmem conformance suite on files:// : every clause of the contract, one test each.

Run ``pytest`` (add ``--dmem-table`` for the clause-by-clause table). A failure names its
clause (``[dmem clause values.awkward] ...``) and says what it promises.
"""

from __future__ import annotations

from pathlib import Path

import dmem_conformance
import pytest


class TestFiles(dmem_conformance.KVSuite):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> dmem_conformance.StoreFactory:
        # Each call opens a new provider on the same directory, like a new connection to
        # a server; fsync stays on, as users get it.
        return dmem_conformance.url_factory(f"files://{tmp_path / 'kv'}")

    @pytest.fixture
    def unreachable_store_factory(self, tmp_path: Path) -> dmem_conformance.StoreFactory:
        # A directory cannot be "down" like a server, but it can be out of reach: here its
        # parent is a regular file (as a removed mount or a lost permission would be), and
        # opening it must fail with ProviderUnavailableError, in time.
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        return dmem_conformance.url_factory(f"files://{blocker / 'kv'}")
