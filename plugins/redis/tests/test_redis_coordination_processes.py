"""get_or_set(lock=True) and Store.lock across processes on one Redis (standalone and Cluster).

The tests are dmem_conformance.processes' (four real processes, one factory call among them,
one lock holder at a time); this module gives them the URLs.
"""

from __future__ import annotations

import pytest
from dmem_conformance.processes import ProcessCoordinationTests


class TestRedisAcrossProcesses(ProcessCoordinationTests):
    @pytest.fixture(params=["standalone", "cluster"])
    def url(self, request: pytest.FixtureRequest) -> str:
        name = "redis_url" if request.param == "standalone" else "redis_cluster_url"
        base: str = request.getfixturevalue(name)
        return base
