"""A synchronous bridge that owns one event loop.

Hypothesis cannot run async tests or async state machines, and pytest-asyncio
setups differ from repo to repo (strict or auto mode, loop scopes). So every
suite test is a plain sync test that runs its coroutines on a :class:`LoopBridge`
it owns, and every store a test uses is created on that same loop: redis and
asyncpg connections are bound to the loop that created them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LoopBridge"]

T = TypeVar("T")


class LoopBridge:
    """Runs coroutines to completion on one private event loop, from sync code."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = asyncio.new_event_loop()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the LoopBridge is closed")
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the bridge's loop and return its result (or raise its error)."""
        try:
            loop = self.loop
        except RuntimeError:
            coro.close()
            raise
        return loop.run_until_complete(coro)

    def close(self) -> None:
        """Cancel what is left, finish async generators and the executor, close the loop."""
        loop, self._loop = self._loop, None
        if loop is None or loop.is_closed():
            return
        try:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    def __enter__(self) -> LoopBridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
