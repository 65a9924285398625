"""The memory backend's own details that the conformance suite does not reach."""

from __future__ import annotations

import time

from dmem.backends import MemoryProvider


async def test_get_entry_rounds_the_time_left_up() -> None:
    # A live key never reports 0 ms left: the Cache would take 0 for "expired" (or for
    # "no time to keep it"), and docs/contract.md says remaining ttls are rounded up.
    provider = MemoryProvider()
    await provider.set("k", b"v", ttl_ms=1, if_not_exists=False, tags={})
    deadline = time.monotonic() + 0.002
    seen: list[int | None] = []
    while time.monotonic() < deadline:
        entry = await provider.get_entry("k")
        if entry is None:
            break
        seen.append(entry[1])
    assert seen, "the key expired before the first read"
    assert all(left is not None and left >= 1 for left in seen), seen


async def test_get_entry_of_a_long_ttl_is_whole_milliseconds_not_more_than_set() -> None:
    provider = MemoryProvider()
    await provider.set("k", b"v", ttl_ms=5_000, if_not_exists=False, tags={})
    entry = await provider.get_entry("k")
    assert entry is not None
    assert entry[0] == b"v"
    assert entry[1] is not None
    assert 4_900 <= entry[1] <= 5_000
