"""Automatic pipelining (``_pipelining``): concurrent callers' commands go out in batches,
and each caller still gets exactly its own outcome.

Every test checks the batcher's counters too, so a change that silently stopped batching
(every call alone) fails here rather than passing on the lone path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import Any

import dmem
import pytest
import redis.asyncio as aioredis
from dmem.coalescing import Coalescer
from dmem_redis._pipelining import BATCH_VALUE_LIMIT
from dmem_redis._scripts import SET_PLAIN
from redis_servers import RedisServer

TASKS = 200


def _coalescer(store: dmem.Store) -> Coalescer[Any, Any]:
    coalescer = store.provider._coalescer  # type: ignore[attr-defined]
    assert coalescer is not None
    return coalescer  # type: ignore[no-any-return]


async def test_concurrent_gets_each_get_their_own_value(redis_url: str) -> None:
    store = await dmem.open(redis_url, namespace="pipe-get")
    try:
        await store.clear()
        await store.set_many({f"k{i}": {"i": i} for i in range(0, TASKS, 2)})  # odd: missing
        await store.set("short", "gone", ttl=0.01)
        await asyncio.sleep(0.03)
        coalescer = _coalescer(store)
        batches, items = coalescer.batches, coalescer.items

        async def reader(i: int) -> list[Any]:
            return [await store.get(f"k{(i + n) % TASKS}", default=None) for n in range(5)] + [
                await store.get("short", default="expired")
            ]

        results = await asyncio.gather(*(reader(i) for i in range(TASKS)))
        for i, got in enumerate(results):
            expected = [
                {"i": k} if k % 2 == 0 else None for k in ((i + n) % TASKS for n in range(5))
            ]
            assert got == [*expected, "expired"], i
        assert coalescer.batches > batches, "no batch formed: every get went alone"
        assert coalescer.items - items > TASKS, "too few gets were batched"
    finally:
        await store.aclose()


async def test_mixed_commands_keep_each_task_consistent(redis_url: str) -> None:
    """Sets, gets, exists, ttl, deletes and tagged writes from many tasks at once: each
    task reads its own writes (its calls stay in order), whatever batch they went in."""
    store = await dmem.open(redis_url, namespace="pipe-mixed")
    other = await store.with_namespace("pipe-mixed-2")  # the same client: batched together
    try:
        await store.clear()
        await other.clear()
        coalescer = _coalescer(store)
        assert _coalescer(other) is coalescer
        items = coalescer.items

        async def task(i: int) -> None:
            key = f"t{i}"
            target = store if i % 2 else other
            for round_ in range(4):
                await target.set(key, [i, round_], ttl=60 if round_ % 2 else None)
                assert await target.get(key) == [i, round_]
                assert await target.exists(key)
                remaining = await target.ttl(key)
                assert (remaining is None) == (round_ % 2 == 0)
                await target.set(key, "tagged", tags={"owner": str(i)})
                assert await target.get_tags(key) == {"owner": str(i)}
                assert await target.delete(key)
                assert await target.get(key, default=None) is None
                assert not await target.exists(key)

        await asyncio.gather(*(task(i) for i in range(TASKS)))
        assert coalescer.items - items > TASKS, "too few commands were batched"
        assert await store.keys() == [] and await other.keys() == []
    finally:
        await other.aclose()
        await store.aclose()


async def test_batched_scripts_survive_a_script_flush(redis_url: str) -> None:
    """A batched EVALSHA that the server no longer knows (NOSCRIPT) is sent again as EVAL."""
    store = await dmem.open(redis_url, namespace="pipe-noscript")
    raw = aioredis.Redis.from_url(redis_url)
    try:
        await store.clear()
        coalescer = _coalescer(store)
        batches = coalescer.batches
        await raw.script_flush()
        await asyncio.gather(*(store.set(f"s{i}", i) for i in range(TASKS)))
        assert coalescer.batches > batches
        assert await store.get_many([f"s{i}" for i in range(TASKS)]) == {
            f"s{i}": i for i in range(TASKS)
        }
    finally:
        await raw.aclose()
        await store.aclose()


async def test_cancelled_waiters_do_not_disturb_the_others(redis_url: str) -> None:
    store = await dmem.open(redis_url, namespace="pipe-cancel")
    try:
        await store.set("k", "v")
        coalescer = _coalescer(store)
        batches = coalescer.batches
        tasks = [asyncio.create_task(store.get("k")) for _ in range(TASKS)]
        await asyncio.sleep(0)  # every task has made its call; most wait for a batch
        for task in tasks[1::3]:
            task.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        for i, outcome in enumerate(done):
            if i % 3 == 1:
                assert isinstance(outcome, asyncio.CancelledError) or outcome == "v"
            else:
                assert outcome == "v", (i, outcome)
        assert coalescer.batches > batches
        assert await store.get("k") == "v"  # and the store still works
    finally:
        await store.aclose()


async def test_off_sends_every_command_alone(redis_url: str) -> None:
    store = await dmem.open(redis_url, namespace="pipe-off", pipelining=False)
    try:
        assert store.provider._coalescer is None  # type: ignore[attr-defined]
        await store.set("k", 1)
        assert await asyncio.gather(*(store.get("k") for _ in range(50))) == [1] * 50
    finally:
        await store.aclose()


async def test_server_death_mid_pipeline_fails_each_caller_on_its_own(
    restartable_redis: RedisServer,
) -> None:
    """SIGKILL while batches are in flight: every caller raises a ProviderError of its own
    (never a raw redis-py error, never one shared object), within the timeout; after the
    restart the same store works again."""
    timeout = 1.0
    store = await dmem.open(
        restartable_redis.url, namespace="pipe-kill", timeout=timeout, retries=0
    )
    try:
        await store.set("k", "v")
        coalescer = _coalescer(store)
        batches = coalescer.batches
        errors: list[BaseException] = []
        slowest = [0.0]
        stop = asyncio.Event()

        async def reader() -> None:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    await store.get("k")
                except BaseException as exc:  # noqa: BLE001 - every kind is checked below
                    slowest[0] = max(slowest[0], time.monotonic() - started)
                    errors.append(exc)
                    return

        tasks = [asyncio.create_task(reader()) for _ in range(TASKS)]
        await asyncio.sleep(0.2)
        assert coalescer.batches > batches, "no batch formed before the kill"
        await asyncio.to_thread(restartable_redis.kill)
        done, _ = await asyncio.wait(tasks, timeout=timeout * 3)
        stop.set()
        assert len(done) == TASKS, "a caller hung after the server died"
        assert len(errors) == TASKS
        assert all(isinstance(e, dmem.ProviderUnavailableError) for e in errors), {
            type(e).__name__ for e in errors
        }
        assert len({id(e) for e in errors}) == TASKS, "callers shared an exception object"
        assert slowest[0] <= timeout + 0.5
        await asyncio.to_thread(restartable_redis.start)
        assert await asyncio.gather(*(store.get("k") for _ in range(TASKS))) == ["v"] * TASKS
    finally:
        with contextlib.suppress(Exception):
            await store.aclose()


async def test_stopped_server_bounds_queued_calls_by_the_timeout(
    restartable_redis: RedisServer,
) -> None:
    """A server that stops answering (SIGSTOP): the lone commands in the slots take the
    whole timeout to fail; the calls queued behind them must fail within that same
    timeout, not after a second one of their own batch."""
    timeout = 1.0
    store = await dmem.open(
        restartable_redis.url, namespace="pipe-stop", timeout=timeout, retries=0
    )
    pid = restartable_redis.pid
    assert pid is not None
    try:
        await store.set("k", "v")
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()

            async def timed() -> float:
                with pytest.raises(dmem.ProviderUnavailableError):
                    await store.get("k")
                return time.monotonic() - started

            first = [asyncio.create_task(timed()) for _ in range(TASKS)]
            await asyncio.sleep(timeout / 2)  # these queue behind the hung batch
            later = [asyncio.create_task(timed()) for _ in range(TASKS)]
            durations = await asyncio.gather(*first, *later)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert max(durations[:TASKS]) <= timeout + 0.5, max(durations)
        assert max(durations[TASKS:]) <= timeout / 2 + timeout + 0.5, max(durations)
        assert await store.get("k") == "v"
    finally:
        await store.aclose()


async def test_cluster_batches_per_node(redis_cluster_url: str) -> None:
    store = await dmem.open(redis_cluster_url, namespace="pipe-cluster")
    try:
        await store.clear()
        coalescer = _coalescer(store)
        batches = coalescer.batches
        await asyncio.gather(*(store.set(f"c{i}", i) for i in range(TASKS)))
        got = await asyncio.gather(*(store.get(f"c{i}") for i in range(TASKS)))
        assert got == list(range(TASKS))
        assert coalescer.batches > batches
        await asyncio.gather(*(store.delete(f"c{i}") for i in range(TASKS)))
        assert await store.keys() == []
    finally:
        await store.aclose()


async def test_a_batch_keeps_the_order_of_its_commands(redis_url: str) -> None:
    """Within one batch, merged runs (GETs as one MGET, plain sets of one ttl as one
    set_many_plain) and the commands between them run in arrival order."""
    store = await dmem.open(redis_url, namespace="pipe-order")
    try:
        await store.clear()
        await store.set("dup", "tagged", tags={"t": "v"})
        provider = store.provider
        prefix, vk = provider._where("dup")  # type: ignore[attr-defined]
        pipeliner = provider._lease.value.pipeliner  # type: ignore[attr-defined]
        now = asyncio.get_running_loop().time()

        def plain_set(value: bytes, ttl: int | str = "") -> Any:
            return (("EVALSHA", SET_PLAIN.sha, 1, vk, prefix, ttl, value), SET_PLAIN, now)

        get = (("GET", vk), None, now)
        outcomes = await pipeliner._run(
            [
                plain_set(b'"1"'),
                plain_set(b'"2"'),
                get,
                get,
                plain_set(b'"3"', 60_000),  # another ttl: a run of its own
                plain_set(b'"4"', 60_000),
                get,
                plain_set(b'"5"'),
            ]
        )
        assert outcomes == [1, 1, b'"2"', b'"2"', 1, 1, b'"4"', 1]
        assert await store.get("dup") == "5"
        assert await store.ttl("dup") is None  # the last set had none
        assert await store.get_tags("dup") == {}  # a plain set drops the old tags
        assert await store.find_by_tag("t", "v") == []
    finally:
        await store.aclose()


async def test_large_values_are_never_batched(redis_url: str) -> None:
    """A set of a value over BATCH_VALUE_LIMIT goes alone while small ones batch: one
    caller's large value never fails a batch of others', and no batch nears the server's
    client-query-buffer-limit."""
    store = await dmem.open(redis_url, namespace="pipe-large")
    try:
        await store.clear()
        coalescer = _coalescer(store)
        big = b"x" * (BATCH_VALUE_LIMIT + 1)
        items = coalescer.items
        await asyncio.gather(*(store.set(f"big{i}", big) for i in range(12)))
        assert coalescer.items == items, "a large value went into a batch"
        await asyncio.gather(*(store.set(f"small{i}", i) for i in range(TASKS)))
        assert coalescer.items > items, "small values did not batch"
        assert all(
            v == big for v in (await store.get_many([f"big{i}" for i in range(12)])).values()
        )
        assert await store.get("small7") == 7
    finally:
        await store.clear()
        await store.aclose()
