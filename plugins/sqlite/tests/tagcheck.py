"""The tag-index check both SQL dialects' tests run (a helper module, not collected)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import dmem

TagRows = Callable[[], Awaitable[list[tuple[str, str, str]]]]


async def check_tag_rows_follow_every_kind_of_write(kv: dmem.Store, tag_rows: TagRows) -> None:
    """After each kind of write, the tags table holds exactly the live keys' tags.

    ``tag_rows`` reads the store's tags table as ``(key, name, value)`` rows sorted by key
    and name. find_by_tag checks every hit against the row's own tags, so a write that
    forgets to drop old tag rows never shows in a result: only counting the rows catches it.
    """
    await kv.set("a", 1, tags={"x": "1", "y": "2"})
    await kv.set_many({"b": 1, "c": 2}, tags={"x": "1"})
    assert await tag_rows() == [("a", "x", "1"), ("a", "y", "2"), ("b", "x", "1"), ("c", "x", "1")]
    await kv.set("a", 2)  # plain single-row write
    await kv.set("b", 2, tags={"z": "3"})  # new tags replace old ones
    await kv.set_many({"c": 3})  # plain batch
    assert await tag_rows() == [("b", "z", "3")]
    await kv.set("d", 1, ttl=0.01, tags={"x": "1"})
    await asyncio.sleep(0.05)
    assert await kv.set("d", 2, if_not_exists=True)  # expired counts as absent
    await kv.delete("b")
    assert await tag_rows() == []
