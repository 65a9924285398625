"""Quickstart on the embedded default: a SQLite file in your user data directory.

    python examples/quickstart.py

No server needed. Set DMEM_URL (e.g. redis://localhost:6379/0) to run the very
same code on another backend.
"""

from __future__ import annotations

import asyncio

import dmem


async def main() -> None:
    # No URL: DMEM_URL if set, else the embedded default (dmem.default_url()).
    async with dmem.open(namespace="quickstart", middleware=[dmem.Cache(ttl=30)]) as kv:
        print("store:", kv)
        await kv.set(
            "user:123",
            {"name": "Ada", "prefs": {"theme": "dark"}, "visits": 3},
            ttl=3600,
            tags={"team": "research", "role": "admin:ops"},  # tag values may hold ':'
        )
        await kv.set("user:124", "123")  # a str stays a str
        await kv.set("avatar:123", b"\x89PNG...")  # bytes round-trip as bytes
        print("get:", await kv.get("user:123"))
        print("str stays str:", repr(await kv.get("user:124")))
        print("find_by_tag:", await kv.find_by_tag("team", "research"))
        print("keys user:*:", sorted(await kv.keys("user:*")))
        print("ttl:", round(await kv.ttl("user:123") or 0), "s")

        # An atomic lock: of many concurrent writers exactly one wins.
        winners = await asyncio.gather(
            *(kv.set("lock:job-1", f"worker-{i}", ttl=30, if_not_exists=True) for i in range(5))
        )
        print("lock winners:", winners.count(True))

        print("removed:", await kv.clear())  # this namespace only, so reruns start clean


if __name__ == "__main__":
    asyncio.run(main())
