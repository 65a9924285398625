"""The sync API's cost: ``SyncStore.get`` against ``await Store.get``, in one process.

    python bench/bench_sync.py [--check] [--quick] [--runs N]

For each backend (``memory://``, a SQLite file, Redis), the same key is read through an async
Store on a loop in the main thread, and through a SyncStore (which runs the same Store code on
dmem's loop thread and blocks the caller meanwhile). Each call is timed on its own; a row
prints the median per-call time of both sides and the overhead (sync - async), from
interleaved rounds, so a noisy neighbour hurts both alike. Then ``--runs`` repetitions of the
whole table (default 5): the median overhead over the runs and its range.

The "hand-off" row is where the overhead goes: ``dmem.run_sync`` of a coroutine that returns
at once, against awaiting it (the two thread switches and the task, nothing else).

Target: the overhead is at most 25 us median on ``get``.
Redis: a throwaway redis-server from PATH, or ``DMEM_BENCH_REDIS_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dmem

from bench._harness import ServerUnavailable, redis_url

TARGET_US = 25.0
ROUNDS = 10


def _time_async(
    loop: asyncio.AbstractEventLoop, op: Callable[[], Awaitable[Any]], n: int
) -> list[float]:
    async def run() -> list[float]:
        times: list[float] = []
        clock = time.perf_counter_ns
        for _ in range(n):
            start = clock()
            await op()
            times.append(clock() - start)
        return times

    return loop.run_until_complete(run())


def _time_sync(op: Callable[[], Any], n: int) -> list[float]:
    times: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(n):
        start = clock()
        op()
        times.append(clock() - start)
    return times


def _compare(
    loop: asyncio.AbstractEventLoop,
    async_op: Callable[[], Awaitable[Any]],
    sync_op: Callable[[], Any],
    calls: int,
) -> tuple[float, float]:
    """Median per-call microseconds of the async and the sync side, interleaved rounds."""
    async_times: list[float] = []
    sync_times: list[float] = []
    _time_async(loop, async_op, calls // 10)  # warm both up
    _time_sync(sync_op, calls // 10)
    gc.disable()
    try:
        for _ in range(ROUNDS):
            async_times += _time_async(loop, async_op, calls)
            sync_times += _time_sync(sync_op, calls)
    finally:
        gc.enable()
    return statistics.median(async_times) / 1000, statistics.median(sync_times) / 1000


async def _noop() -> None:
    return None


@contextlib.contextmanager
def _urls(workdir: str) -> Iterator[list[tuple[str, str]]]:
    urls = [("memory", "memory://bench-sync"), ("sqlite", f"sqlite:///{workdir}/bench.db")]
    try:
        with redis_url() as url:
            yield [*urls, ("redis", url)]
    except ServerUnavailable as exc:
        print(f"(redis row left out: {exc})")
        yield urls


def _one_run(urls: list[tuple[str, str]], calls: int) -> dict[str, tuple[float, float]]:
    loop = asyncio.new_event_loop()
    rows: dict[str, tuple[float, float]] = {}
    try:
        rows["hand-off"] = _compare(loop, _noop, lambda: dmem.run_sync(_noop()), calls)
        for name, url in urls:
            store = loop.run_until_complete(dmem.open(url, namespace="bench-sync"))
            kv = dmem.open_sync(url, namespace="bench-sync")
            try:
                kv.set("key", {"name": "Ada", "n": 1})
                rows[f"get {name}"] = _compare(
                    loop,
                    functools.partial(store.get, "key"),
                    functools.partial(kv.get, "key"),
                    calls,
                )
            finally:
                kv.clear()
                kv.close()
                loop.run_until_complete(store.aclose())
    finally:
        loop.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    parser.add_argument("--runs", type=int, default=5, help="repetitions of the table")
    args = parser.parse_args()
    calls = 200 if args.quick else 2000
    runs: list[dict[str, tuple[float, float]]] = []
    with tempfile.TemporaryDirectory() as workdir, _urls(workdir) as urls:
        for run in range(1, args.runs + 1):
            rows = _one_run(urls, calls)
            runs.append(rows)
            print(
                f"run {run}: "
                + "  ".join(
                    f"{name}: {s - a:+.1f} us ({a:.1f} -> {s:.1f})" for name, (a, s) in rows.items()
                )
            )
    print()
    print(f"{'row':<14}{'async us':>10}{'sync us':>10}{'overhead us (median, range)':>34}")
    missed = False
    for name in runs[0]:
        overheads = [run[name][1] - run[name][0] for run in runs]
        median = statistics.median(overheads)
        async_us = statistics.median(run[name][0] for run in runs)
        sync_us = statistics.median(run[name][1] for run in runs)
        verdict = ""
        if name.startswith("get"):
            met = median <= TARGET_US
            missed = missed or not met
            verdict = f"  target <= {TARGET_US:g}: {'met' if met else 'MISSED'}"
        print(
            f"{name:<14}{async_us:>10.1f}{sync_us:>10.1f}"
            f"{median:>12.1f} ({min(overheads):.1f} .. {max(overheads):.1f}){verdict}"
        )
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
