"""The sync API (dmem.open_sync & co, dmem.run_sync) on memory, SQLite files and redis-server.

- The whole KV conformance suite through the blocking API: ``tests/sync_adapter.py`` gives
  the suite async Stores whose every call runs a ``SyncStore`` method in a worker thread, on
  SQLite and Redis, plain and under Cache + Compression, as the backends' own conformance
  modules run it.
- Many threads at once (mixed operations, results checked), the same results and errors as
  the async API, ``SyncCallInLoopError``, fork, the exit hook, ``scan`` closing, single
  flight and locks across threads, ``with_namespace``, the vector store and MemorySystem.

Nothing is mocked: a real SQLite file, a real redis-server (``DMEM_TEST_REDIS_URL`` or a
throwaway one on a free loopback port).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import dmem_conformance
import pytest
from dmem import Cache, Compression
from dmem_conformance import testkit

# tests/sync_adapter.py, beside this file (tests/ is not a package: pytest runs with
# --import-mode=importlib).
sys.path.insert(0, str(Path(__file__).resolve().parent))
sync_factory: Callable[..., dmem_conformance.StoreFactory] = importlib.import_module(
    "sync_adapter"
).sync_factory

REDIS_SERVER = ["redis-server", "--port", "{port}", "--bind", "127.0.0.1", "--save", ""]
redis_server = testkit.server_fixture([*REDIS_SERVER, "--appendonly", "no"], name="redis_server")


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    url = os.environ.get("DMEM_TEST_REDIS_URL")
    if url:
        return url
    server: testkit.ServerProcess = request.getfixturevalue("redis_server")
    return f"redis://127.0.0.1:{server.port}/0"


# --- the conformance suite through the sync API -------------------------------------------
# The chains the SQLite and Redis conformance modules run (plugins/*/tests).
CHAINS: dict[str, Sequence[Any]] = {
    "plain": (),
    "cache+compression": (Cache(ttl=30), Compression(threshold=16)),
}
LIMIT = {"max_value_bytes": 5 * 1024 * 1024}  # a limit batch.refused can cross
# As plugins/redis/tests/test_redis_conformance.py: "down" is quick to detect.
REDIS_FAST = {"timeout": 6.0, "connect_timeout": 1.0, "retries": 1}


class _SyncChains:
    requires_members: ClassVar[frozenset[str]] = dmem_conformance.OPTIONAL_MEMBERS

    @pytest.fixture(params=list(CHAINS.values()), ids=list(CHAINS))
    def middleware(self, request: pytest.FixtureRequest) -> Sequence[Any]:
        chain: Sequence[Any] = request.param
        return chain


class TestSyncSQLiteConformance(_SyncChains, dmem_conformance.KVSuite):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> dmem_conformance.StoreFactory:
        return sync_factory(f"sqlite:///{tmp_path / 'conformance.db'}", **LIMIT)

    @pytest.fixture
    def unreachable_store_factory(self, tmp_path: Path) -> dmem_conformance.StoreFactory:
        # A database under a regular file cannot be opened: the file-backend "server down".
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        return sync_factory(f"sqlite:///{blocker / 'x.db'}", timeout=2)


class TestSyncRedisConformance(_SyncChains, dmem_conformance.KVSuite):
    @pytest.fixture
    def store_factory(self, redis_url: str) -> dmem_conformance.StoreFactory:
        return sync_factory(redis_url, **REDIS_FAST, **LIMIT)

    @pytest.fixture
    def unreachable_store_factory(self) -> dmem_conformance.StoreFactory:
        # A port nothing listens on: connections are refused at once.
        return sync_factory(f"redis://127.0.0.1:{testkit.free_port()}/0", **REDIS_FAST)
