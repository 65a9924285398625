"""Faults: a server that dies mid-workload, comes back, or never answers.

The contract: while the backend is down calls raise ProviderUnavailableError within the
configured timeout (never a hang); once it is back, calls succeed again without a new
``initialize()``; and nothing the crash interrupted leaves a tag index disagreeing with
the values (each tagged batch is one Lua script, so it is all there or not at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import dmem
import pytest
import redis.asyncio as aioredis
from dmem_redis._layout import Layout, tag_suffix
from redis_servers import PASSWORD, RedisServer

TIMEOUT = 1.0
RETRIES = 1
BACKOFF_MAX = 0.2
# `timeout` bounds the whole call, its connecting, retries and backoff included. The slack is
# for a busy two-core machine (other test runs share it), not for the client.
SLACK = 0.5
BOUND = TIMEOUT + SLACK
OPTIONS: dict[str, Any] = {
    "timeout": TIMEOUT,
    "retries": RETRIES,
    "retry_backoff": 0.05,
    "retry_backoff_max": BACKOFF_MAX,
}
BATCH = 20


async def _tag_state(url: str, namespace: str) -> tuple[dict[str, dict[str, str]], set[str]]:
    """Read the raw Redis data: (tags of each value key, problems found in the indexes)."""
    layout = Layout(namespace, None)
    prefix = layout.prefixes[0]
    client = aioredis.Redis.from_url(url)
    values: set[str] = set()
    metas: dict[str, dict[str, str]] = {}
    indexes: dict[tuple[str, str], set[str]] = {}
    async for raw in client.scan_iter(match=layout.namespace_match(), count=1000):
        rest = raw.decode()[len(prefix) :]
        if rest.startswith("k:"):
            values.add(rest[2:])
        elif rest.startswith("m:"):
            tags = await client.hgetall(raw)
            metas[rest[2:]] = {k.decode(): v.decode() for k, v in tags.items()}
        elif rest.startswith("t:"):
            size, _, tail = rest[2:].partition(":")
            name, value = tail[: int(size)], tail[int(size) + 1 :]
            indexes[(name, value)] = {m.decode() for m in await client.smembers(raw)}
    await client.aclose()
    problems: set[str] = set()
    for key, tags in metas.items():
        if key not in values:
            problems.add(f"tag hash of missing key {key}")
        for pair in tags.items():
            if key not in indexes.get(pair, set()):
                problems.add(f"{key} missing from index {pair}")
    for (name, value), members in indexes.items():
        for member in members:
            if metas.get(member, {}).get(name) != value:
                problems.add(f"stale {member} in index {(name, value)}")
    return {key: metas.get(key, {}) for key in values}, problems


async def test_kill_during_tagged_set_many_then_recover(restartable_redis: RedisServer) -> None:
    url = restartable_redis.url
    namespace = "fault"
    kv = await dmem.open(url, namespace=namespace, **OPTIONS)
    acknowledged: list[int] = []
    failures: list[float] = []  # how long each failing call took
    stop = asyncio.Event()

    async def writer(worker: int) -> None:
        batch = worker * 1_000_000
        while not stop.is_set():
            items = {f"b{batch}-{j}": {"batch": batch, "j": j} for j in range(BATCH)}
            started = time.monotonic()
            try:
                # Tags reuse names across batches so overwrites and shared index sets occur.
                await kv.set_many(items, tags={"batch": str(batch), "group": f"g:{batch % 3}"})
                acknowledged.append(batch)
            except dmem.ProviderUnavailableError:
                failures.append(time.monotonic() - started)
                await asyncio.sleep(0.01)
            batch += 1

    tasks = [asyncio.create_task(writer(w)) for w in range(4)]
    try:
        await asyncio.sleep(0.4)
        assert acknowledged, "the workload wrote nothing before the kill"
        await asyncio.to_thread(restartable_redis.kill)

        # Down: every call fails with ProviderUnavailableError within the bound.
        for call in (kv.get("b0-0"), kv.set_many({"x": 1}, tags={"t": "v"}), kv.count()):
            started = time.monotonic()
            with pytest.raises(dmem.ProviderUnavailableError):
                await call
            assert time.monotonic() - started < BOUND
        health = await kv.health()
        assert health.status == "unhealthy"
        await asyncio.sleep(0.3)
        assert failures and max(failures) < BOUND, failures

        # Back on the same port (AOF replayed): calls succeed again within 2 s, same store.
        await asyncio.to_thread(restartable_redis.start)
        back = time.monotonic()
        while True:
            try:
                await kv.get("b0-0")
                break
            except dmem.ProviderUnavailableError:
                assert time.monotonic() - back < 2.0, "no recovery within 2 s"
                await asyncio.sleep(0.05)
        assert time.monotonic() - back < 2.0
        acked_before_restart = len(acknowledged)
        await asyncio.sleep(0.3)
        assert len(acknowledged) > acked_before_restart, "writes did not resume"
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    # Every tag index agrees with the values, and every batch is all-or-nothing.
    tags_of, problems = await _tag_state(url, namespace)
    assert not problems, sorted(problems)[:10]
    per_batch: dict[str, int] = defaultdict(int)
    for key, tags in tags_of.items():
        assert tags["batch"] == key[1:].split("-")[0]
        per_batch[tags["batch"]] += 1
    assert set(per_batch.values()) == {BATCH}, "a batch was half-written"
    for batch in acknowledged:
        assert per_batch[str(batch)] == BATCH, f"acknowledged batch {batch} lost"
    # And the API agrees with the raw data.
    for batch in list(per_batch)[:20]:
        found = await kv.find_by_tag("batch", batch)
        assert len(found) == BATCH
    assert await kv.count() == len(tags_of)
    await kv.aclose()


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never answers (a hung server)."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()


async def test_hung_server_times_out(silent_server: int) -> None:
    started = time.monotonic()
    with pytest.raises(dmem.ProviderUnavailableError):
        await dmem.open(f"redis://127.0.0.1:{silent_server}/0", **OPTIONS)
    assert time.monotonic() - started < BOUND


async def test_unreachable_at_open(restartable_redis: RedisServer) -> None:
    restartable_redis.kill()
    started = time.monotonic()
    with pytest.raises(dmem.ProviderUnavailableError) as info:
        await dmem.open(restartable_redis.url, namespace="x", **OPTIONS)
    assert time.monotonic() - started < BOUND
    assert isinstance(info.value, ConnectionError)
    assert info.value.__cause__ is not None


# --- a hung server: SIGSTOP ---------------------------------------------------------------------
@contextlib.contextmanager
def _stopped(server: RedisServer | int) -> Iterator[None]:
    """SIGSTOP the server (or process id): its port stays open (the kernel still accepts
    connections and buffers what is sent) but nothing answers, as with a hung host."""
    if isinstance(server, int):
        pid = server
    else:
        assert server.process is not None
        pid = server.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _redis_cli(port: int, *command: str, password: str | None = None) -> str:
    args = ["redis-cli", "-h", "127.0.0.1", "-p", str(port)]
    if password:
        args += ["--no-auth-warning", "-a", password]
    return subprocess.run(
        [*args, *command], capture_output=True, text=True, timeout=10, check=True
    ).stdout


def _pid(port: int, password: str | None = None) -> int:
    for line in _redis_cli(port, "INFO", "server", password=password).splitlines():
        if line.startswith("process_id:"):
            return int(line.split(":", 1)[1])
    raise AssertionError(f"no process_id from the server on port {port}")


def _calls(kv: dmem.Store) -> dict[str, Callable[[], Awaitable[object]]]:
    """One call of each kind (plain command, script, script sent once, pipeline, SCAN)."""

    async def scan() -> object:
        return [item async for item in kv.scan("*")]

    return {
        "get": lambda: kv.get("a"),
        "exists": lambda: kv.exists("a"),
        "get_many": lambda: kv.get_many(["a", "b"]),
        "set": lambda: kv.set("a", 2),
        "set tagged": lambda: kv.set("a", 2, tags={"t": "v"}),
        "set if_not_exists": lambda: kv.set("nx", 1, if_not_exists=True),
        "set_many": lambda: kv.set_many({"a": 3, "b": 4}),
        "set_many tagged": lambda: kv.set_many({"a": 3, "b": 4}, tags={"t": "v"}),
        "delete": lambda: kv.delete("b"),
        "keys": lambda: kv.keys(),
        "count": lambda: kv.count("*"),
        "scan": scan,
        "find_by_tag": lambda: kv.find_by_tag("t", "v"),
    }


async def _timed_failure(call: Callable[[], Awaitable[object]]) -> float:
    started = time.monotonic()
    with pytest.raises(dmem.ProviderUnavailableError):
        await call()
    return time.monotonic() - started


async def test_stopped_server_fails_every_call_within_timeout(
    restartable_redis: RedisServer,
) -> None:
    async with dmem.open(restartable_redis.url, namespace="stop", **OPTIONS) as kv:
        client = kv.provider._client  # type: ignore[attr-defined]
        await kv.set_many({"a": 1, "b": 2}, tags={"t": "v"})
        took: dict[str, float] = {}
        with _stopped(restartable_redis):
            for name, call in _calls(kv).items():
                took[name] = await _timed_failure(call)
            started = time.monotonic()
            health = await kv.health()
            took["health"] = time.monotonic() - started
            assert health.status == "unhealthy"
        print({name: round(seconds, 2) for name, seconds in took.items()})
        assert max(took.values()) <= BOUND, took
        # Back: the same store (the same client, nothing re-initialized) works at once. What
        # the stopped server had buffered may still have run, so only new keys are checked.
        assert await kv.set("after", {"ok": True})
        assert await kv.get("after") == {"ok": True}
        assert await kv.set("after-nx", 1, if_not_exists=True)
        assert "after" in await kv.keys()
        assert (await kv.health()).ok
        assert kv.provider._client is client  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "extra",
    [{"retries": 0}, {"retries": 3}, {"max_connections": 2}, {"timeout": 2.0}],
    ids=["retries=0", "retries=3", "max_connections=2", "timeout=2"],
)
async def test_stopped_server_bound_holds_for_other_settings(
    restartable_redis: RedisServer, extra: dict[str, Any]
) -> None:
    """The bound does not depend on the retry count or on waiting for a pooled connection:
    six concurrent calls on a pool of two still fail within ``timeout``."""
    options = {**OPTIONS, **extra}
    bound = options["timeout"] + SLACK
    async with dmem.open(restartable_redis.url, namespace="stop2", **options) as kv:
        await kv.set("a", 1)
        with _stopped(restartable_redis):
            took = [
                await _timed_failure(lambda: kv.get("a")),
                await _timed_failure(lambda: kv.set_many({"a": 1, "b": 2}, tags={"t": "v"})),
                await _timed_failure(lambda: kv.set("nx", 1, if_not_exists=True)),
            ]
            started = time.monotonic()
            results = await asyncio.gather(*(kv.get("a") for _ in range(6)), return_exceptions=True)
            took.append(time.monotonic() - started)
            assert all(isinstance(r, dmem.ProviderUnavailableError) for r in results), results
        print(extra, [round(t, 2) for t in took])
        assert max(took) <= bound, took
        assert await kv.get("a") in (1, None)  # the stopped server may have run the buffered
        assert await kv.set("after", 1) and await kv.get("after") == 1


async def test_open_while_stopped_fails_within_timeout(restartable_redis: RedisServer) -> None:
    with _stopped(restartable_redis):
        took = await _timed_failure(
            lambda: dmem.open(restartable_redis.url, namespace="x", **OPTIONS)
        )
    print(f"open against a stopped server failed after {took:.2f}s")
    assert took <= BOUND
    async with dmem.open(restartable_redis.url, namespace="x", **OPTIONS) as kv:
        assert await kv.set("k", 1)


async def test_sentinel_mode_stopped_primary_or_sentinel(redis_sentinel_url: str) -> None:
    """Sentinel mode: a hung primary fails calls within ``timeout``; so does opening while the
    only sentinel hangs (asking it for the primary is part of connecting). Both stops are
    shorter than the sentinel's down-after-milliseconds (5 s), so no failover starts."""
    sentinel_port = int(redis_sentinel_url.rsplit("@", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    primary_port = int(
        _redis_cli(sentinel_port, "SENTINEL", "get-master-addr-by-name", "dmemsvc").split()[1]
    )
    async with dmem.open(redis_sentinel_url, namespace="sentinel-stop", **OPTIONS) as kv:
        await kv.set("a", 1)
        with _stopped(_pid(primary_port, PASSWORD)):
            took = [
                await _timed_failure(lambda: kv.get("a")),
                await _timed_failure(lambda: kv.set_many({"a": 2, "b": 3}, tags={"t": "v"})),
            ]
        assert await kv.set("after", 1) and await kv.get("after") == 1
    with _stopped(_pid(sentinel_port)):
        took.append(
            await _timed_failure(lambda: dmem.open(redis_sentinel_url, namespace="x", **OPTIONS))
        )
    print("sentinel mode:", [round(t, 2) for t in took])
    assert max(took) <= BOUND, took
    async with dmem.open(redis_sentinel_url, namespace="sentinel-stop", **OPTIONS) as kv:
        assert await kv.get("after") == 1
        await kv.clear()


# --- a crash and restart under a mixed workload ------------------------------------------------
async def test_kill_and_restart_under_mixed_workload(restartable_redis: RedisServer) -> None:
    """Six tasks run every kind of call through a SIGKILL and a restart: only dmem errors
    escape, each failure comes within ``timeout``, and every task succeeds again afterwards
    on the same store."""
    kv = await dmem.open(restartable_redis.url, namespace="mixed", **OPTIONS)
    client = kv.provider._client  # type: ignore[attr-defined]
    await kv.set_many({"a": 1, "b": 2}, tags={"t": "v"})
    calls = list(_calls(kv).values())
    failures: list[tuple[str, float]] = []
    escaped: list[BaseException] = []
    last_success = [0.0] * 6
    restarted = [float("inf")]  # when the server was back up
    stop, all_back = asyncio.Event(), asyncio.Event()

    async def worker(n: int) -> None:
        i = n
        while not stop.is_set():
            i += 1
            started = time.monotonic()
            try:
                await calls[i % len(calls)]()
                last_success[n] = time.monotonic()
                if min(last_success) > restarted[0]:
                    all_back.set()
            except dmem.ProviderError as exc:  # ProviderUnavailableError is one
                failures.append((type(exc).__name__, time.monotonic() - started))
                await asyncio.sleep(0.01)
            except BaseException as exc:  # noqa: BLE001 - recorded: the test fails on any
                escaped.append(exc)
                return

    tasks = [asyncio.create_task(worker(n)) for n in range(6)]
    try:
        await asyncio.sleep(0.4)
        await asyncio.to_thread(restartable_redis.kill)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(restartable_redis.start)
        restarted[0] = time.monotonic()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(all_back.wait(), 5.0)
        recovered = time.monotonic() - restarted[0]
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert not escaped, escaped
    assert failures, "the kill went unnoticed"
    print(f"{len(failures)} failures, every task back {recovered:.2f}s after the restart")
    assert {name for name, _ in failures} <= {"ProviderUnavailableError", "ProviderError"}
    assert max(seconds for _, seconds in failures) <= BOUND, failures
    assert all_back.is_set(), "a task did not succeed within 5 s of the restart"
    assert kv.provider._client is client  # type: ignore[attr-defined]
    await kv.aclose()


async def test_scripts_reloaded_after_restart_without_persistence(tmp_path: object) -> None:
    """A restarted server forgets the script cache (and here its data): EVALSHA falls back."""
    from pathlib import Path

    from redis_servers import require_redis

    require_redis()
    server = RedisServer(Path(str(tmp_path)) / "noaof")
    server.start()
    try:
        async with dmem.open(server.url, namespace="r", **OPTIONS) as kv:
            await kv.set("a", 1, tags={"t": "1"})
            server.kill()
            server.start()
            assert await kv.set("a", 2, tags={"t": "2"})  # NOSCRIPT -> EVAL, transparently
            assert await kv.find_by_tag("t", "2") == ["a"]
            assert await kv.get_tags("a") == {"t": "2"}
    finally:
        server.stop()


def test_tag_suffix_is_length_prefixed() -> None:
    assert tag_suffix("a:b", "c") != tag_suffix("a", "b:c")
    assert tag_suffix("é", "x") == "t:2:é:x"


# --- a lost reply: if_not_exists is never re-sent ----------------------------------------------
class ReplyDropper:
    """A TCP proxy in front of a real server that can swallow one reply.

    The command reaches the server and runs; only its answer is lost, as when a network
    path breaks after the request got through, or the reply comes after the client's timeout.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.drop_next_reply = False
        self.dropped = 0
        self.connections = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool) -> None:
            try:
                while data := await src.read(65536):
                    if replies and self.drop_next_reply:
                        self.drop_next_reply = False
                        self.dropped += 1
                        continue
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        for task in (
            asyncio.create_task(pump(reader, up_writer, False)),
            asyncio.create_task(pump(up_reader, writer, True)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


@pytest.fixture
async def dropper(restartable_redis: RedisServer) -> AsyncIterator[tuple[ReplyDropper, str]]:
    proxy = ReplyDropper(restartable_redis.port)
    port = await proxy.start()
    yield proxy, f"redis://127.0.0.1:{port}/0"
    await proxy.stop()


# The default retries=1: redis-py would re-send a command whose reply it did not get. A 2 s
# timeout gives each of the two attempts about 0.49 s to wait for a reply.
LOST_REPLY_OPTIONS: dict[str, Any] = {"timeout": 2.0, "retry_backoff_max": 0.05}


async def test_lost_reply_of_set_nx_is_an_error_not_false(
    dropper: tuple[ReplyDropper, str], restartable_redis: RedisServer
) -> None:
    proxy, url = dropper
    async with dmem.open(url, namespace="lost", **LOST_REPLY_OPTIONS) as kv:
        for tags in ({}, {"owner": "me"}):
            key = f"lock{len(tags)}"
            proxy.drop_next_reply = True
            # The SET NX ran and wrote; re-sent, it would answer False, so that possibly
            # nobody sees True. Without a reply the outcome is unknown: an error, never False.
            with pytest.raises(dmem.ProviderUnavailableError):
                await kv.set(key, "me", ttl=30, if_not_exists=True, tags=tags)
            assert proxy.dropped == 1 + len(tags)
            assert await kv.get(key) == "me"  # it did run, once, and the store still works
            assert await kv.get_tags(key) == tags
            assert not await kv.set(key, "other", if_not_exists=True)
        proxy.drop_next_reply = True
        with pytest.raises(dmem.ProviderUnavailableError):
            await kv.set_many({"a": 1, "b": 2}, if_not_exists=True)
        assert await kv.get_many(["a", "b"]) == {"a": 1, "b": 2}
        assert await kv.set_many({"a": 3, "c": 4}, if_not_exists=True) == 1
        # Other writes are idempotent and keep redis-py's retry: a lost reply is re-sent.
        proxy.drop_next_reply = True
        await kv.set("plain", 1, ttl=30)
        assert await kv.get("plain") == 1


async def test_set_nx_after_a_restart_still_reconnects(restartable_redis: RedisServer) -> None:
    """Failures before the command is sent (a pooled connection the server closed) are
    retried as before: only the command itself is never re-sent."""
    async with dmem.open(restartable_redis.url, namespace="restart", timeout=TIMEOUT) as kv:
        assert await kv.set("k", 1, if_not_exists=True)
        await asyncio.to_thread(restartable_redis.kill)
        await asyncio.to_thread(restartable_redis.start)
        assert await kv.set("k2", 2, if_not_exists=True)
        assert not await kv.set("k2", 3, if_not_exists=True)
        assert await kv.set_many({"k3": 3, "k4": 4}, if_not_exists=True) == 2
        assert await kv.get_many(["k", "k2", "k3"]) == {"k": 1, "k2": 2, "k3": 3}
