"""The conformance suite on a real PostgreSQL, alone, under Cache+Compression, and under
Cache+Compression+Encryption."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

import dmem_conformance
import pytest
from dmem import Cache, Compression
from dmem.middleware import Encryption
from dmem_conformance.testkit import alternating_factory
from pgserver import free_port

CHAINS: dict[str, Sequence[Any]] = {
    "plain": (),
    "cache+compression": (Cache(), Compression(threshold=16)),
    # A random key a run: values are compressed, then encrypted (docs/encryption.md).
    "cache+compression+encryption": (
        Cache(),
        Compression(threshold=16),
        Encryption(keys={"k1": os.urandom(32)}),
    ),
}


class TestPostgresConformance(dmem_conformance.KVSuite):
    requires_members: ClassVar[frozenset[str]] = dmem_conformance.OPTIONAL_MEMBERS

    @pytest.fixture(params=list(CHAINS.values()), ids=list(CHAINS))
    def middleware(self, request: pytest.FixtureRequest) -> Sequence[Any]:
        chain: Sequence[Any] = request.param
        return chain

    @pytest.fixture
    def store_factory(self, postgres_url: str) -> dmem_conformance.StoreFactory:
        pytest.importorskip("asyncpg")
        # Odd calls share the process's pool, even ones open their own (alternating).
        # A value limit (5 MiB) the suite can cross, for the batch.refused clause.
        return alternating_factory(
            postgres_url, table="dmem_conformance", pool_size=4, max_value_bytes=5 * 1024 * 1024
        )

    @pytest.fixture
    def unreachable_store_factory(self) -> dmem_conformance.StoreFactory:
        # Nothing listens on a fresh free port.
        url = f"postgresql://dmem:secret-pass@127.0.0.1:{free_port()}/none"
        return dmem_conformance.url_factory(url, timeout=2)
