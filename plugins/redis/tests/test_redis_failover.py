"""Sentinel failover under load: a real set-up (a primary, a replica, three sentinels; see
``failover_sentinel_set``) whose primary dies (SIGKILL) or is failed over by hand (``SENTINEL
FAILOVER``) while several tasks write and read through one store.

What the tests hold the provider to:

* a call during the failover raises ``ProviderUnavailableError``, never another error, and
  never waits longer than ``timeout`` (plus slack for a busy machine);
* calls succeed again on the new primary, on the same store (no new ``initialize()``),
  within the failover time (kill to the sentinels naming the new primary) plus 2 s;
* a manual failover surfaces no error at all (redis-py's retries, which the docs describe,
  cover the moment the old primary drops its clients);
* afterwards every tag index agrees with the values, read raw from the new primary and
  through ``find_by_tag``/``get_tags``.

Each test also counts the acknowledged writes the failover lost (Redis replicates
asynchronously) and prints its figures; with ``DMEM_FAILOVER_LOG=path`` it appends them to
that file as a JSON line (docs/backends/redis-sentinel.md reports them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import dmem
import redis.asyncio as aioredis
from dmem import ProviderUnavailableError
from dmem_redis._layout import Layout
from redis_servers import PASSWORD, SERVICE, SentinelSet

TIMEOUT = 5.0
OPTIONS: dict[str, Any] = {
    "timeout": TIMEOUT,
    "retries": 1,
    "retry_backoff": 0.05,
    "retry_backoff_max": 0.2,
}
SLACK = 1.0  # for a busy two-core machine (a CI run may share it), not for the client
RECOVERY = 2.0  # calls succeed again within the failover time plus this
SWITCH_SLACK = 1.0  # how long after the sentinels' switch the store may still use the old primary
WRITERS = 3
READERS = 2
HOT = 8  # keys each writer overwrites, with a new tag value each time
PREFILLED = 200  # keys written (and replicated) before the failover, which readers check
BATCH = 4  # keys per set_many
PACE = 0.002  # pause between a task's calls: a steady load, not a busy loop on two cores
CHUNK = 50  # calls the checks afterwards run at once


@dataclass
class Call:
    task: str
    op: str
    start: float
    end: float
    error: BaseException | None = None


@dataclass
class Load:
    """What the tasks did: every call, and what each key should hold."""

    kv: dmem.Store
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    calls: list[Call] = field(default_factory=list)
    attempted: dict[str, list[int]] = field(default_factory=dict)  # key: seqs sent, in order
    # key: (seq, time.monotonic() of the acknowledgement) of each acknowledged write
    acked: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    acked_writes: int = 0
    bad_reads: list[str] = field(default_factory=list)

    async def timed(self, task: str, op: str, call: Any) -> tuple[bool, Any]:
        """(True, result) of the call, or (False, None) after an error (recorded)."""
        start = time.monotonic()
        try:
            result = await call
        except Exception as exc:  # noqa: BLE001 - recorded; the test checks its type
            self.calls.append(Call(task, op, start, time.monotonic(), exc))
            await asyncio.sleep(0.02)  # as a client backs off; keeps the loop from spinning
            return False, None
        self.calls.append(Call(task, op, start, time.monotonic()))
        return True, result

    async def writer(self, w: int) -> None:
        task = f"w{w}"
        seq = 0
        while not self.stop.is_set():
            seq += 1
            kind = seq % 3
            if kind == 0:  # one new key
                items = {f"{task}:u{seq}": _value(task, seq, {"writer": task, "kind": "one"})}
            elif kind == 1:  # a batch of new keys, one tag for the batch
                tags = {"writer": task, "batch": f"{task}:{seq}"}
                items = {f"{task}:b{seq}:{j}": _value(task, seq, tags) for j in range(BATCH)}
            else:  # overwrite a hot key with a new tag value: its old index entry must go
                tags = {"writer": task, "gen": f"{task}:{seq}"}
                items = {f"{task}:hot{seq % HOT}": _value(task, seq, tags)}
            for key in items:
                self.attempted.setdefault(key, []).append(seq)
            first = next(iter(items.values()))
            tags = first["tags"]
            if len(items) == 1:
                key, value = next(iter(items.items()))
                call: Any = self.kv.set(key, value, tags=tags)
                op = "set"
            else:
                call = self.kv.set_many(items, tags=tags)
                op = "set_many"
            ok, _ = await self.timed(task, op, call)
            if ok:
                now = time.monotonic()
                for key in items:
                    self.acked.setdefault(key, []).append((seq, now))
                self.acked_writes += len(items)
            await asyncio.sleep(PACE)

    async def reader(self, r: int) -> None:
        task = f"r{r}"
        i = r
        while not self.stop.is_set():
            i = (i + 7) % PREFILLED
            ok, got = await self.timed(task, "get", self.kv.get(f"pre:{i}"))
            if ok and got != _value("pre", i, {"kind": "pre"}):
                self.bad_reads.append(f"pre:{i} read {got!r}")
            await asyncio.sleep(PACE)

    def tasks(self) -> list[str]:
        return [f"w{w}" for w in range(WRITERS)] + [f"r{r}" for r in range(READERS)]


def _value(task: str, seq: int, tags: dict[str, str]) -> dict[str, Any]:
    # The value carries its own tags, so the check after the failover knows what each
    # stored key's tags must be, whichever of its writes survived.
    return {"task": task, "seq": seq, "tags": tags, "pad": "x" * 64}


@contextlib.asynccontextmanager
async def _running(load: Load) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.create_task(load.writer(w)) for w in range(WRITERS)]
    tasks += [asyncio.create_task(load.reader(r)) for r in range(READERS)]
    try:
        yield tasks
    finally:
        load.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT + SLACK + 5)


async def _prefill(kv: dmem.Store, setup: SentinelSet) -> None:
    items = {f"pre:{i}": _value("pre", i, {"kind": "pre"}) for i in range(PREFILLED)}
    await kv.set_many(items, tags={"kind": "pre"})
    primary = _raw(setup.current_primary().port)
    try:  # replicated before the failover starts: these keys can never be lost
        assert await primary.wait(1, 5000) == 1
    finally:
        await primary.aclose()


def _raw(port: int) -> aioredis.Redis:
    return aioredis.Redis(
        host="127.0.0.1", port=port, password=PASSWORD, socket_timeout=2.0, decode_responses=True
    )


class SentinelWatch:
    """Polls every sentinel (50 ms) for the primary's address: when the first one, and when
    all of them, named a primary other than ``old_port``."""

    def __init__(self, setup: SentinelSet, old_port: int) -> None:
        self.old_port = old_port
        self.clients = [
            aioredis.Redis(host="127.0.0.1", port=s.port, socket_timeout=0.5)
            for s in setup.sentinels
        ]
        self.first: float | None = None
        self.switched = asyncio.Event()  # set at self.first
        self.all: float | None = None
        self.new_port: int | None = None

    async def run(self) -> None:
        while self.all is None:
            ports: list[int | None] = []
            for client in self.clients:
                try:
                    reply = await client.sentinel_get_master_addr_by_name(SERVICE)
                    assert isinstance(reply, tuple)
                    ports.append(int(reply[1]))
                except Exception:  # noqa: BLE001 - a sentinel that does not answer: not yet
                    ports.append(None)
            now = time.monotonic()
            moved = [p for p in ports if p is not None and p != self.old_port]
            if moved and self.first is None:
                self.first, self.new_port = now, moved[0]
                self.switched.set()
            if len(moved) == len(ports):
                self.all = now
            await asyncio.sleep(0.05)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


async def _role(port: int) -> str:
    client = _raw(port)
    try:
        return str((await client.role())[0])
    except Exception:  # noqa: BLE001 - not answering
        return ""
    finally:
        await client.aclose()


async def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


def _first_success(load: Load, task: str, after: float) -> float | None:
    ends = [c.end for c in load.calls if c.task == task and c.error is None and c.start > after]
    return min(ends, default=None)


async def _lost_writes(load: Load, kv: dmem.Store) -> list[tuple[float, str]]:
    """Acknowledged writes the new primary does not hold, each with the time it was
    acknowledged: every acked write of a key that is missing, or newer than the write the
    key holds. A key never holds a value no task sent."""
    keys = sorted(load.acked)
    stored = await kv.get_many(keys)
    lost: list[tuple[float, str]] = []
    for key in keys:
        got = stored.get(key)
        held = -1 if got is None else got["seq"]
        if got is not None:
            assert held in load.attempted[key], f"{key} holds {got}, never written"
        for seq, at in load.acked[key]:
            if seq > held:
                lost.append(
                    (
                        at,
                        f"{key}: acked seq {seq}, "
                        + ("missing" if got is None else f"holds {held}"),
                    )
                )
    return lost


async def _chunked(calls: list[Any]) -> list[Any]:
    results: list[Any] = []
    for start in range(0, len(calls), CHUNK):
        results += await asyncio.gather(*calls[start : start + CHUNK])
    return results


async def _index_problems(kv: dmem.Store, port: int) -> list[str]:
    """Every tag index against the values: raw on the primary on ``port`` (each tag hash
    is its value's tags, each index set holds exactly the keys tagged so), and through the
    store (``get_tags`` of every key, ``find_by_tag`` of every tag)."""
    problems: list[str] = []
    keys = await kv.keys()
    values = await kv.get_many(keys)
    expected: dict[tuple[str, str], set[str]] = {}
    for key, value in values.items():
        for pair in value["tags"].items():
            expected.setdefault(pair, set()).add(key)
    # Raw: the tag hashes and index sets on the primary, read in pipelines.
    layout = Layout(kv.namespace, None)
    prefix = layout.prefixes[0]
    raw = _raw(port)
    metas: dict[str, dict[str, str]] = {}
    indexes: dict[tuple[str, str], set[str]] = {}
    try:
        names = [n async for n in raw.scan_iter(match=layout.namespace_match(), count=1000)]
        for start in range(0, len(names), 1000):
            pipe = raw.pipeline(transaction=False)
            chunk = [n for n in names[start : start + 1000] if n[len(prefix) :][:2] in ("m:", "t:")]
            for name in chunk:
                if name[len(prefix) :].startswith("m:"):
                    pipe.hgetall(name)
                else:
                    pipe.smembers(name)
            for name, got in zip(chunk, await pipe.execute(), strict=True):
                rest = name[len(prefix) :]
                if rest.startswith("m:"):
                    metas[rest[2:]] = got
                else:
                    size, _, tail = rest[2:].partition(":")
                    indexes[(tail[: int(size)], tail[int(size) + 1 :])] = set(got)
    finally:
        await raw.aclose()
    for key, value in values.items():
        if metas.get(key, {}) != value["tags"]:
            problems.append(f"tag hash of {key} is {metas.get(key)}, not {value['tags']}")
    problems += [f"tag hash of missing key {key}" for key in set(metas) - set(values)]
    for pair in set(indexes) | set(expected):
        if indexes.get(pair, set()) != expected.get(pair, set()):
            problems.append(f"index {pair} holds {sorted(indexes.get(pair, set()))[:5]}")
    # Through the store.
    tags = await _chunked([kv.get_tags(key) for key in values])
    for key, got in zip(values, tags, strict=True):
        if got != values[key]["tags"]:
            problems.append(f"get_tags({key!r}) is {got}, not {values[key]['tags']}")
    pairs = sorted(set(indexes) | set(expected))
    found = await _chunked([kv.find_by_tag(*pair) for pair in pairs])
    for pair, keys_found in zip(pairs, found, strict=True):
        if set(keys_found) != expected.get(pair, set()):
            problems.append(f"find_by_tag{pair} gives {sorted(keys_found)[:5]}")
    return problems


def _window(lost: list[tuple[float, str]], since: float) -> list[float] | None:
    """First and last acknowledgement of the lost writes, seconds after ``since``."""
    if not lost:
        return None
    times = [at for at, _ in lost]
    return [round(min(times) - since, 3), round(max(times) - since, 3)]


def _report(name: str, figures: dict[str, Any]) -> None:
    figures = {"test": name, "machine": f"{platform.machine()} {os.cpu_count()} cpus", **figures}
    print(json.dumps(figures))
    path = os.environ.get("DMEM_FAILOVER_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(figures) + "\n")


def _check_calls(load: Load, *, allowed_errors: bool) -> Counter[str]:
    """Every error is ProviderUnavailableError and no call outlived the timeout."""
    errors: Counter[str] = Counter()
    for call in load.calls:
        took = call.end - call.start
        assert took <= TIMEOUT + SLACK, f"{call.op} of {call.task} took {took:.2f}s"
        if call.error is not None:
            errors[type(call.error).__name__] += 1
            assert isinstance(call.error, ProviderUnavailableError), (
                f"{call.op} of {call.task} raised {call.error!r}, not ProviderUnavailableError"
            )
    if not allowed_errors:
        assert not errors, f"a manual failover surfaced errors: {dict(errors)}, e.g. " + repr(
            next(c.error for c in load.calls if c.error is not None)
        )
    assert not load.bad_reads, load.bad_reads[:5]
    return errors


async def test_primary_killed_under_load(failover_sentinel_set: SentinelSet) -> None:
    setup = failover_sentinel_set
    async with dmem.open(setup.url, namespace="failover", **OPTIONS) as kv:
        await _prefill(kv, setup)
        old = setup.current_primary()
        watch = SentinelWatch(setup, old.port)
        load = Load(kv)
        try:
            async with _running(load):
                await asyncio.sleep(1.0)  # the load runs on the healthy set-up first
                before = len(load.calls)
                killed = time.monotonic()
                old.kill()  # SIGKILL
                watcher = asyncio.create_task(watch.run())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(watch.switched.wait(), 30.0)
                assert watch.first is not None, "the sentinels promoted no replica in 30 s"
                # Every task gets RECOVERY s after the switch to succeed, and runs a while on.
                await asyncio.sleep(RECOVERY + 1.0)
            await asyncio.wait_for(watcher, 10.0)
        finally:
            await watch.aclose()
        assert before > 50, "the load did not run before the kill"
        errors = _check_calls(load, allowed_errors=True)
        failover = watch.first - killed
        recovered = {task: _first_success(load, task, killed) for task in load.tasks()}
        assert all(t is not None for t in recovered.values()), f"never recovered: {recovered}"
        last = max(t for t in recovered.values() if t is not None)
        assert last - killed <= failover + RECOVERY, (
            f"calls succeeded again {last - killed:.2f}s after the kill; the failover took "
            f"{failover:.2f}s"
        )
        late = [c for c in load.calls if c.error is not None and c.start > watch.first + RECOVERY]
        assert not late, f"errors {RECOVERY}s after the switch: {late[:3]}"
        assert watch.new_port is not None and watch.new_port != old.port
        assert await _role(watch.new_port) == "master"
        lost = await _lost_writes(load, kv)
        problems = await _index_problems(kv, watch.new_port)
        assert not problems, problems[:10]
        first_write = min(t for task, t in recovered.items() if t is not None and task[0] == "w")
        _report(
            "kill",
            {
                "failover_s": round(failover, 3),
                "all_sentinels_s": round((watch.all or 0) - killed, 3),
                # kill -> the first acknowledged write, and -> every task has had a success
                "first_write_s": round(first_write - killed, 3),
                "all_tasks_s": round(last - killed, 3),
                # the sentinels' switch -> every task has had a success
                "reconnect_s": round(last - watch.first, 3),
                "calls": len(load.calls),
                "errors": dict(errors),
                "acked_writes": load.acked_writes,
                "lost_writes": len(lost),
                "lost_acked_s_after_kill": _window(lost, killed),
                "lost_sample": [text for _, text in lost[:3]],
            },
        )


async def test_manual_failover_under_load(failover_sentinel_set: SentinelSet) -> None:
    setup = failover_sentinel_set
    async with dmem.open(setup.url, namespace="manual", **OPTIONS) as kv:
        await _prefill(kv, setup)
        old = setup.current_primary()
        watch = SentinelWatch(setup, old.port)
        sentinel = aioredis.Redis(host="127.0.0.1", port=setup.sentinels[0].port)
        load = Load(kv)
        try:
            async with _running(load):
                await asyncio.sleep(1.0)
                started = time.monotonic()
                assert await sentinel.sentinel_failover(SERVICE)
                watcher = asyncio.create_task(watch.run())
                # The old primary stays up: the sentinels turn it into a replica of the new
                # one (and it drops its clients) some seconds after the switch. The load
                # runs until a while after that.
                await _wait(
                    lambda: _is_replica(old.port), 40.0, "the old primary to become a replica"
                )
                demoted = time.monotonic()
                await asyncio.sleep(1.0)
            await asyncio.wait_for(watcher, 10.0)
        finally:
            await watch.aclose()
            await sentinel.aclose()
        errors = _check_calls(load, allowed_errors=False)
        assert watch.first is not None and watch.new_port is not None
        lost = await _lost_writes(load, kv)
        # The old primary takes writes until the sentinels demote it (about 10 s later);
        # once they name the new primary, the store must stop writing to the old one.
        late = [text for at, text in lost if at > watch.first + SWITCH_SLACK]
        assert not late, f"{len(late)} writes acked by the old primary after the switch: {late[:3]}"
        problems = await _index_problems(kv, watch.new_port)
        assert not problems, problems[:10]
        _report(
            "manual",
            {
                "switch_s": round(watch.first - started, 3),
                "old_primary_demoted_s": round(demoted - started, 3),
                "calls": len(load.calls),
                "errors": dict(errors),
                "acked_writes": load.acked_writes,
                "lost_writes": len(lost),
                "lost_acked_s_after_command": _window(lost, started),
                "lost_sample": [text for _, text in lost[:3]],
            },
        )


async def _is_replica(port: int) -> bool:
    return await _role(port) == "slave"


async def test_manual_failover_with_min_replicas_to_write(
    failover_sentinel_set: SentinelSet,
) -> None:
    """The server-side guard against the loss above: a primary with
    ``min-replicas-to-write 1`` refuses writes (NOREPLICAS) once its replica has left to
    become the new primary, so nothing it acknowledges is thrown away; the store reports
    the refusals as ProviderUnavailableError until the sentinels name the new primary."""
    setup = failover_sentinel_set
    async with dmem.open(setup.url, namespace="guarded", **OPTIONS) as kv:
        await _prefill(kv, setup)
        old = setup.current_primary()
        # On the old primary only: with one replica, a new primary so configured would
        # refuse every write until the old one has come back as its replica.
        assert old.cli("CONFIG", "SET", "min-replicas-to-write", "1") == "OK"
        watch = SentinelWatch(setup, old.port)
        sentinel = aioredis.Redis(host="127.0.0.1", port=setup.sentinels[0].port)
        load = Load(kv)
        try:
            async with _running(load):
                await asyncio.sleep(1.0)
                started = time.monotonic()
                assert await sentinel.sentinel_failover(SERVICE)
                watcher = asyncio.create_task(watch.run())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(watch.switched.wait(), 30.0)
                assert watch.first is not None, "the sentinels promoted no replica in 30 s"
                await asyncio.sleep(RECOVERY + 1.0)
            await asyncio.wait_for(watcher, 10.0)
        finally:
            await watch.aclose()
            await sentinel.aclose()
        errors = _check_calls(load, allowed_errors=True)
        refused = [c for c in load.calls if c.error is not None]
        assert all("NOREPLICAS" in str(c.error) for c in refused), refused[:3]
        assert all(c.op != "get" for c in refused), "a read was refused"
        late = [c for c in refused if c.start > watch.first + RECOVERY]
        assert not late, f"writes refused {RECOVERY}s after the switch: {late[:3]}"
        assert watch.new_port is not None
        lost = await _lost_writes(load, kv)
        problems = await _index_problems(kv, watch.new_port)
        assert not problems, problems[:10]
        _report(
            "manual+min-replicas",
            {
                "switch_s": round(watch.first - started, 3),
                "refused_s_after_command": _window([(c.start, "") for c in refused], started),
                "calls": len(load.calls),
                "errors": dict(errors),
                "acked_writes": load.acked_writes,
                "lost_writes": len(lost),
                "lost_sample": [text for _, text in lost[:3]],
            },
        )
