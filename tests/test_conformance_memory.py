"""The memory backend passes the conformance suite, alone and under every middleware chain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import dmem_conformance
import pytest
from dmem import Cache, Compression

# Each a fresh spec list: a spec is reusable, every store wraps a fresh provider from it.
CHAINS: dict[str, Sequence[Any]] = {
    "plain": (),
    "cache": (Cache(),),
    "compression": (Compression(threshold=16),),
    "cache+compression": (Cache(), Compression(threshold=16)),
    "compression+cache": (Compression(threshold=16), Cache()),
}


class TestMemoryConformance(dmem_conformance.KVSuite):
    lacks: ClassVar[dict[str, str]] = {
        "unreachable": "the memory backend is in-process: it cannot be down"
    }
    requires_members: ClassVar[frozenset[str]] = dmem_conformance.OPTIONAL_MEMBERS

    @pytest.fixture(params=list(CHAINS.values()), ids=list(CHAINS))
    def middleware(self, request: pytest.FixtureRequest) -> Sequence[Any]:
        chain: Sequence[Any] = request.param
        return chain

    @pytest.fixture
    def store_factory(self) -> dmem_conformance.StoreFactory:
        # memory://NAME: every store of this process opened on NAME shares one backend,
        # so second connections and other namespaces see the same data, as on a server.
        # A value limit (5 MiB) the suite can cross, for the batch.refused clause.
        return dmem_conformance.url_factory("memory://dmem-conformance?max_value_bytes=5242880")
