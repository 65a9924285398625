"""The KV and vector conformance suites on embedded (persistent) and server Chroma.

Key-value stores are opened with ``max_value_bytes`` at 5 MiB, a limit the suite can send a
value over (``batch.refused``); the provider must have ``footprint()`` (``storage.bounded``) and
the contract v1.1 operations, so none of their clauses may be reported as not run.
A test's odd key-value stores share the process's Chroma client, its even ones open their own
(``alternating``), so the multi-connection clauses still race over independent clients.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import dmem_conformance
import pytest
from dmem import Cache, Compression
from dmem.middleware import Encryption
from dmem_conformance.testkit import alternating_factory

# Embedded Chroma also runs under the whole chain (the server is the same provider over HTTP,
# and runs plain): values compressed, then encrypted with a random key a run, behind a Cache
# on Chroma's polling invalidation channel where it has one.
CHAINS = {
    "plain": (),
    "cache+compression+encryption": (
        Cache(),
        Compression(threshold=16),
        Encryption(keys={"k1": os.urandom(32)}),
    ),
}

# Short timeouts: the suite's "backend down" test must not wait long.
_FAST = {"timeout": 5.0}
_KV_OPTIONS = {**_FAST, "max_value_bytes": 5 * 1024 * 1024}


class _Unreachable:
    @pytest.fixture
    def unreachable_store_factory(self, chroma_down_url: str) -> dmem_conformance.StoreFactory:
        return dmem_conformance.url_factory(chroma_down_url, timeout=2.0)


class _KV(_Unreachable):
    # Every optional member: footprint, max_value_bytes and the v1.1 operations.
    requires_members: ClassVar[frozenset[str]] = dmem_conformance.OPTIONAL_MEMBERS


class TestChromaEmbeddedKV(_KV, dmem_conformance.KVSuite):
    @pytest.fixture(params=list(CHAINS.values()), ids=list(CHAINS))
    def middleware(self, request: pytest.FixtureRequest) -> Sequence[Any]:
        chain: Sequence[Any] = request.param
        return chain

    @pytest.fixture
    def store_factory(self, chroma_data_dir: Path) -> dmem_conformance.StoreFactory:
        return alternating_factory(f"chroma:///{chroma_data_dir}", **_KV_OPTIONS)


class TestChromaServerKV(_KV, dmem_conformance.KVSuite):
    @pytest.fixture
    def store_factory(self, chroma_server_url: str) -> dmem_conformance.StoreFactory:
        return alternating_factory(chroma_server_url, **_KV_OPTIONS)


class TestChromaEmbeddedVectors(dmem_conformance.VectorSuite):
    @pytest.fixture
    def vector_store_factory(self, chroma_data_dir: Path) -> dmem_conformance.VectorStoreFactory:
        return dmem_conformance.vector_url_factory(f"chroma:///{chroma_data_dir}", **_FAST)


class TestChromaServerVectors(dmem_conformance.VectorSuite):
    @pytest.fixture
    def vector_store_factory(self, chroma_server_url: str) -> dmem_conformance.VectorStoreFactory:
        return dmem_conformance.vector_url_factory(chroma_server_url, **_FAST)
