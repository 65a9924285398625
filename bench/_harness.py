"""Side-by-side timing of dmem and a reference client in one process.

Each row runs the dmem call and the reference call in interleaved rounds (so
a noisy neighbour hurts both alike), keeps the best round of each, and prints
ops/s, the ratio dmem/reference (higher is better for dmem) and, when a
target is given, whether the ratio meets it. Rounds go on past the minimum count
until the row has run for ``min_seconds``: on the project's VM, Python code slows by
up to 1.9x in spells of 0.1-2 s (its two vCPUs share one physical core; see
docs/performance.md), and a row shorter than one spell can spend all of one side's
rounds inside it. The verdict is on the best rounds;
the ratio of the median rounds is printed beside it, because on a noisy machine
one lucky round of either side moves the best-round ratio more than the median.
Benchmarks are not tests: they print, and exit non-zero only when asked to check
targets (``--check``).

    bench = Bench("memory backend")
    await bench.compare("get", dmem_op, reference_op, reference="dict lookup", target=0.1)
    bench.report()

For many callers on one loop (an agent server's hundreds of tasks), :func:`run_concurrent`
times ``tasks`` tasks each awaiting ``calls_per_task`` calls, and
:meth:`Bench.compare_concurrent` makes a row of it: the throughput ratio, with both sides'
p99 call latency printed beside the table (a row with a target is met only if its p99 is no
worse than the reference's too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Bench",
    "Row",
    "ServerUnavailable",
    "parse_args",
    "postgres_url",
    "redis_url",
    "run_concurrent",
    "start_redis_server",
]

AsyncOp = Callable[[], Awaitable[object]]
_MAX_ROUNDS = 200  # a bound on the time-driven rounds when one round is very short


@dataclass
class Row:
    name: str
    reference: str
    dmem_ops: float
    reference_ops: float
    items_per_op: int
    target: float | None
    unit: str | None = None  # printed instead of ops/s or items/s (e.g. "MB/s")
    median_ratio: float | None = None  # dmem/reference of the median rounds
    dmem_p99: float | None = None  # seconds, concurrent rows: p99 call latency (median round)
    reference_p99: float | None = None

    @property
    def ratio(self) -> float:
        return self.dmem_ops / self.reference_ops if self.reference_ops else float("inf")

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        # A concurrent row also promises a p99 call latency no worse than the reference's.
        dmem_p99, reference_p99 = self.dmem_p99, self.reference_p99
        if dmem_p99 is not None and reference_p99 is not None and dmem_p99 > reference_p99:
            return False
        return self.ratio >= self.target


async def _time_round(op: AsyncOp, ops: int) -> float:
    """Seconds for ``ops`` sequential awaits of ``op()``."""
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(ops):
            await op()
        return time.perf_counter() - start
    finally:
        gc.enable()


async def run_concurrent(
    op: Callable[[int], Awaitable[Any]], *, tasks: int, calls_per_task: int
) -> tuple[float, float]:
    """Run ``tasks`` tasks on this loop, each awaiting ``op(i)`` ``calls_per_task`` times in
    turn; return (calls per second over the whole run, p99 latency of one call in seconds).

    ``i`` numbers the calls of the run, ``task * calls_per_task + call`` (0 to
    ``tasks * calls_per_task - 1``), for an op that picks its key from it. The tasks start
    together (each waits for a common start), so the clock covers only the calls.
    """
    latencies: list[float] = []
    record = latencies.append
    clock = time.perf_counter
    go = asyncio.Event()

    async def worker(task: int) -> None:
        await go.wait()
        base = task * calls_per_task
        for call in range(calls_per_task):
            started = clock()
            await op(base + call)
            record(clock() - started)

    workers = [asyncio.create_task(worker(task)) for task in range(tasks)]
    await asyncio.sleep(0)  # every worker is now waiting for the start
    gc.disable()
    try:
        start = clock()
        go.set()
        await asyncio.gather(*workers)
        elapsed = clock() - start
    finally:
        gc.enable()
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else latencies[0]
    return len(latencies) / elapsed, p99


class Bench:
    """A table of dmem-vs-reference rows for one backend."""

    def __init__(self, title: str, *, rounds: int = 5, min_seconds: float = 3.0) -> None:
        self.title = title
        self.rounds = rounds
        self.min_seconds = min_seconds
        self.rows: list[Row] = []

    async def compare(
        self,
        name: str,
        dmem_op: AsyncOp,
        reference_op: AsyncOp,
        *,
        reference: str,
        ops: int = 2000,
        items_per_op: int = 1,
        target: float | None = None,
        warmup: int | None = None,
    ) -> Row:
        """Time both ops (each awaited ``ops`` times a round) and add a row.

        ``items_per_op`` turns ops/s into items/s for batch calls. ``target`` is the
        minimum ratio dmem/reference the project promises for this row.
        """
        for _ in range(warmup if warmup is not None else max(1, ops // 10)):
            await dmem_op()
            await reference_op()
        dmem_times: list[float] = []
        ref_times: list[float] = []
        start = time.perf_counter()
        while len(dmem_times) < self.rounds or (
            time.perf_counter() - start < self.min_seconds and len(dmem_times) < _MAX_ROUNDS
        ):
            dmem_times.append(await _time_round(dmem_op, ops))
            ref_times.append(await _time_round(reference_op, ops))
        row = Row(
            name,
            reference,
            ops * items_per_op / min(dmem_times),
            ops * items_per_op / min(ref_times),
            items_per_op,
            target,
            median_ratio=statistics.median(ref_times) / statistics.median(dmem_times),
        )
        self.rows.append(row)
        return row

    async def compare_concurrent(
        self,
        name: str,
        dmem_op: Callable[[int], Awaitable[Any]],
        reference_op: Callable[[int], Awaitable[Any]],
        *,
        reference: str,
        tasks: int = 200,
        calls_per_task: int = 25,
        target: float | None = None,
    ) -> Row:
        """Time both ops under :func:`run_concurrent` (``tasks`` tasks, ``calls_per_task``
        calls each, a round) in interleaved rounds and add a row.

        The ratio is of the best rounds' throughput (the median rounds' beside it, as in
        :meth:`compare`); each side's p99 call latency is the median over its rounds, printed
        now and under the table. ``target`` is the minimum throughput ratio promised.
        """
        warmup_calls = max(1, calls_per_task // 5)
        await run_concurrent(dmem_op, tasks=tasks, calls_per_task=warmup_calls)
        await run_concurrent(reference_op, tasks=tasks, calls_per_task=warmup_calls)
        dmem_rounds: list[tuple[float, float]] = []
        ref_rounds: list[tuple[float, float]] = []
        start = time.perf_counter()
        while len(dmem_rounds) < self.rounds or (
            time.perf_counter() - start < self.min_seconds and len(dmem_rounds) < _MAX_ROUNDS
        ):
            dmem_rounds.append(
                await run_concurrent(dmem_op, tasks=tasks, calls_per_task=calls_per_task)
            )
            ref_rounds.append(
                await run_concurrent(reference_op, tasks=tasks, calls_per_task=calls_per_task)
            )
        dmem_rates = [rate for rate, _ in dmem_rounds]
        ref_rates = [rate for rate, _ in ref_rounds]
        dmem_p99 = statistics.median(p99 for _, p99 in dmem_rounds)
        ref_p99 = statistics.median(p99 for _, p99 in ref_rounds)
        row = Row(
            name,
            reference,
            max(dmem_rates),
            max(ref_rates),
            1,
            target,
            median_ratio=statistics.median(dmem_rates) / statistics.median(ref_rates),
            dmem_p99=dmem_p99,
            reference_p99=ref_p99,
        )
        print(
            f"{name}: p99 latency dmem {dmem_p99 * 1e3:.2f} ms, "
            f"{reference} {ref_p99 * 1e3:.2f} ms "
            f"({tasks} tasks x {calls_per_task} calls, {len(dmem_rounds)} rounds)"
        )
        self.rows.append(row)
        return row

    def add(self, row: Row) -> None:
        """Add a row measured some other way (e.g. throughput in MB/s)."""
        self.rows.append(row)

    def report(self) -> bool:
        """Print the table; return True when every row with a target meets it."""
        print(f"\n## {self.title}\n")
        print("| operation | dmem | reference | reference ops | ratio | target | met | median |")
        print("| --- | ---: | --- | ---: | ---: | ---: | --- | ---: |")
        ok = True
        for row in self.rows:
            unit = row.unit or ("items/s" if row.items_per_op > 1 else "ops/s")
            target = "" if row.target is None else f">= {row.target:g}x"
            met = "" if row.met is None else ("yes" if row.met else "NO")
            median = "" if row.median_ratio is None else f"{row.median_ratio:.2f}x"
            ok = ok and row.met is not False
            print(
                f"| {row.name} | {row.dmem_ops:,.0f} {unit} | {row.reference} | "
                f"{row.reference_ops:,.0f} {unit} | {row.ratio:.2f}x | {target} | {met} | "
                f"{median} |"
            )
        for row in self.rows:
            if row.dmem_p99 is not None and row.reference_p99 is not None:
                print(
                    f"\n{row.name}: p99 latency dmem {row.dmem_p99 * 1e3:.2f} ms, "
                    f"{row.reference} {row.reference_p99 * 1e3:.2f} ms"
                )
        return ok


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    return parser.parse_args()


class ServerUnavailable(RuntimeError):
    """A reference server the benchmark would start cannot start on this machine."""


@contextlib.contextmanager
def postgres_url() -> Iterator[str]:
    """``DMEM_TEST_POSTGRES_URL``, or a throwaway server for the block's length.

    The server is the test fixtures' (``plugins/sqlite/tests/pgserver.py``: initdb/pg_ctl
    from PATH, fsync off); :class:`ServerUnavailable` when it cannot start.
    """
    url = os.environ.get("DMEM_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugins/sqlite/tests"))
    from pgserver import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer.start()
    except PostgresUnavailable as exc:
        raise ServerUnavailable(str(exc)) from exc
    try:
        yield server.url
    finally:
        server.stop()


def start_redis_server(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    """A throwaway ``redis-server`` from PATH on a free loopback port (no persistence).

    Returns the process and its URL once it answers PING; :class:`ServerUnavailable` when
    there is no redis-server or it does not start within 10 s.
    """
    if shutil.which("redis-server") is None:
        raise ServerUnavailable("redis-server is not on PATH (or set DMEM_BENCH_REDIS_URL)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--dir", workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise ServerUnavailable("redis-server did not start")


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """``DMEM_BENCH_REDIS_URL``, or a throwaway redis-server for the block's length."""
    url = os.environ.get("DMEM_BENCH_REDIS_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory() as workdir:
        process, url = start_redis_server(workdir)
        try:
            yield url
        finally:
            process.terminate()
            process.wait(10)
