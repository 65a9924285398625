"""dmem-shelf passes the dmem conformance suite: every clause, the state machine included."""

from __future__ import annotations

from typing import ClassVar

import dmem_conformance
import pytest


class TestShelf(dmem_conformance.KVSuite):
    # Capabilities the backend lacks, each with the reason; only their tests may skip.
    lacks: ClassVar[dict[str, str]] = {"unreachable": "a shelf lives in this process"}

    @pytest.fixture
    def store_factory(self) -> dmem_conformance.StoreFactory:
        # Every call opens a new store on the same shelf, like a new connection to a server.
        return dmem_conformance.url_factory("shelf://conformance")
