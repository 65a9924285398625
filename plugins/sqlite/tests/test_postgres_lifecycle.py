"""Open/close cycles on PostgreSQL leave nothing behind: no asyncio noise on stderr, no file
descriptors, threads or server connections.

The cycles run in a child process (this file run as a script), so that its stderr holds
exactly what asyncio logs ("Future exception was never retrieved", "Task was destroyed but
it is pending", ResourceWarnings), flushed by a final garbage collection.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import threading
import time
import warnings

CYCLES = 1000


async def _cycles(url: str, count: int) -> dict[str, int]:
    import dmem

    async def cycle(i: int) -> None:
        kv = await dmem.open(url, namespace="lifecycle")
        # The first set starts the background purge, which runs while the next call holds
        # the store's one connection; aclose() comes right after that call. Before the
        # fix, set+set+close logged "Future exception was never retrieved" in about half
        # the cycles, set+get+close in 3%.
        await kv.set("k", i)
        if i % 2:
            assert await kv.get("k") == i
        else:
            await kv.set("k", i + 1)
        await kv.aclose()

    await cycle(0)  # the first cycle imports and caches what every later one uses
    gc.collect()
    fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
    for i in range(1, count):
        await cycle(i)
    gc.collect()
    await asyncio.sleep(0)
    return {
        "fds_before": fds,
        "fds_after": len(os.listdir("/proc/self/fd")),
        "threads_before": threads,
        "threads_after": threading.active_count(),
    }


def run_cycles(url: str, count: int) -> tuple[dict[str, int], str]:
    """Run ``count`` cycles in a child; (its counts, its stderr)."""
    child = subprocess.run(
        [sys.executable, "-W", "default", __file__, url, str(count)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout.strip().splitlines()[-1]), child.stderr


async def _server_connections(url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return int(count)


async def _settled_connections(url: str, most: int) -> int:
    """The server's count once it is at most ``most``, or after 5 s: a backend whose client
    has gone exits a moment later."""
    deadline = time.monotonic() + 5
    while True:
        count = await _server_connections(url)
        if count <= most or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.05)


async def test_open_close_cycles_leave_nothing_behind(postgres_url: str) -> None:
    before = await _server_connections(postgres_url)
    start = time.monotonic()
    counts, stderr = await asyncio.to_thread(run_cycles, postgres_url, CYCLES)
    elapsed = time.monotonic() - start
    assert stderr == "", stderr[-3000:]
    assert counts["fds_after"] == counts["fds_before"], counts
    assert counts["threads_after"] == counts["threads_before"], counts
    after = await _settled_connections(postgres_url, before)
    assert after <= before, (before, after)
    print(f"{CYCLES} cycles in {elapsed:.1f} s; {counts}; server connections {before} -> {after}")


if __name__ == "__main__":
    warnings.simplefilter("default")  # ResourceWarnings on stderr too
    result = asyncio.run(_cycles(sys.argv[1], int(sys.argv[2])))
    gc.collect()
    print(json.dumps(result))
