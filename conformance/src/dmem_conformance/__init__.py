"""dmem-conformance: the dmem contract (docs/contract.md) as a test suite for any backend.

Use it from a backend's tests::

    import dmem_conformance
    import pytest
    from dmem import Cache, Compression

    class TestFooConformance(dmem_conformance.KVSuite):
        # Capabilities the backend lacks, with why; only their tests may skip.
        lacks = {}

        @pytest.fixture
        def store_factory(self, foo_server) -> dmem_conformance.StoreFactory:
            # An async callable: ``await factory(namespace, *, middleware=())`` returns an
            # INITIALIZED dmem.Store on the SAME backend; each call may be a new connection.
            return dmem_conformance.url_factory(foo_server.url, timeout=2)

        # Optional: run the whole suite under middleware chains too.
        @pytest.fixture(params=[(), (Cache(), Compression(threshold=16))], ids=["plain", "cc"])
        def middleware(self, request):
            return request.param

Ports, throwaway server processes and the down twin of a URL for your fixtures:
:mod:`dmem_conformance.testkit`.

Or without writing anything: ``pytest --dmem-url=foo://...`` or
``dmem conformance foo://...`` (:func:`dmem_conformance.runner.main`).

Fixtures the suite provides (override only ``middleware`` and
``unreachable_store_factory``):

* ``store``: an initialized, EMPTY store in a unique namespace, cleared and
  closed at teardown. Hypothesis tests reuse it and ``clear()`` it per example.
* ``dmem_stores``: a pool; ``await dmem_stores.open(suffix="")`` opens another
  store (a new ``store_factory`` call) on namespace ``<test namespace><suffix>``.
* ``middleware``: the chain every store gets (default ``()``). A middleware
  spec is reusable: each store wraps a fresh provider from it.
* ``unreachable_store_factory``: default ``None``; return a factory whose
  stores point at a backend that is down, or declare ``lacks["unreachable"]``.

How it runs: every suite test is a *sync* pytest test that runs its coroutine
on an event loop the suite owns (one per test), and every store is created on
that loop. So the suite needs no pytest-asyncio configuration. Your
``store_factory`` fixture may be sync or async (pytest-asyncio), and may
depend on your own server fixtures, but it must create connections inside the
awaited call, never reuse a client made on another loop.

Capabilities (``lacks``): ``shared_connections`` (two ``store_factory`` calls
reach the same data) and ``unreachable`` (see above). Any other skip of a
suite test fails the run; ``backend_missing(reason)`` skips locally and fails
under ``DMEM_REQUIRE_BACKENDS=1``. Opting out of a test:
``test_x = dmem_conformance.xfail(KVSuite.test_x, reason="...")``; overriding
or deleting a suite test any other way fails ``test_suite_tests_not_overridden``.

Hypothesis profiles: ``ci`` (default; bounded and deterministic) and
``thorough``; choose with ``--dmem-profile`` or ``DMEM_HYPOTHESIS_PROFILE``.
Each test names its contract clause (``dmem_clause`` marker); failures and the
summary table name the clause.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import testkit
    from ._bridge import LoopBridge
    from ._clauses import CAPABILITIES, CLAUSES, OPTIONAL_MEMBERS, V1_1_OPERATIONS
    from ._env import backend_missing
    from ._factory import StoreFactory, url_factory
    from ._marks import clause, xfail
    from ._profiles import PROFILE_NAMES, profile_settings
    from .kv_suite import KVSuite
    from .stateful import KVStateMachine, run_kv_state_machine
    from .vector_suite import VectorStoreFactory, VectorSuite, brute_force, vector_url_factory

# Imported on first use: the pytest plugin lives in this package and is loaded in
# every pytest run, so ``import dmem_conformance`` itself must stay cheap.
_EXPORTS = {
    "CAPABILITIES": "._clauses",
    "CLAUSES": "._clauses",
    "OPTIONAL_MEMBERS": "._clauses",
    "V1_1_OPERATIONS": "._clauses",
    "KVStateMachine": ".stateful",
    "KVSuite": ".kv_suite",
    "LoopBridge": "._bridge",
    "PROFILE_NAMES": "._profiles",
    "StoreFactory": "._factory",
    "backend_missing": "._env",
    "clause": "._marks",
    "profile_settings": "._profiles",
    "run_kv_state_machine": ".stateful",
    "url_factory": "._factory",
    "xfail": "._marks",
    "VectorStoreFactory": ".vector_suite",
    "VectorSuite": ".vector_suite",
    "brute_force": ".vector_suite",
    "vector_url_factory": ".vector_suite",
}

__all__ = [
    "CAPABILITIES",
    "CLAUSES",
    "KVStateMachine",
    "KVSuite",
    "LoopBridge",
    "OPTIONAL_MEMBERS",
    "PROFILE_NAMES",
    "StoreFactory",
    "V1_1_OPERATIONS",
    "VectorStoreFactory",
    "VectorSuite",
    "backend_missing",
    "brute_force",
    "clause",
    "profile_settings",
    "run_kv_state_machine",
    "testkit",
    "url_factory",
    "vector_url_factory",
    "xfail",
]


def __getattr__(name: str) -> Any:
    if name == "testkit":  # a public module: ports, throwaway servers, the down twin
        return importlib.import_module(".testkit", __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dmem_conformance' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
