"""The dmem logger: silent by default; at DEBUG, opens, closes and slow calls, never a secret."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import dmem
import pytest
from dmem._logging import SlowCallLog
from dmem.backends import MemoryProvider
from dmem.middleware import Wrapper


def test_the_dmem_logger_has_only_a_null_handler() -> None:
    logger = logging.getLogger("dmem")
    assert [type(h) for h in logger.handlers] == [logging.NullHandler]


async def test_open_and_close_are_logged_with_the_redacted_url(
    caplog: pytest.LogCaptureFixture, tmp_path: object
) -> None:
    caplog.set_level(logging.DEBUG, logger="dmem")
    url = f"sqlite:///{tmp_path}/log.db?namespace=n1"
    async with dmem.open(url) as store:
        await store.set("k", "secret-value")
    opened = [r.getMessage() for r in caplog.records if r.getMessage().startswith("opened")]
    closed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("closed")]
    assert opened == [f"opened {url} (namespace 'n1')"]
    assert closed == [f"closed {url} (namespace 'n1')"]
    assert "secret-value" not in caplog.text


async def test_a_url_password_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dmem")
    store = dmem.Store(MemoryProvider(), url="memory://user:Pa55w0rdXyz@host/x")
    await store.initialize()
    await store.aclose()
    assert "opened" in caplog.text
    assert "Pa55w0rdXyz" not in caplog.text


class _Slow(Wrapper):
    """A provider whose get_many takes a while (a real sleep: no backend is faked)."""

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        import asyncio

        await asyncio.sleep(0.05)
        return await self.inner.get_many(keys)


async def test_slow_calls_are_logged_without_keys_or_values(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DMEM_SLOW_CALL_MS", "20")
    caplog.set_level(logging.DEBUG, logger="dmem")
    store = dmem.Store(_Slow(MemoryProvider()), url="memory://")
    assert isinstance(store._top, SlowCallLog)
    async with store:
        await store.set("user:secret-key", "secret-value")
        await store.get_many(["user:secret-key", "other"])
    slow = [r.getMessage() for r in caplog.records if r.getMessage().startswith("slow call")]
    assert len(slow) == 1, slow
    assert slow[0].startswith("slow call: get_many of 2 item(s) took ")
    assert "secret" not in caplog.text


async def test_no_timing_layer_unless_debug_is_enabled() -> None:
    # The default (the logger at WARNING through the root): the store's chain is untouched.
    assert not logging.getLogger("dmem").isEnabledFor(logging.DEBUG)
    provider = MemoryProvider()
    store = dmem.Store(provider)
    assert store._top is provider


async def test_sqlite_purges_are_logged_without_keys(
    caplog: pytest.LogCaptureFixture, tmp_path: object
) -> None:
    import asyncio
    import time

    caplog.set_level(logging.DEBUG, logger="dmem")
    async with dmem.open(f"sqlite:///{tmp_path}/purge.db") as store:
        await store.set_many({f"secret-key-{i}": i for i in range(5)}, ttl=0.05)
        await asyncio.sleep(0.1)
        deadline = time.monotonic() + 5  # the purge rides on a write at most once a second
        while time.monotonic() < deadline and "purged" not in caplog.text:
            await store.set("other", 1)
            await asyncio.sleep(0.1)
    purged = [r for r in caplog.records if "purged" in r.getMessage()]
    assert purged, caplog.text
    assert purged[0].name == "dmem.sqlite"
    assert "purged 5 expired rows" in purged[0].getMessage()
    assert "secret-key" not in caplog.text
