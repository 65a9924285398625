"""The Encryption middleware's cost, against the same path without it, in one process.

    python bench/bench_encryption.py [--quick]

Rows (a 10 KB value unless said; MB/s counts the value's bytes once per encrypt+decrypt,
i.e. per set+get pair):

* envelope alone: ``Encryption.seal`` + ``Encryption.open``, against the ``cryptography``
  package's ``AESGCM.encrypt`` + ``decrypt`` with a fresh random nonce (the floor);
* middleware set+get on ``memory://``: the provider chain ``EncryptionProvider`` over a
  ``MemoryProvider``, against the bare ``MemoryProvider`` (target: >= 800 MB/s);
* ``Store.set`` + ``Store.get`` on ``memory://`` with ``[Encryption]`` against no
  middleware: 10 KB of bytes, and a small dict (where the fixed costs show).

Each row is timed in 5 runs, alternating the two sides run by run (a noisy neighbour hurts
both alike); printed are the median and the range (min-max) of each side, and the ratio of
the medians. The machine is shared: read the medians, not one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dmem
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from dmem.backends.memory import MemoryProvider
from dmem.middleware import Encryption

RUNS = 5
SIZE = 10 * 1024
TARGET_MB_S = 800.0

Op = Callable[[], Awaitable[object]]


async def _run(op: Op, ops: int) -> tuple[float, float]:
    """Wall-clock and CPU seconds per op over ``ops`` sequential awaits.

    CPU time (this process's) leaves out the time other processes held the core, which on
    a shared machine is most of the run-to-run noise; both are printed.
    """
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(ops):
        await op()
    return (time.perf_counter() - start) / ops, (time.process_time() - cpu) / ops


async def row(name: str, dmem_op: Op, ref_op: Op, reference: str, ops: int, size: int) -> float:
    """Print one row; return the median MB/s (or ops/s when ``size`` is 0) of the dmem side."""
    for op in (dmem_op, ref_op):  # warm up both
        await _run(op, max(1, ops // 10))
    mine: list[tuple[float, float]] = []
    theirs: list[tuple[float, float]] = []
    for _ in range(RUNS):
        mine.append(await _run(dmem_op, ops))
        theirs.append(await _run(ref_op, ops))

    def rate(seconds: float) -> float:
        return size / seconds / 1e6 if size else 1 / seconds

    unit = "MB/s" if size else "pairs/s"
    print(f"{name} vs {reference} ({unit}, median (min-max) of {RUNS} runs)")
    medians = []
    for clock, index in (("wall", 0), ("cpu", 1)):
        m = [rate(run[index]) for run in mine]
        t = [rate(run[index]) for run in theirs]
        us_m = statistics.median(run[index] for run in mine) * 1e6
        us_t = statistics.median(run[index] for run in theirs) * 1e6
        print(
            f"    {clock:4}  dmem {statistics.median(m):9,.0f} ({min(m):,.0f}-{max(m):,.0f})  "
            f"reference {statistics.median(t):9,.0f} ({min(t):,.0f}-{max(t):,.0f})  "
            f"ratio {statistics.median(m) / statistics.median(t):.2f}  "
            f"[{us_m:.1f} vs {us_t:.1f} us/pair]"
        )
        medians.append(statistics.median(m))
    return medians[0]


async def main(quick: bool) -> None:
    ops = 2000 if quick else 20000
    value = os.urandom(SIZE)
    key = os.urandom(32)
    spec = Encryption(keys={"k1": key})
    cipher = AESGCM(key)
    aad = b"\x00E\x01\x02k1" + b"\x00\x00\x00\x00" + b"some:key"

    async def envelope() -> None:
        spec.open("", "some:key", spec.seal("", "some:key", value))

    async def raw_aesgcm() -> None:
        nonce = os.urandom(12)
        cipher.decrypt(nonce, cipher.encrypt(nonce, value, aad), aad)

    print(f"Encryption middleware, {SIZE:,}-byte values, {RUNS} runs of {ops:,} pairs each")
    await row("envelope: seal + open", envelope, raw_aesgcm, "AESGCM encrypt + decrypt", ops, SIZE)

    bare = MemoryProvider()
    wrapped = spec.wrap(MemoryProvider())

    async def through(provider: dmem.KVProvider) -> None:
        await provider.set("k", value, ttl_ms=None, if_not_exists=False, tags={})
        await provider.get("k")

    mb_s = await row(
        "middleware set + get (memory provider)",
        lambda: through(wrapped),
        lambda: through(bare),
        "bare MemoryProvider set + get",
        ops,
        SIZE,
    )
    verdict = "meets" if mb_s >= TARGET_MB_S else "MISSES"
    print(f"    -> {mb_s:,.0f} MB/s (wall, median) {verdict} the {TARGET_MB_S:,.0f} MB/s target")

    async with (
        dmem.open("memory://", middleware=[spec]) as enc,
        dmem.open("memory://") as plain,
    ):

        def pair(store: dmem.Store, data: object) -> Op:
            async def op() -> None:
                await store.set("k", data)
                await store.get("k")

            return op

        await row(
            "Store set + get, 10 KB bytes, [Encryption]",
            pair(enc, value),
            pair(plain, value),
            "Store set + get, no middleware",
            ops,
            SIZE,
        )
        small = {"name": "Ada", "role": "admin", "score": 42}
        await row(
            "Store set + get, small dict, [Encryption]",
            pair(enc, small),
            pair(plain, small),
            "Store set + get, no middleware",
            ops,
            0,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer ops per run")
    asyncio.run(main(parser.parse_args().quick))
