"""Sends within the socket timeout without ``asyncio.wait_for`` (``dmem_redis._send``): a
healthy send makes no task, a send the server does not take still fails within ``timeout``
and leaves the store usable."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import dmem
import pytest
from dmem_redis._send import InlineSendTimeout
from redis_servers import RedisServer

OPTIONS: dict[str, Any] = {"timeout": 1.0, "retries": 1, "retry_backoff_max": 0.2}
BOUND = 1.0 + 0.5  # timeout, and slack for a busy two-core machine


async def test_standalone_connections_send_inline(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with dmem.open(redis_url, namespace="send", share_connection=False) as kv:
        pool = kv.provider._client.connection_pool  # type: ignore[attr-defined]
        assert issubclass(pool.connection_class, InlineSendTimeout)
        await kv.set("k", 1)  # connected
        waits = 0
        real_wait_for = asyncio.wait_for

        async def counting_wait_for(*args: Any, **kwargs: Any) -> Any:
            nonlocal waits
            waits += 1
            return await real_wait_for(*args, **kwargs)

        monkeypatch.setattr(asyncio, "wait_for", counting_wait_for)
        for _ in range(10):
            assert await kv.get("k") == 1
            assert await kv.incr("n") > 0
            await kv.set("k", 1, if_not_exists=True)
        assert waits == 0, "a send went through asyncio.wait_for (a task per command)"
        await kv.clear()


async def test_a_send_the_server_does_not_take_times_out(restartable_redis: RedisServer) -> None:
    """64 MiB to a stopped server fill the socket buffers: the send itself must time out."""
    async with dmem.open(restartable_redis.url, namespace="send-stop", **OPTIONS) as kv:
        await kv.set("small", 1)
        assert restartable_redis.process is not None
        pid = restartable_redis.process.pid
        big = b"x" * (64 * 1024 * 1024)
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(dmem.ProviderUnavailableError):
                await kv.set("big", big)
            took = time.monotonic() - started
        finally:
            os.kill(pid, signal.SIGCONT)
        assert took < BOUND, f"the blocked send took {took:.2f} s"
        assert await kv.get("small") == 1, "the store did not recover"
        assert await kv.incr("n") == 1
