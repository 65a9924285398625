"""Contract v1.1 on Chroma beyond the conformance clauses: what incr leaves of a record, a
created counter's tags, compare-and-set's value limit, delete_by_tag and a stale ``t:``
field, and the calls of many stores of one process serialized by the collection's lock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import dmem
import pytest


def _meta(kv: dmem.Store, key: str) -> dict[str, Any]:
    got = kv.provider._conn.collection.get(ids=[key], include=["metadatas"])  # type: ignore[attr-defined]
    return dict(got["metadatas"][0])


async def test_incr_changes_only_the_value_of_a_live_record() -> None:
    async with dmem.open("chroma://", namespace="coord-fields") as kv:
        await kv.set("n", 41, ttl=100, tags={"team": "a"})
        before = await asyncio.to_thread(_meta, kv, "n")
        assert await kv.incr("n") == 42
        after = await asyncio.to_thread(_meta, kv, "n")
        assert after == {**before, "v": "42"}, "incr touched more than the value"
        await kv.clear()


async def test_incr_creates_an_untagged_key_over_an_expired_tagged_record() -> None:
    async with dmem.open("chroma://", namespace="coord-expired") as kv:
        await kv.set("n", 100, ttl=0.05, tags={"team": "a"})
        await asyncio.sleep(0.12)
        assert await kv.incr("n", 2, ttl=60) == 2
        assert await kv.get_tags("n") == {}
        assert await kv.find_by_tag("team", "a") == []
        assert await kv.delete_by_tag("team", "a") == 0
        left = await kv.ttl("n")
        assert left is not None and 59 < left <= 60
        await kv.clear()


async def test_compare_and_set_refuses_a_large_value_before_any_call() -> None:
    limit = 4 * 1024 * 1024
    async with dmem.open("chroma://", namespace="coord-limit", max_value_bytes=limit) as kv:
        await kv.set("k", "small")

        async def no_calls(*args: Any) -> Any:
            raise AssertionError("a Chroma call was made")

        run = kv.provider._conn.run  # type: ignore[attr-defined]
        kv.provider._conn.run = no_calls  # type: ignore[attr-defined]
        try:
            with pytest.raises(dmem.InvalidValueError, match="max_value_bytes"):
                await kv.compare_and_set("k", "small", b"x" * limit)  # encoded: 2 bytes more
        finally:
            kv.provider._conn.run = run  # type: ignore[attr-defined]
        assert await kv.get("k") == "small"
        await kv.clear()


async def test_delete_by_tag_goes_by_the_tags_not_a_stale_field(tmp_path: Path) -> None:
    """A set by a store that never saw a tag name leaves its t: field; delete_by_tag must not
    delete the key for it (the key's tags are T)."""
    url = f"chroma:///{tmp_path}"
    async with dmem.open(url, namespace="coord-stale") as first:
        await first.set("k", 1, tags={"team": "a"})
        await first.set("other", 1, tags={"team": "a"})
        async with dmem.open(url, namespace="coord-stale", share_connection=False) as second:
            await second.set("k", 2, tags={"role": "y"})
            assert (await asyncio.to_thread(_meta, second, "k")).get("t:team") == "a"
            assert await second.delete_by_tag("team", "a") == 1
            assert await second.keys() == ["k"]
            assert await first.delete_by_tag("role", "y") == 1
            assert await first.count() == 0


async def test_stores_of_one_process_share_the_collection_lock(tmp_path: Path) -> None:
    """Stores with their own clients (share_connection=false) on one collection: their
    increments and compare-and-sets are serialized all the same."""
    url = f"chroma:///{tmp_path}"
    stores = [
        await dmem.open(url, namespace="coord-lock", share_connection=n % 2 == 0) for n in range(4)
    ]
    try:

        async def bump(kv: dmem.Store) -> list[int]:
            return [await kv.incr("hits") for _ in range(25)]

        seen = await asyncio.gather(*(bump(kv) for kv in stores))
        assert sorted(v for values in seen for v in values) == list(range(1, 101))
        await stores[0].set("slot", 0)
        wins = await asyncio.gather(
            *(kv.compare_and_set("slot", 0, n + 1) for n, kv in enumerate(stores))
        )
        assert sum(wins) == 1
    finally:
        await stores[0].clear()
        for kv in stores:
            await kv.aclose()
