"""Sending a command within the socket timeout without a task per send.

redis-py bounds each send with ``asyncio.wait_for(..., socket_timeout)``. Before Python
3.12, ``wait_for`` wraps the send in a new task: every command pays a task and more turns of
the event loop, though a send to a healthy server is taken by the kernel at once. dmem always
sets ``socket_timeout`` (``timeout`` bounds every call), so every call paid it, where redis-py
used without a timeout does not (measured on ``get``, ``incr`` and ``lock``: see
docs/backends/redis.md, "Performance notes").

:class:`InlineSendTimeout` sends inline, under ``asyncio.timeout`` (``async_timeout`` where
redis-py uses it) with the same ``socket_timeout``: the same bound, and on expiry the same
outcome as redis-py's (the connection dropped, ``redis.exceptions.TimeoutError``). It applies
only to a connection that is open and has no periodic health check, so connecting and its
handshake keep redis-py's own timeouts; anything else takes redis-py's path unchanged. On
Python 3.12 and later ``wait_for`` makes no task, and this is about as fast as redis-py's path.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import redis.exceptions as rex

# The timeout redis-py itself uses: asyncio.timeout from Python 3.11.3 (it had a major bug
# before), the async-timeout package (a dependency of redis-py there) before that. The
# ignores: mypy checks for 3.10, where either import may be missing.
if sys.version_info >= (3, 11, 3):
    from asyncio import timeout as _timeout  # type: ignore[attr-defined, unused-ignore]
else:  # pragma: no cover - not the project's Python
    from async_timeout import (  # type: ignore[import-not-found, no-redef, unused-ignore]
        timeout as _timeout,
    )

__all__ = ["InlineSendTimeout", "timeout_after"]

timeout_after = _timeout  # asyncio.timeout where redis-py uses it, else async_timeout's


class InlineSendTimeout:
    """Mixin for redis-py asyncio connection classes (see the module docstring)."""

    socket_timeout: float | None
    is_connected: bool
    health_check_interval: float

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        send = super().send_packed_command  # type: ignore[misc]
        timeout = self.socket_timeout
        if not timeout or not self.is_connected or self.health_check_interval:
            await send(command, check_health)
            return
        # redis-py's wait_for is skipped while it sends; its error handling is not: a
        # cancelled (timed out) send disconnects the connection before it is re-raised.
        self.socket_timeout = None
        try:
            async with _timeout(timeout):
                await send(command, check_health)
        except (TimeoutError, asyncio.TimeoutError):  # the timeout's, once it cancelled the send
            raise rex.TimeoutError("Timeout writing to socket") from None
        finally:
            self.socket_timeout = timeout
