"""The dmem conformance suite on Redis Sentinel (``redis+sentinel://``), alone and under
Cache + Compression: a primary, a replica and three sentinels (``redis_sentinel_set``),
the URL naming all three sentinels, so every store finds its primary through them.

Like the standalone class (test_redis_conformance.py): ``max_value_bytes`` at 5 MiB, every
optional member required, a test's odd stores on the process's shared client and its even
ones on their own (``alternating``). The down twin is the same service behind three
sentinels on ports that refuse connections.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import dmem_conformance
import pytest
from dmem import Cache, Compression
from dmem_conformance import testkit
from dmem_conformance.testkit import alternating_factory
from redis_servers import SERVICE, SentinelSet

CHAINS = [(), (Cache(ttl=30), Compression(threshold=16))]
CHAIN_IDS = ["plain", "cache+compression"]

# `timeout` bounds a whole call. With three sentinels each of the two attempts gives the
# primary 1.98 s (half to connect, half for the reply) and each sentinel 0.33 s.
_FAST: dict[str, Any] = {"timeout": 8.0, "retries": 1}
_OPTIONS = {**_FAST, "max_value_bytes": 5 * 1024 * 1024}


class TestRedisSentinelConformance(dmem_conformance.KVSuite):
    # Every optional member: footprint, max_value_bytes and the v1.1 operations.
    requires_members: ClassVar[frozenset[str]] = dmem_conformance.OPTIONAL_MEMBERS

    @pytest.fixture(params=CHAINS, ids=CHAIN_IDS)
    def middleware(self, request: pytest.FixtureRequest) -> Sequence[Any]:
        chain: Sequence[Any] = request.param
        return chain

    @pytest.fixture
    def store_factory(self, redis_sentinel_set: SentinelSet) -> dmem_conformance.StoreFactory:
        return alternating_factory(redis_sentinel_set.url, **_OPTIONS)

    @pytest.fixture
    def unreachable_store_factory(self) -> Iterator[dmem_conformance.StoreFactory]:
        # Three ports bound and never listening for the test's duration: refused at once.
        with contextlib.ExitStack() as stack:
            ports = [stack.enter_context(testkit.closed_port()) for _ in range(3)]
            hosts = ",".join(f"127.0.0.1:{port}" for port in ports)
            yield dmem_conformance.url_factory(f"redis+sentinel://{hosts}/{SERVICE}/0", **_FAST)
