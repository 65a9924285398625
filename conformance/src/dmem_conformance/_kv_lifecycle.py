"""Suite tests: concurrency, health, secrets, lifecycle and an unreachable backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import dmem
import pytest
from dmem import HealthStatus, NotInitializedError, ProviderUnavailableError

from ._base import StorePool, SuiteBase
from ._factory import StoreFactory
from ._marks import clause

__all__ = ["LifecycleTests"]

UNREACHABLE_DEADLINE = 30.0  # seconds: "within the configured timeout, never a hang"


class LifecycleTests(SuiteBase):
    _dmem_suite_class: ClassVar[bool] = True

    @clause("concurrency.tasks")
    async def test_many_concurrent_tasks(self, store: dmem.Store) -> None:
        async def worker(n: int) -> None:
            key = f"w{n}"
            for step in range(5):
                assert await store.set(key, {"n": n, "step": step}, tags={"w": str(n % 3)})
                assert await store.get(key) == {"n": n, "step": step}
            await store.expire(key, 100)

        await asyncio.gather(*(worker(n) for n in range(40)))
        assert await store.count() == 40
        found = await asyncio.gather(*(store.find_by_tag("w", str(r)) for r in range(3)))
        assert sorted(k for keys in found for k in keys) == sorted(f"w{n}" for n in range(40))
        results = await asyncio.gather(*(store.delete(f"w{n}") for n in range(40)))
        assert all(results)
        assert await store.count() == 0

    @clause("health.report")
    async def test_health(self, store: dmem.Store, dmem_stores: StorePool) -> None:
        report = await store.health()
        assert isinstance(report, HealthStatus)
        assert report.status == "healthy", f"health() of a working store: {report}"
        assert report.ok
        assert isinstance(report.provider, str) and report.provider
        assert report.latency_ms is None or report.latency_ms >= 0
        assert isinstance(report.to_dict(), dict)
        closed = await dmem_stores.open()
        await closed.aclose()
        after = await closed.health()  # must not raise
        assert isinstance(after, HealthStatus) and after.status != "healthy"

    @clause("health.secrets")
    async def test_no_secrets_shown(
        self, store: dmem.Store, dmem_secrets: tuple[str, ...], store_factory: StoreFactory
    ) -> None:
        report = await store.health()
        texts = [repr(store), str(store), repr(report), str(report.to_dict()), repr(store_factory)]
        await store.aclose()
        try:
            await store.get("k")
        except NotInitializedError as exc:
            texts.append(str(exc))
        for secret in dmem_secrets:
            for text in texts:
                assert secret not in text, "a password or token shows in a repr, report or error"

    @clause("lifecycle.idempotent")
    async def test_lifecycle_idempotent(self, store: dmem.Store, dmem_stores: StorePool) -> None:
        await store.initialize()  # already initialized by the factory: a no-op
        await store.set("k", 1)
        await store.initialize()
        assert await store.get("k") == 1
        other = await dmem_stores.open()
        async with other as entered:
            assert entered is other
            await entered.set("k2", 2)
        await other.aclose()  # closing twice is fine
        with pytest.raises(NotInitializedError):
            await other.get("k2")

    @clause("lifecycle.closed")
    async def test_calls_after_close(self, dmem_stores: StorePool) -> None:
        closing = await dmem_stores.open()
        await closing.set("k", 1)
        await closing.aclose()
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: closing.get("k"),
            lambda: closing.set("k", 2),
            lambda: closing.exists("k"),
            lambda: closing.delete("k"),
            lambda: closing.keys(),
            lambda: closing.count(),
            lambda: closing.clear(),
            lambda: closing.get_many(["k"]),
            lambda: closing.set_many({"k": 1}),
            lambda: closing.ttl("k"),
            lambda: closing.find_by_tag("t", "x"),
        ]
        for call in calls:
            with pytest.raises(NotInitializedError):
                await call()
        with pytest.raises(NotInitializedError):
            [item async for item in closing.scan()]
        with pytest.raises(NotInitializedError):
            await closing.initialize()

    @clause("errors.unavailable", requires="unreachable")
    async def test_unreachable_backend(
        self, unreachable_store_factory: StoreFactory | None, dmem_namespace: str
    ) -> None:
        if unreachable_store_factory is None:
            pytest.fail(
                "provide an unreachable_store_factory fixture (stores on a backend that is "
                "down) or declare lacks={'unreachable': why}"
            )
        start = time.monotonic()
        try:
            store = await unreachable_store_factory(dmem_namespace)
        except ProviderUnavailableError:
            pass  # refusing at initialize() is as good as refusing at the first call
        else:
            try:
                with pytest.raises(ProviderUnavailableError) as info:
                    await store.set("k", 1)
                assert isinstance(info.value, ConnectionError)
                report = await store.health()
                assert report.status != "healthy", "health() of an unreachable backend"
            finally:
                await store.aclose()
        took = time.monotonic() - start
        assert took < UNREACHABLE_DEADLINE, f"an unreachable backend took {took:.1f}s to fail"
