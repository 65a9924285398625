"""Opening and closing leaves nothing behind: no server connection, file descriptor, thread
or ResourceWarning, in standalone, Sentinel and Cluster mode.

redis-py does not close a pool it was handed (``Redis(connection_pool=pool)``): before the
provider closed it explicitly, every open/close cycle left one connection on the server until
the garbage collector found it, and then warned about it. The cycles run with the collector
off, so a connection that only garbage collection would close stays visible to the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dmem
import pytest
from redis_servers import PASSWORD, RedisServer, require_redis

CYCLES = 1000


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A password-protected server only this test talks to, so its client count is exact."""
    require_redis()
    server = RedisServer(tmp_path / "lifecycle", password=PASSWORD)
    server.start()
    yield server
    server.stop()


def _connected_clients(host: str, port: int, password: str | None = None) -> int:
    """INFO clients' connected_clients, read by redis-cli (which counts itself each time)."""
    args = ["redis-cli", "-h", host, "-p", str(port)]
    if password:
        args += ["--no-auth-warning", "-a", password]
    out = subprocess.run(
        [*args, "INFO", "clients"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    for line in out.splitlines():
        if line.startswith("connected_clients:"):
            return int(line.split(":", 1)[1])
    raise AssertionError(f"no connected_clients in INFO clients of {host}:{port}: {out!r}")


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextlib.contextmanager
def _no_resource_warnings() -> Iterator[list[str]]:
    """Collect ResourceWarnings, also those raised in ``__del__`` (which are unraisable).

    The gathered list is filled on exit; the caller asserts it is empty. The collector is
    off inside, and run once at the end so that whatever it would have finalized is checked
    too.
    """
    problems: list[str] = []
    old_hook = sys.unraisablehook

    def hook(info: Any) -> None:
        problems.append(
            f"unraisable in {info.object!r}: {info.exc_type.__name__}: {info.exc_value}"
        )

    gc_was_enabled = gc.isenabled()
    sys.unraisablehook = hook
    gc.disable()
    try:
        with warnings.catch_warnings():
            # An error, so a warning raised in ordinary code fails the test where it happens
            # and one raised in __del__ reaches the hook above.
            warnings.simplefilter("error", ResourceWarning)
            yield problems
            gc.collect()
    finally:
        sys.unraisablehook = old_hook
        if gc_was_enabled:
            gc.enable()


async def _cycles(url: str, count: int, **options: Any) -> None:
    for i in range(count):
        async with dmem.open(url, namespace="cycles", **options) as kv:
            await kv.set("k", i)


async def test_open_close_cycles_leave_nothing(own_redis: RedisServer) -> None:
    url = own_redis.url
    await _cycles(url, 1)  # warm-up: plugin loading, imports, lazily created globals
    clients_before = _connected_clients("127.0.0.1", own_redis.port, PASSWORD)
    fds_before, threads_before = _open_fds(), threading.active_count()
    with _no_resource_warnings() as problems:
        await _cycles(url, CYCLES)
        clients_after = _connected_clients("127.0.0.1", own_redis.port, PASSWORD)
        fds_after, threads_after = _open_fds(), threading.active_count()
    print(
        f"{CYCLES} cycles: connected_clients {clients_before} -> {clients_after}, "
        f"fds {fds_before} -> {fds_after}, threads {threads_before} -> {threads_after}"
    )
    assert problems == []
    assert clients_after == clients_before
    assert fds_after == fds_before
    assert threads_after == threads_before


# Run in a fresh interpreter with ResourceWarning as an error: anything left for the garbage
# collector or for interpreter shutdown to close is printed to stderr there, which must stay
# empty.
_CHILD = """
import asyncio, gc, json, os, sys, threading
import dmem

async def main(url, count):
    gc.disable()
    for i in range(count):
        async with dmem.open(url, namespace="cycles") as kv:
            await kv.set("k", i)
    fds = len(os.listdir("/proc/self/fd"))
    gc.enable()
    gc.collect()
    return fds

fds = asyncio.run(main(sys.argv[1], int(sys.argv[2])))
print(json.dumps({"fds": fds, "threads": threading.active_count()}))
"""


def test_cycles_in_a_fresh_interpreter_leave_no_resource_warning(own_redis: RedisServer) -> None:
    before = _connected_clients("127.0.0.1", own_redis.port, PASSWORD)
    counts = []
    for count in (1, CYCLES):
        result = subprocess.run(
            [
                sys.executable,
                "-W",
                "error::ResourceWarning",
                "-c",
                _CHILD,
                own_redis.url,
                str(count),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stderr == "", result.stderr[-3000:]
        counts.append(json.loads(result.stdout))
    # As many descriptors and threads after a thousand cycles as after one.
    assert counts[0] == counts[1], counts
    assert _connected_clients("127.0.0.1", own_redis.port, PASSWORD) == before


def _cluster_nodes(url: str) -> list[tuple[str, int]]:
    host, port = url.split("://", 1)[1].split(",")[0].rsplit(":", 1)
    out = subprocess.run(
        ["redis-cli", "-h", host, "-p", port, "CLUSTER", "NODES"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    nodes = []
    for line in out.splitlines():
        address = line.split()[1].split("@", 1)[0]
        node_host, node_port = address.rsplit(":", 1)
        nodes.append((node_host, int(node_port)))
    return nodes


async def test_cluster_cycles_leave_no_connection(redis_cluster_url: str) -> None:
    await _cycles(redis_cluster_url, 1)
    nodes = _cluster_nodes(redis_cluster_url)
    before = [_connected_clients(h, p) for h, p in nodes]
    with _no_resource_warnings() as problems:
        await _cycles(redis_cluster_url, 30)
        after = [_connected_clients(h, p) for h, p in nodes]
    assert problems == []
    assert after == before


async def test_cluster_failed_open_leaves_no_connection(redis_cluster_url: str) -> None:
    """A cluster client whose opening fails (refused credentials) is closed too."""
    nodes = _cluster_nodes(redis_cluster_url)
    before = [_connected_clients(h, p) for h, p in nodes]
    with _no_resource_warnings() as problems:
        for _ in range(10):
            with pytest.raises(dmem.ProviderError):
                # No such user: every node refuses the AUTH.
                await dmem.open(redis_cluster_url, username="nobody", password="wrong")
        after = [_connected_clients(h, p) for h, p in nodes]
    assert problems == []
    assert after == before


def _primary_of(host: str, port: int) -> tuple[str, int]:
    command = ["SENTINEL", "get-master-addr-by-name", "dmemsvc"]
    out = subprocess.run(
        ["redis-cli", "-h", host, "-p", str(port), *command],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout.split()
    return out[0], int(out[1])


async def test_sentinel_cycles_leave_no_connection(redis_sentinel_url: str) -> None:
    await _cycles(redis_sentinel_url, 1)
    host, port = redis_sentinel_url.rsplit("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
    primary = _primary_of(host, int(port))
    sentinel = (host, int(port))

    def counts() -> tuple[int, int]:
        return _connected_clients(*sentinel), _connected_clients(*primary, PASSWORD)

    before = counts()
    with _no_resource_warnings() as problems:
        await _cycles(redis_sentinel_url, 30)
        after = counts()
    assert problems == []
    assert after == before


async def test_failed_open_leaves_no_connection(own_redis: RedisServer) -> None:
    """initialize() that fails after connecting (a refused password) closes what it opened."""
    bad = f"redis://:wrong-{PASSWORD}@127.0.0.1:{own_redis.port}/0"
    before = _connected_clients("127.0.0.1", own_redis.port, PASSWORD)
    fds = _open_fds()
    with _no_resource_warnings() as problems:
        for _ in range(20):
            with pytest.raises(dmem.ProviderError):
                await dmem.open(bad)
        await asyncio.sleep(0)
        after = _connected_clients("127.0.0.1", own_redis.port, PASSWORD)
    assert problems == []
    assert after == before
    assert _open_fds() == fds
