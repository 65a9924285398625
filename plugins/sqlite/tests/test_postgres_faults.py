"""Faults on PostgreSQL: a server that stops answering (SIGSTOP), and one killed mid-workload.

The contract: while the server does not answer, every call raises ProviderUnavailableError
within ``timeout`` (connecting, waiting for a pooled connection and the statement alike,
``command_timeout`` defaulting to ``timeout``), never a hang; once it answers again the same
store works, without a new ``initialize()``; only dmem's error types escape; nothing is
left behind (asyncio's "never retrieved" logs, server connections).

These tests stop and kill their own throwaway server, never the session's.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import dmem
import pytest
from dmem import DmemError, ProviderUnavailableError
from pgserver import PostgresServer, throwaway

asyncpg = pytest.importorskip("asyncpg")

TIMEOUT = 1.0
# The bound is the store's timeout; the slack is for a busy two-core machine (other test
# runs share it), not for the client.
SLACK = 1.0
BOUND = TIMEOUT + SLACK
HARD_STOP = 30.0  # a call still running then is a hang: fail the test, not the whole run


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with throwaway() as started:
        yield started


@pytest.fixture
def asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """asyncio's error logs during the test ("Future exception was never retrieved", "Task
    was destroyed but it is pending"), after a garbage collection flushed them."""
    records: list[logging.LogRecord] = []
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        yield records
        gc.collect()
        records += [r for r in caplog.records if r.name == "asyncio"]


async def _timed(call: Awaitable[Any]) -> tuple[BaseException | None, float]:
    """(what the call raised, or None; seconds it took)."""
    start = time.monotonic()
    try:
        await asyncio.wait_for(call, HARD_STOP)
    except Exception as exc:  # noqa: BLE001 - the caller checks the type
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


async def _connections(server: PostgresServer) -> int:
    conn = await asyncpg.connect(server.url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return int(count)


async def _settled_connections(server: PostgresServer, most: int) -> int:
    """The server's count once it is at most ``most``, or after 10 s: a backend whose client
    went away while it was stopped exits a moment after it runs again."""
    deadline = time.monotonic() + 10
    while True:
        count = await _connections(server)
        if count <= most or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.05)


@pytest.fixture
async def store(server: PostgresServer) -> AsyncIterator[dmem.Store]:
    kv = await dmem.open(server.url, namespace="faults", timeout=TIMEOUT, pool_size=4)
    try:
        await kv.clear()
        yield kv
    finally:
        server.resume()
        await kv.aclose()


def _calls(kv: dmem.Store) -> dict[str, Callable[[], Awaitable[Any]]]:
    return {
        "get": lambda: kv.get("k"),
        "set": lambda: kv.set("k", "while stopped"),
        "set_many": lambda: kv.set_many({"m1": 1, "m2": 2}, tags={"t": "x"}),
        "keys": lambda: kv.keys("*"),
        "keys prefix": lambda: kv.keys("k*"),
        "find_by_tag": lambda: kv.find_by_tag("t", "x"),
    }


async def test_a_stopped_server_fails_every_call_within_timeout_and_the_store_recovers(
    server: PostgresServer, store: dmem.Store, asyncio_errors: list[logging.LogRecord]
) -> None:
    await store.set("k", "before")
    await store.set_many({f"w{i}": i for i in range(8)})
    # Several connections in the pool, so calls meet idle ones as well as new ones.
    await asyncio.gather(*(store.get(f"w{i}") for i in range(8)))
    own = (await store.health()).details["connections"]
    assert isinstance(own, int)
    baseline = await _connections(server)  # the store's connections included
    elapsed: dict[str, float] = {}
    with server.paused():
        # One at a time: the first ones hang on pooled connections (the statement limit
        # cuts them off), later ones on connecting (the connect timeout).
        for name, call in _calls(store).items():
            error, elapsed[name] = await _timed(call())
            assert isinstance(error, ProviderUnavailableError), (name, error)
        # At once: more calls than the pool has connections, so some wait for one.
        results = await asyncio.gather(*(_timed(store.get(f"w{i}")) for i in range(8)))
        for i, (error, seconds) in enumerate(results):
            assert isinstance(error, ProviderUnavailableError), error
            elapsed[f"concurrent get {i}"] = seconds
        report = await store.health()
        assert report.status == "unhealthy"
    print({name: round(seconds, 2) for name, seconds in elapsed.items()})
    slow = {name: seconds for name, seconds in elapsed.items() if seconds > BOUND}
    assert not slow, f"calls took longer than timeout={TIMEOUT} + {SLACK} s: {slow}"

    # Running again: the same store works, no initialize().
    error, seconds = await _timed(store.get("w3"))
    assert error is None, error
    assert await store.get("w3") == 3
    # A write cut off while the server was stopped may still land when it runs again (the
    # server had it and cannot be told to drop it while stopped): either value is right.
    assert await store.get("k") in ("before", "while stopped")
    assert await store.set("k", "after")
    assert await store.get("k") == "after"
    assert sorted(await store.keys("w*")) == sorted(f"w{i}" for i in range(8))
    await store.set_many({"m1": 1, "m2": 2}, tags={"t": "x"})
    assert sorted(await store.find_by_tag("t", "x")) == ["m1", "m2"]
    assert (await store.health()).ok
    await store.clear()
    await store.aclose()
    # Connections cut off while the server was stopped are gone from it too.
    after = await _settled_connections(server, baseline - own)
    print(f"server connections: {baseline} with the store open ({own} its own), {after} after")
    assert after <= baseline - own
    assert not asyncio_errors, [r.getMessage() for r in asyncio_errors]


async def test_command_timeout_stays_an_override_for_long_statements(
    server: PostgresServer,
) -> None:
    """command_timeout raised above timeout lets a statement run longer than timeout."""
    async with dmem.open(server.url, namespace="long", timeout=TIMEOUT, command_timeout=10) as kv:
        provider: Any = kv.provider
        # A statement of 1.5 s: past timeout, within command_timeout.
        assert await provider._fetchval("SELECT 1 FROM pg_sleep(1.5)") == 1
    async with dmem.open(server.url, namespace="long", timeout=TIMEOUT) as kv:
        provider = kv.provider
        error, seconds = await _timed(provider._fetchval("SELECT 1 FROM pg_sleep(3)"))
        assert isinstance(error, ProviderUnavailableError), error
        assert seconds < BOUND, seconds  # command_timeout defaults to timeout


async def test_a_store_opened_while_the_server_is_stopped_fails_within_timeout(
    server: PostgresServer, asyncio_errors: list[logging.LogRecord]
) -> None:
    with server.paused():
        error, seconds = await _timed(dmem.open(server.url, timeout=TIMEOUT))
    assert isinstance(error, ProviderUnavailableError), error
    assert seconds < BOUND, seconds
    print(f"open while stopped failed in {seconds:.2f} s")
    async with dmem.open(server.url, namespace="faults", timeout=TIMEOUT) as kv:
        assert await kv.set("opened", 1)
        await kv.clear()
    assert not asyncio_errors, [r.getMessage() for r in asyncio_errors]


async def test_closing_a_store_while_the_server_is_stopped_takes_at_most_timeout(
    server: PostgresServer, asyncio_errors: list[logging.LogRecord]
) -> None:
    kv = await dmem.open(server.url, namespace="faults", timeout=TIMEOUT, pool_size=4)
    await asyncio.gather(*(kv.get(f"k{i}") for i in range(8)))
    assert (await kv.health()).details["connections"] == 4
    with server.paused():
        error, seconds = await _timed(kv.aclose())
    assert error is None, error
    # Each idle connection's goodbye waits up to timeout, all of them at once (one after
    # another before: 4.0 s here).
    assert seconds < BOUND, seconds
    print(f"aclose while stopped: {seconds:.2f} s")
    assert not asyncio_errors, [r.getMessage() for r in asyncio_errors]


async def test_a_server_killed_and_restarted_under_concurrent_work(
    server: PostgresServer, asyncio_errors: list[logging.LogRecord]
) -> None:
    """SIGKILL of the whole cluster while eight tasks read and write: only dmem errors
    escape (ProviderUnavailableError), and every task's calls succeed again after the
    restart, same store."""
    kv = await dmem.open(server.url, namespace="crash", timeout=2.0, pool_size=4)
    errors: list[BaseException] = []
    done: dict[int, int] = {}  # successful calls per task
    after_restart: dict[int, int] = {}
    restarted = asyncio.Event()
    stop = asyncio.Event()

    async def worker(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            key = f"w{n}:{i % 5}"
            try:
                match i % 5:
                    case 0:
                        await kv.set(key, i, tags={"worker": str(n)})
                    case 1:
                        await kv.get(key)
                    case 2:
                        await kv.set_many({f"{key}:{j}": j for j in range(5)}, ttl=60)
                    case 3:
                        await kv.keys(f"w{n}:*")
                    case _:
                        await kv.delete(key)
            except Exception as exc:  # noqa: BLE001 - checked below: dmem types only
                errors.append(exc)
                await asyncio.sleep(0.02)
                continue
            done[n] = done.get(n, 0) + 1
            if restarted.is_set():
                after_restart[n] = after_restart.get(n, 0) + 1

    tasks = [asyncio.create_task(worker(n)) for n in range(8)]
    try:
        await asyncio.sleep(0.5)
        assert len(done) == 8, done
        await asyncio.to_thread(server.crash)
        await asyncio.sleep(0.5)  # down for a while: calls fail
        await asyncio.to_thread(server.launch)
        restarted.set()
        deadline = time.monotonic() + 15
        while len(after_restart) < 8 or min(after_restart.values()) < 5:
            assert time.monotonic() < deadline, f"no recovery: {after_restart}"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await kv.aclose()
    assert errors, "the crash failed no call"
    foreign = [e for e in errors if not isinstance(e, DmemError)]
    assert not foreign, foreign[:5]
    # A crash is the server going away: every failure says so (ProviderUnavailableError, on
    # which a caller may retry), none looks like a bad statement (ProviderError).
    other = [e for e in errors if not isinstance(e, ProviderUnavailableError)]
    assert not other, [(e, e.__cause__) for e in other[:5]]
    kinds = sorted({f"{type(e).__name__} ({type(e.__cause__).__name__})" for e in errors})
    print(f"{len(errors)} failed calls ({', '.join(kinds)}); after restart: {after_restart}")
    assert not asyncio_errors, [r.getMessage() for r in asyncio_errors]
