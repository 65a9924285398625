"""dmem-sqlite at scale: prefix listing and a full scan over 1,000,000 keys.

    python bench/bench_sqlite_scale.py [--keys 1000000] [--check] [--db PATH]
    python bench/bench_sqlite_scale.py --postgres [--keys 1000000] [--check]

A SQLite file by default; ``--postgres`` runs the same measures on PostgreSQL through
the same plugin (a throwaway server from initdb/pg_ctl on PATH, or
``DMEM_TEST_POSTGRES_URL``; the keys go in a table of their own, dropped at the end).

Targets (issue "SQL backend"): with 1,000,000 keys, ``keys("user:42*")`` answers in
under 50 ms, and ``scan()`` of everything grows the process's peak memory by under
100 MB. The scan is measured in a fresh child process (its peak RSS before and after
the scan), so the memory the fill used does not hide what the scan costs.
Benchmarks are not tests: this prints, and exits 1 only with ``--check``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dmem
from _harness import postgres_url

PATTERN = "user:42*"
LISTING_TARGET_MS = 50.0
SCAN_TARGET_MB = 100.0
PG_TABLE = "dmem_scale"  # --postgres: a table of its own, dropped at the end
VALUE = {"name": "Ada Lovelace", "visits": 12, "tags": ["a", "b"], "score": 0.5}


def _peak_rss_mb() -> float:
    """This process's peak resident memory.

    Linux's VmHWM, not ``ru_maxrss``: a child's ``ru_maxrss`` starts at its parent's
    peak at fork time (it survives exec), which would hide the scan's growth.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


async def _count(url: str) -> int:
    async with dmem.open(url) as kv:
        return await kv.count()


async def _clear(url: str) -> None:
    async with dmem.open(url) as kv:
        await kv.clear()


async def _drop_postgres_tables(url: str) -> None:
    import asyncpg

    server_url = url.split("?", 1)[0]
    conn = await asyncpg.connect(server_url)
    try:
        for suffix in ("_tags", "_meta", ""):
            await conn.execute(f"DROP TABLE IF EXISTS {PG_TABLE}{suffix}")
    finally:
        await conn.close()


async def fill(url: str, count: int) -> float:
    """Write ``user:0`` .. ``user:{count-1}``; return keys/s."""
    start = time.perf_counter()
    async with dmem.open(url) as kv:
        batch = 10_000
        for first in range(0, count, batch):
            await kv.set_many({f"user:{i}": VALUE for i in range(first, min(count, first + batch))})
    return count / (time.perf_counter() - start)


async def listing(url: str, count: int) -> tuple[float, int]:
    """Best of 7 ``keys(PATTERN)`` calls in ms, and how many keys it returned."""
    expected = sum(1 for i in range(count) if str(i).startswith("42"))
    async with dmem.open(url) as kv:
        best = float("inf")
        found = 0
        for _ in range(7):
            start = time.perf_counter()
            found = len(await kv.keys(PATTERN))
            best = min(best, time.perf_counter() - start)
    if found != expected:
        raise SystemExit(f"keys({PATTERN!r}) returned {found} keys, expected {expected}")
    return best * 1000, found


async def _scan_child(url: str) -> dict[str, float]:
    async with dmem.open(url) as kv:
        await kv.get("user:0")  # connection, schema check and statement caches are warm
        before = _peak_rss_mb()
        start = time.perf_counter()
        seen = 0
        async for _key, _value in kv.scan():
            seen += 1
        seconds = time.perf_counter() - start
        after = _peak_rss_mb()
    return {"seen": seen, "before_mb": before, "after_mb": after, "seconds": seconds}


def scan_in_child(url: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--scan-child", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def _measure(url: str, keys: int) -> tuple[float, int, dict[str, float]]:
    """Fill the store unless it holds ``keys`` keys already, then time listing and scan."""
    if asyncio.run(_count(url)) != keys:
        asyncio.run(_clear(url))
        rate = asyncio.run(fill(url, keys))
        print(f"filled {keys:,} keys at {rate:,.0f} keys/s (set_many of 10,000)")
    ms, found = asyncio.run(listing(url, keys))
    return ms, found, scan_in_child(url)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="reuse (or create) this SQLite file")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--scan-child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scan_child:
        print(json.dumps(asyncio.run(_scan_child(args.scan_child))))
        return 0

    if args.postgres:
        with postgres_url() as server_url:
            url = f"{server_url}{'&' if '?' in server_url else '?'}table={PG_TABLE}"
            try:
                ms, found, scan = _measure(url, args.keys)
            finally:
                asyncio.run(_drop_postgres_tables(url))
        where = "PostgreSQL"
    else:
        with tempfile.TemporaryDirectory(prefix="dmem-scale-") as tmp:
            db = args.db or Path(tmp) / "scale.db"
            ms, found, scan = _measure(f"sqlite:///{db}", args.keys)
            where = f"SQLite file ({db.stat().st_size / 2**20:,.0f} MB)"
    growth = scan["after_mb"] - scan["before_mb"]
    listing_ok = ms < LISTING_TARGET_MS
    scan_ok = growth < SCAN_TARGET_MB and scan["seen"] == args.keys
    print(f"\n## {where} with {args.keys:,} keys\n")
    print("| measure | result | target | met |")
    print("| --- | ---: | ---: | --- |")
    print(
        f"| `keys({PATTERN!r})` ({found:,} keys), best of 7 | {ms:.1f} ms | "
        f"< {LISTING_TARGET_MS:g} ms | {'yes' if listing_ok else 'NO'} |"
    )
    print(
        f"| `scan()` of all {int(scan['seen']):,} keys: peak RSS growth | {growth:.1f} MB "
        f"({scan['before_mb']:.0f} -> {scan['after_mb']:.0f} MB, {scan['seconds']:.1f} s) | "
        f"< {SCAN_TARGET_MB:g} MB | {'yes' if scan_ok else 'NO'} |"
    )
    return 1 if args.check and not (listing_ok and scan_ok) else 0


if __name__ == "__main__":
    raise SystemExit(main())
