"""dmem-redis logs reconnects and failed attempts at DEBUG on ``dmem.redis``, no secret."""

from __future__ import annotations

import logging

import dmem
import pytest
from redis_servers import RedisServer


async def test_a_restart_is_logged_as_a_reconnect(
    restartable_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dmem")
    async with dmem.open(restartable_redis.url, timeout=5) as store:
        await store.set("secret-key", "secret-value")
        restartable_redis.kill()
        restartable_redis.start()
        assert await store.get("secret-key") == "secret-value"  # AOF kept it
        await store.set("secret-key", "secret-value")
    lines = [r for r in caplog.records if r.name == "dmem.redis"]
    assert lines, caplog.text
    assert any(
        "reconnecting" in r.getMessage() or "attempt failed" in r.getMessage() for r in lines
    ), caplog.text
    assert "secret" not in caplog.text
    assert restartable_redis.password is None or restartable_redis.password not in caplog.text
