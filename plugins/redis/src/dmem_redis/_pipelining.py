"""Automatic pipelining: the commands concurrent callers send while the client is busy go
out together, in one redis-py pipeline (see ``dmem.coalescing`` for when a batch forms).

One :class:`Pipeliner` per shared client, so the stores of every namespace on a server
batch together. A command is sent alone, at once, while a slot is free (``_SLOTS``); those
that arrive while every slot is busy wait for the next batch. In a batch:

- a run of consecutive ``GET``s becomes one ``MGET``, and a run of consecutive plain sets
  (``set_plain``: no tags, no if_not_exists) of one namespace and ttl one ``set_many_plain``
  (standalone and Sentinel; in a Cluster the keys of one command must share a slot, so
  nothing is merged there); the other commands keep their place, so the server runs them
  in the order they arrived (within a run too: a key set twice keeps the later value);
- the pipeline is redis-py's, not transactional: one write per connection (per node in a
  Cluster, where redis-py's cluster pipeline also follows MOVED and ASK), redis-py's retry
  and reconnect exactly as for a lone command;
- every caller gets its own outcome: its reply, its own error reply, or, when the whole
  pipeline fails (the server died mid-pipeline), a copy of that error of its own, which its
  call maps as it maps a lone command's;
- ``timeout`` still bounds every call, its wait for the batch included: a batch must end by
  its oldest command's arrival plus ``timeout``, or its callers get
  ``ProviderUnavailableError`` (while a server hangs, the lone commands in the slots take up
  to ``timeout`` to fail; the calls queued behind them must not take that again).

A write of a value over ``BATCH_VALUE_LIMIT`` (1 MiB) always goes alone, so one caller's
large value never makes a batch of others' fail, and no batch nears the server's
``client-query-buffer-limit``.

Only commands that the lone path may re-send after a lost reply come here (reads, plain
sets, deletes, scripts with no "once" semantics); ``SET NX`` and the coordination scripts,
which must never be re-sent, keep ``execute_once``.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from typing import Any

import redis.exceptions as rex
from dmem.coalescing import Coalescer
from redis.asyncio.cluster import RedisCluster

from ._config import RedisConfig
from ._scripts import SET_MANY_PLAIN, SET_PLAIN, Script
from ._send import timeout_after

__all__ = ["BATCH_VALUE_LIMIT", "Command", "Pipeliner"]

# (the command's arguments, the script an EVALSHA runs or None, the loop's time when the
# caller queued it)
Command = tuple[tuple[Any, ...], "Script | None", float]

# Commands or batches in flight at once. One would leave the server idle while the client
# parses a batch's replies and the callers run; two overlap them (measured with 200 tasks:
# docs/backends/redis.md, "Automatic pipelining").
_SLOTS = 2
# The most commands in one batch; the rest wait for the next. With values over
# BATCH_VALUE_LIMIT sent alone, a batch stays well under Redis's client-query-buffer-limit
# (1 GiB by default: a connection whose pending commands exceed it is closed, and every
# caller of the batch would fail).
_MAX_BATCH = 512
BATCH_VALUE_LIMIT = 1024 * 1024
_ERRORS = (rex.RedisError, OSError, asyncio.TimeoutError)


class _Sent:
    """One command of a batch's pipeline, and the callers (indices in the batch) it serves."""

    __slots__ = ("args", "members", "run_key", "script")

    def __init__(self, args: tuple[Any, ...], script: Any, run_key: Any, first: int) -> None:
        self.args = args
        self.script = script
        self.run_key = run_key
        self.members = [first]


class Pipeliner:
    """Batches the commands of one client's callers while the client is busy."""

    def __init__(self, client: Any, config: RedisConfig) -> None:
        self._client = client
        self._config = config
        # In a Cluster the keys of one command must share a slot: nothing is merged there.
        self._merge = not isinstance(client, RedisCluster)
        self.coalescer: Coalescer[Command, Any] = Coalescer(
            self._run, slots=_SLOTS, max_batch=_MAX_BATCH
        )

    def _run_key(self, args: tuple[Any, ...]) -> Any:
        """What a command must share with its neighbours to be merged with them (None: it is
        sent as it is): a GET, or a plain set of the same namespace and ttl."""
        if not self._merge:
            return None
        if args[0] == "GET":
            return "GET"
        if args[0] == "EVALSHA" and args[1] == SET_PLAIN.sha:
            return args[4], args[5]  # (P, ttl) of SET_PLAIN's (vk, P, ttl, value)
        return None

    def _plan(self, commands: list[Command]) -> list[_Sent]:
        """The commands to send: runs of consecutive GETs as one MGET, of consecutive plain
        sets (same namespace and ttl) as one ``set_many_plain``; the rest as they are, in
        their order."""
        plan: list[_Sent] = []
        last: _Sent | None = None
        for i, (args, script, _) in enumerate(commands):
            run_key = self._run_key(args)
            if run_key is not None and last is not None and last.run_key == run_key:
                last.members.append(i)
                continue
            last = _Sent(args, script, run_key, i)
            plan.append(last)
        return plan

    def _merged(self, sent: _Sent, commands: list[Command]) -> tuple[tuple[Any, ...], Any]:
        """(arguments, script) of the command that serves ``sent``'s members."""
        if len(sent.members) == 1:
            return sent.args, sent.script
        members = [commands[i][0] for i in sent.members]
        if sent.run_key == "GET":
            return ("MGET", *[args[1] for args in members]), None
        prefix, ttl = sent.run_key
        keys = [args[3] for args in members]
        values = [args[6] for args in members]
        merged = ("EVALSHA", SET_MANY_PLAIN.sha, len(keys), *keys, prefix, ttl, *values)
        return merged, SET_MANY_PLAIN

    async def _run(self, commands: list[Command]) -> list[Any]:
        plan = self._plan(commands)
        pipe = self._client.pipeline(transaction=False)
        sent_args: list[tuple[tuple[Any, ...], Any]] = []
        for sent in plan:
            args, script = self._merged(sent, commands)
            sent_args.append((args, script))
            pipe.execute_command(*args)
        left = min(queued_at for _, _, queued_at in commands) + self._config.timeout
        left -= asyncio.get_running_loop().time()
        try:
            if left <= 0:
                raise rex.TimeoutError("the call's timeout passed while it waited for a batch")
            async with timeout_after(left):
                replies: list[Any] = await pipe.execute(raise_on_error=False)
        except asyncio.TimeoutError:  # the deadline's
            return [rex.TimeoutError("Timeout waiting for a pipelined reply") for _ in commands]
        except _ERRORS as exc:
            return [_copy(exc) for _ in commands]
        outcomes: list[Any] = [None] * len(commands)
        for sent, (args, script), reply in zip(plan, sent_args, replies, strict=True):
            if isinstance(reply, rex.NoScriptError) and script is not None:
                # First use on this server (or it restarted, failed over): EVAL caches it.
                reply = await self._eval_source(script, args)
            members = sent.members
            if len(members) == 1:
                outcomes[members[0]] = reply
            elif isinstance(reply, BaseException):
                for i in members:
                    outcomes[i] = _copy(reply)
            elif sent.run_key == "GET":
                for i, value in zip(members, reply, strict=True):
                    outcomes[i] = value
            else:  # set_many_plain wrote them all; set_plain answers 1
                for i in members:
                    outcomes[i] = 1
        return outcomes

    async def _eval_source(self, script: Script, args: Sequence[Any]) -> Any:
        try:
            return await self._client.execute_command("EVAL", script.source, *args[2:])
        except _ERRORS as exc:
            return exc


def _copy(error: BaseException) -> BaseException:
    """An exception of the same type and message for one caller: raised from several tasks,
    one object would collect every task's traceback and context."""
    try:
        return copy.copy(error)
    except Exception:  # noqa: BLE001 - an exception type that cannot be rebuilt
        return rex.ConnectionError(f"{type(error).__name__}: {error}")
