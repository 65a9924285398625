"""The dmem conformance suite on standalone Redis, TLS Redis and a 3-primary Redis Cluster,
each alone, under Cache + Compression, and under Cache + Compression + Encryption.

Every store is opened with ``max_value_bytes`` at 5 MiB, a limit the suite can send a value
over (``batch.refused``); the provider must have ``footprint()`` (``storage.bounded``) and the
contract v1.1 operations (``incr``, ``compare_and_set``, ``compare_and_delete``,
``delete_by_tag``), so none of their clauses may be reported as not run.
A test's odd stores share the process's client, its even ones open their own
(``alternating``), so the multi-connection clauses still race over independent clients.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

import dmem_conformance
import pytest
from dmem import Cache, Compression
from dmem.middleware import Encryption
from dmem_conformance.testkit import alternating_factory

CHAINS = [
    (),
    (Cache(ttl=30), Compression(threshold=16)),
    # A random key a run: values are compressed, then encrypted (docs/encryption.md).
    (Cache(ttl=30), Compression(threshold=16), Encryption(keys={"k1": os.urandom(32)})),
]
CHAIN_IDS = ["plain", "cache+compression", "cache+compression+encryption"]

# The suite's timeouts wait for the backend; keep "down" fast to detect. `timeout` bounds a
# whole call: each of the two attempts waits up to 1 s to connect and 1.95 s for a reply.
_FAST = {"timeout": 6.0, "connect_timeout": 1.0, "retries": 1}
_OPTIONS = {**_FAST, "max_value_bytes": 5 * 1024 * 1024}


class _Chains:
    # Every optional member: footprint, max_value_bytes and the v1.1 operations.
    requires_members: ClassVar[frozenset[str]] = dmem_conformance.OPTIONAL_MEMBERS

    @pytest.fixture(params=CHAINS, ids=CHAIN_IDS)
    def middleware(self, request: pytest.FixtureRequest) -> Sequence[Any]:
        chain: Sequence[Any] = request.param
        return chain

    @pytest.fixture
    def unreachable_store_factory(self) -> dmem_conformance.StoreFactory:
        from redis_servers import free_port

        # A port nothing listens on: connections are refused at once.
        return dmem_conformance.url_factory(f"redis://127.0.0.1:{free_port()}/0", **_FAST)


class TestRedisConformance(_Chains, dmem_conformance.KVSuite):
    @pytest.fixture
    def store_factory(self, redis_url: str) -> dmem_conformance.StoreFactory:
        return alternating_factory(redis_url, **_OPTIONS)


class TestRedisTLSConformance(_Chains, dmem_conformance.KVSuite):
    @pytest.fixture
    def store_factory(self, redis_tls: tuple[str, dict[str, Any]]) -> dmem_conformance.StoreFactory:
        url, options = redis_tls
        return alternating_factory(url, **options, **_OPTIONS)


class TestRedisClusterConformance(_Chains, dmem_conformance.KVSuite):
    @pytest.fixture
    def store_factory(self, redis_cluster_url: str) -> dmem_conformance.StoreFactory:
        return alternating_factory(redis_cluster_url, **_OPTIONS)
