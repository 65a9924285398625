"""Automatic pipelining: the commands concurrent callers send while the client is busy go
out together, in one redis-py pipeline (see ``dmem.coalescing`` for when a batch forms).

One :class:`Pipeliner` per shared client, so the stores of every namespace on a server
batch together. A command is sent alone, at once, while a slot is free (``_SLOTS``); those
that arrive while every slot is busy wait for the next batch. In a batch:

- a run of consecutive ``GET``s becomes one ``MGET`` (standalone and Sentinel; in a Cluster
  the keys of one ``MGET`` must share a slot, so each ``GET`` stays a command), and the
  other commands keep their place, so the server runs them in the order they arrived;
- the pipeline is redis-py's, not transactional: one write per connection (per node in a
  Cluster, where redis-py's cluster pipeline also follows MOVED and ASK), redis-py's retry
  and reconnect exactly as for a lone command;
- every caller gets its own outcome: its reply, its own error reply, or, when the whole
  pipeline fails (the server died mid-pipeline), a ``ProviderError`` of its own;
- ``timeout`` still bounds every call, its wait for the batch included: a batch must end by
  its oldest command's arrival plus ``timeout``, or its callers get
  ``ProviderUnavailableError`` (while a server hangs, the lone commands in the slots take up
  to ``timeout`` to fail; the calls queued behind them must not take that again).

Only commands that the lone path may re-send after a lost reply come here (reads, plain
sets, deletes, scripts with no "once" semantics); ``SET NX`` and the coordination scripts,
which must never be re-sent, keep ``execute_once``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.exceptions as rex
from dmem.coalescing import Coalescer
from redis.asyncio.cluster import RedisCluster

from ._client import map_error
from ._config import RedisConfig
from ._scripts import Script
from ._send import timeout_after

__all__ = ["Command", "Pipeliner"]

# (the command's arguments, the script an EVALSHA runs or None, the loop's time when the
# caller queued it)
Command = tuple[tuple[Any, ...], "Script | None", float]

# Commands or batches in flight at once. One would leave the server idle while the client
# parses a batch's replies and the callers run; two overlap them (measured with 200 tasks:
# docs/backends/redis.md, "Automatic pipelining").
_SLOTS = 2
# The most commands in one batch; the rest wait for the next (a bound on one write's size).
_MAX_BATCH = 512
_ERRORS = (rex.RedisError, OSError, asyncio.TimeoutError)


class Pipeliner:
    """Batches the commands of one client's callers while the client is busy."""

    def __init__(self, client: Any, config: RedisConfig) -> None:
        self._client = client
        self._config = config
        self._merge_gets = not isinstance(client, RedisCluster)
        self.coalescer: Coalescer[Command, Any] = Coalescer(
            self._run, slots=_SLOTS, max_batch=_MAX_BATCH
        )

    async def _run(self, commands: list[Command]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        # where[i]: (index of command i's reply in the pipeline, its place in an MGET or -1)
        where: list[tuple[int, int]] = []
        mget: list[Any] | None = None  # the MGET being built from a run of GETs
        queued = 0
        for args, _, _ in commands:
            if self._merge_gets and args[0] == "GET":
                if mget is None:
                    mget = ["MGET"]
                    queued += 1
                mget.append(args[1])
                where.append((queued - 1, len(mget) - 2))
                continue
            if mget is not None:
                pipe.execute_command(*mget)
                mget = None
            pipe.execute_command(*args)
            queued += 1
            where.append((queued - 1, -1))
        if mget is not None:
            pipe.execute_command(*mget)
        left = min(queued_at for _, _, queued_at in commands) + self._config.timeout
        left -= asyncio.get_running_loop().time()
        try:
            if left <= 0:
                raise TimeoutError("the call's timeout passed while it waited for a batch")
            async with timeout_after(left):
                replies: list[Any] = await pipe.execute(raise_on_error=False)
        except _ERRORS as exc:
            return [map_error(exc, self._config) for _ in commands]
        outcomes: list[Any] = []
        for (args, script, _), (index, place) in zip(commands, where, strict=True):
            reply = replies[index]
            if place >= 0 and not isinstance(reply, BaseException):
                reply = reply[place]
            elif isinstance(reply, rex.NoScriptError) and script is not None:
                # First use on this server (or it restarted, failed over): EVAL caches it.
                reply = await self._eval_source(script, args)
            outcomes.append(reply)
        return outcomes

    async def _eval_source(self, script: Script, args: Sequence[Any]) -> Any:
        try:
            return await self._client.execute_command("EVAL", script.source, *args[2:])
        except _ERRORS as exc:
            return exc
