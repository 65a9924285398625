"""The two-process staleness measure of a ``Cache`` kept coherent by an invalidation channel.

Process A (the caller, :func:`run_pair`) writes ``n = 1..N`` to one key of ``URL`` and
records when each ``set`` returned; process B (this module run as a script) reads ``n``
through ``dmem.open(URL, middleware=[Cache(invalidation="auto")])`` in a loop, sleeping
0.2 ms between reads (as a server waits for its next request; a process that spins is the
one a busy kernel preempts), and reports every read whose value differs from the one before.
Times are ``time.monotonic()``: CLOCK_MONOTONIC, one clock for every process of the machine.

Staleness of write i (:func:`analyse`, the definition the push channels' tests use too):
from the moment A's ``set`` of i returned until the start of B's first read from which on
every read returned a value >= i (0 if that read started before the write returned). The
read's start, not its end: a read that misses the cache waits for the backend, and that wait
is the backend's latency, not staleness. And no read may return a value older than i once
write i returned more than ``bound + allowance`` before (``broken``).
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["analyse", "percentile", "run_pair"]

_PAUSE = 0.0002  # seconds B sleeps between two reads


def analyse(
    returned: Sequence[float], reads: Sequence[Sequence[Any]], allowance: float
) -> tuple[list[float], list[str]]:
    """(staleness of each write in seconds, the reads that broke "never older than i once
    write i returned + allowance").

    ``returned[i - 1]``: when A's ``set(n, i)`` returned; ``reads``: B's rows, one per run of
    reads that returned one value: ``[start, end, value]`` (the run's first read; the run
    lasts until the next row's start) or ``[start, end, value, last_start]`` (with the start
    of the run's last read, which a reader that records it gives).

    Staleness of write i: from the moment its ``set`` returned until the start of B's first
    read from which on every read returned a value >= i (0 if that read started before the
    write returned). The read's start, not its end: a read that misses the cache waits for
    the backend, and that wait is the backend's latency, not staleness.
    """
    values = [-1 if row[2] is None else row[2] for row in reads]
    floor = values[:]  # floor[r]: the smallest value read from row r on
    for r in range(len(floor) - 2, -1, -1):
        floor[r] = min(floor[r], floor[r + 1])
    staleness: list[float] = []
    j = 0
    for i, done in enumerate(returned, start=1):
        while j < len(reads) and floor[j] < i:
            j += 1
        if j == len(reads):
            staleness.append(math.inf)
            continue
        staleness.append(max(0.0, reads[j][0] - done))
    broken: list[str] = []
    # Row r's value was returned by every read of its run: the newest write that had
    # returned (+ allowance) before the run's last read started must not be newer.
    for r, row in enumerate(reads):
        start, end, value = row[0], row[1], row[2]
        last_start = reads[r + 1][0] if r + 1 < len(reads) else end
        run_end = row[3] if len(row) > 3 else last_start
        newest = _newest_before(returned, run_end - allowance)
        if newest and (value is None or value < newest):
            broken.append(
                f"value {value} read by a read started {run_end - start:.4f} s after its run "
                f"began, although write {newest} returned more than {allowance} s before"
            )
    return staleness, broken


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.99: p99)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _newest_before(returned: Sequence[float], moment: float) -> int:
    """How many writes had returned before ``moment`` (``returned`` is increasing)."""
    lo, hi = 0, len(returned)
    while lo < hi:
        mid = (lo + hi) // 2
        if returned[mid] < moment:
            lo = mid + 1
        else:
            hi = mid
    return lo


def run_pair(url: str, namespace: str, writes: int = 1000, pause: float = 0.001) -> dict[str, Any]:
    """Start B, write ``n = 1..writes`` as A (this process, ``pause`` s apart), let B finish;
    B's report (``rows``, ``reads``, ``mode``) with ``returned`` added."""
    child = subprocess.Popen(
        [sys.executable, "-m", "dmem_conformance.staleness", url, namespace, str(writes)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        returned = asyncio.run(_write(url, namespace, writes, pause, child))
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    if child.returncode != 0:
        raise AssertionError(f"process B failed: {err}")
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    report["returned"] = returned
    return report


async def _write(
    url: str, namespace: str, writes: int, pause: float, child: subprocess.Popen[str]
) -> list[float]:
    import dmem

    kv = await dmem.open(url, namespace=namespace)
    try:
        await kv.set("n", 0)
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 120)
        if line.strip() != "ready":
            assert child.stderr is not None
            raise AssertionError(f"process B did not start: {line!r} {child.stderr.read()}")
        await asyncio.sleep(0.2)
        returned = []
        for i in range(1, writes + 1):
            await kv.set("n", i)
            returned.append(time.monotonic())
            await asyncio.sleep(pause)
        return returned
    finally:
        await kv.aclose()


async def _read(url: str, namespace: str, last_text: str) -> None:
    import dmem

    last_value = int(last_text)
    kv = await dmem.open(url, namespace=namespace, middleware=[dmem.Cache()])
    rows: list[list[Any]] = []
    last: Any = object()
    reads = 0
    stop_at: float | None = None  # 0.2 s after B read the last value
    give_up = time.monotonic() + 60  # a cache stale for good must not hang the test
    cache = (await kv.health()).details.get("cache")
    mode = cache.get("invalidation") if isinstance(cache, dict) else None
    print("ready", flush=True)
    start = end = time.monotonic()
    value: Any = None
    try:
        while (stop_at is None or time.monotonic() < stop_at) and time.monotonic() < give_up:
            start = time.monotonic()
            value = await kv.get("n")
            end = time.monotonic()
            reads += 1
            if value != last:
                rows.append([start, end, value])
                last = value
                if value == last_value:
                    stop_at = end + 0.2
            await asyncio.sleep(_PAUSE)
        rows.append([start, end, value])
        top = kv._top
        hits = getattr(top, "hits", 0)
    finally:
        await kv.aclose()
    print(json.dumps({"rows": rows, "reads": reads, "hits": hits, "mode": mode}), flush=True)


if __name__ == "__main__":
    asyncio.run(_read(*sys.argv[1:4]))
