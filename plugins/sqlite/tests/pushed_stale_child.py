"""Process B of the two-process staleness tests of the push channels (Redis, PostgreSQL).

Run as a script (not collected)::

    python pushed_stale_child.py URL NAMESPACE LAST tiny|cache

B opens ``URL``, opens the provider's invalidation channel with a small cache of its own
(:class:`TinyCache`: the protocol's listener; with ``cache``: dmem's ``Cache``, whose
``invalidation="auto"`` opens the channel), prints "ready",
then reads key "n" through the cache every ``_PAUSE`` seconds (sleeping between reads, as
a server process waits for its next request) until it has read LAST and 0.2 s more, and
prints the JSON of its report: ``rows``, ``[start, end, value, last_start]`` of every read
whose value differs from the read before, with the start of the last read of that value,
times from ``time.monotonic()``
(CLOCK_MONOTONIC: one clock for every process of the machine).

The test (process A) writes ``n = 1..N`` and records when each ``set`` returned; then
``dmem_conformance.staleness.analyse`` (the one measure of every backend's staleness tests)
gives the staleness of each write: from the moment its ``set`` returned until B started the
first read from which on every read returned a value >= i.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Collection
from typing import Any

import dmem
from dmem.middleware import Cache

_PAUSE = 0.0002  # seconds B sleeps between two reads


class TinyCache:
    """A read-through cache of one store that the channel keeps coherent.

    The epoch is bumped by every message: a read that was in flight while one arrived does
    not cache what it read (it may be the value from before the write).
    """

    def __init__(self, kv: dmem.Store) -> None:
        self.kv = kv
        self.values: dict[str, Any] = {}
        self.epoch = 0
        self.serving = True
        self.downs = 0
        self.ups = 0
        self.messages = 0
        self.hits = 0
        self.arrivals: list[float] = []  # time.monotonic() of each message

    def invalidate(self, keys: Collection[str] | None) -> None:
        self.messages += 1
        self.arrivals.append(time.monotonic())
        self.epoch += 1
        if keys is None:
            self.values.clear()
        else:
            for key in keys:
                self.values.pop(key, None)

    def channel_down(self) -> None:
        self.downs += 1
        self.epoch += 1
        self.serving = False
        self.values.clear()

    def channel_up(self) -> None:
        self.ups += 1
        self.epoch += 1
        self.serving = True

    async def get(self, key: str) -> Any:
        if self.serving and key in self.values:
            self.hits += 1
            return self.values[key]
        epoch = self.epoch
        value = await self.kv.get(key)
        if self.serving and epoch == self.epoch:
            self.values[key] = value
        return value


class Recorder:
    """A listener that keeps what it was told, in order."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.arrived = asyncio.Event()

    def invalidate(self, keys: Collection[str] | None) -> None:
        self.events.append(None if keys is None else sorted(keys))
        self.arrived.set()

    def channel_down(self) -> None:
        self.events.append("down")
        self.arrived.set()

    def channel_up(self) -> None:
        self.events.append("up")
        self.arrived.set()

    def seen(self) -> set[str]:
        return {k for e in self.events if isinstance(e, list) for k in e}

    async def wait(self, check: object, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():  # type: ignore[operator]
            left = deadline - time.monotonic()
            assert left > 0, f"not seen within {timeout} s; events: {self.events}"
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), left)


def run_pair(
    url: str, namespace: str, writes: int = 1000, *, real_cache: bool = False
) -> dict[str, Any]:
    """Start B, write ``n = 1..writes`` as A (this process), let B finish; B's report with
    ``returned`` (when each of A's writes returned) added."""
    import subprocess

    child = subprocess.Popen(
        [sys.executable, __file__, url, namespace, str(writes), "cache" if real_cache else "tiny"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        returned = asyncio.run(_write(url, namespace, writes, child))
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    report["returned"] = returned
    return report


async def _write(url: str, namespace: str, writes: int, child: Any) -> list[float]:
    kv = await dmem.open(url, namespace=namespace)
    try:
        await kv.set("n", 0)
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)
        assert line.strip() == "ready", (line, child.stderr.read() if not line else "")
        await asyncio.sleep(0.2)
        returned = []
        for i in range(1, writes + 1):
            await kv.set("n", i)
            returned.append(time.monotonic())
            await asyncio.sleep(0.001)
        return returned
    finally:
        await kv.aclose()


async def main(url: str, namespace: str, last_text: str, which: str) -> None:
    last_value = int(last_text)
    if which == "cache":  # dmem's own Cache, its channel opened by invalidation="auto"
        kv = await dmem.open(url, namespace=namespace, middleware=[Cache(ttl=60)])
        cache: Any = kv
        channel: Any = None
        mode = (await kv.health()).details["cache"]
        assert mode["invalidation"] not in ("off", "ttl"), mode  # type: ignore[index]
    else:
        kv = await dmem.open(url, namespace=namespace)
        cache = TinyCache(kv)
        channel = await kv.provider.open_invalidation(cache)  # type: ignore[attr-defined]
    rows: list[list[Any]] = []
    last: Any = object()
    reads = 0
    previous = 0.0  # the start of the read before
    stop_at: float | None = None  # 0.2 s after B read LAST
    print("ready", flush=True)
    try:
        while stop_at is None or time.monotonic() < stop_at:
            for _ in range(200):
                start = time.monotonic()
                value = await cache.get("n")
                end = time.monotonic()
                reads += 1
                if value != last:
                    if rows:
                        rows[-1][3] = previous  # the start of the run's last read
                    rows.append([start, end, value, start])
                    last = value
                    if value == last_value:
                        stop_at = end + 0.2
                previous = start
                # A short sleep, not sleep(0): a process that spins is the one the kernel
                # preempts on a busy machine (ms), one that sleeps is woken at once.
                await asyncio.sleep(_PAUSE)
        rows[-1][3] = previous
        if channel is None:
            stats: Any = (await kv.health()).details["cache"]
            report = {"downs": 0 if stats["channel_up"] else 1, "hits": stats["hits"]}
        else:
            report = {
                "messages": cache.messages,
                "downs": cache.downs,
                "hits": cache.hits,
                "arrivals": cache.arrivals,
            }
    finally:
        if channel is not None:
            await channel.close()
        await kv.aclose()
    report.update(rows=rows, reads=reads)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
