"""langgraph-checkpoint-conformance's validation of both savers on real backends.

Every capability it knows (put, put_writes, get_tuple, list, delete_thread and the
extended delete_for_runs, copy_thread, prune) must be detected and pass, for
``AsyncDmemSaver`` and ``DmemSaver`` on a SQLite file, PostgreSQL and Redis. Each suite gets
a fresh namespace, so ``list(None)`` sees only what that suite saved.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.conformance.report import ProgressCallbacks
from langgraph.checkpoint.dmem import AsyncDmemSaver, DmemSaver

BACKENDS = ("sqlite", "postgresql", "redis")


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> str:
    fixture = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "redis": "redis_url"}
    return str(request.getfixturevalue(fixture[request.param]))


def _namespace() -> str:
    return f"lg-conformance-{uuid.uuid4().hex}"


@pytest.mark.parametrize("saver", ["AsyncDmemSaver", "DmemSaver"])
async def test_conformance(backend_url: str, saver: str) -> None:
    async def async_saver() -> AsyncIterator[BaseCheckpointSaver[str]]:
        async with AsyncDmemSaver.from_conn_string(backend_url, namespace=_namespace()) as cp:
            yield cp

    async def sync_saver() -> AsyncIterator[BaseCheckpointSaver[str]]:
        with DmemSaver.from_conn_string(backend_url, namespace=_namespace()) as cp:
            yield cp

    factory = async_saver if saver == "AsyncDmemSaver" else sync_saver
    registered = checkpointer_test(name=f"{saver} on {backend_url.split(':')[0]}")(factory)
    failures: list[str] = []

    def on_result(capability: str, test: str, passed: bool, error: str | None) -> None:
        if not passed:
            failures.append(f"{capability}/{test}: {error}")

    report = await validate(registered, progress=ProgressCallbacks(on_test_result=on_result))
    assert not failures, "\n".join(failures)
    assert {c.value for c in ALL_CAPABILITIES} == {
        name for name, result in report.results.items() if result.detected
    }
    assert report.passed_all(), report.to_dict()
    assert report.conformance_level() == "FULL", report.to_dict()
    counts = {name: result.tests_passed for name, result in report.results.items()}
    assert all(n > 0 for n in counts.values()), counts
