"""``KVSuite``: the key-value contract as pytest test classes.

Usage (a backend's test module)::

    import dmem_conformance
    import pytest

    class TestFooConformance(dmem_conformance.KVSuite):
        @pytest.fixture
        def store_factory(self, foo_server):
            return dmem_conformance.url_factory(foo_server.url)

See the package docstring for every fixture and option.
"""

from __future__ import annotations

from typing import ClassVar

import dmem
from hypothesis import settings

from ._bridge import LoopBridge
from ._kv_arguments import ArgumentTests
from ._kv_coordination import CoordinationTests
from ._kv_expiry import ExpiryTests
from ._kv_invalidation import InvalidationTests
from ._kv_lifecycle import LifecycleTests
from ._kv_listing import ListingTests
from ._kv_storage import StorageTests
from ._kv_values import ValueTests
from ._marks import clause
from ._profiles import profile_settings
from .stateful import run_kv_state_machine

__all__ = ["KVSuite"]


class KVSuite(
    ValueTests,
    ArgumentTests,
    ExpiryTests,
    ListingTests,
    StorageTests,
    CoordinationTests,
    InvalidationTests,
    LifecycleTests,
):
    """Every clause of the key-value contract, plus the state machine and the guard."""

    _dmem_suite_class: ClassVar[bool] = True

    @clause("model.state-machine")
    def test_state_machine(
        self, dmem_bridge: LoopBridge, dmem_settings: settings, store: dmem.Store, dmem_profile: str
    ) -> None:
        run_kv_state_machine(store, dmem_bridge, profile_settings(dmem_profile, stateful=True))

    @clause("suite.guard")
    async def test_suite_tests_not_overridden(self) -> None:
        problems = type(self).dmem_override_problems()
        assert not problems, "suite tests changed without xfail(reason=...): " + "; ".join(problems)
