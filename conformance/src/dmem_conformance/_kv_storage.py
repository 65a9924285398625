"""Suite tests of what a backend keeps: bounded storage, and batches it refuses partway.

Both check optional provider members (``footprint()``, ``max_value_bytes``,
``atomic_batches``; see :mod:`dmem.provider`) on ``store.provider``, the provider under
the middleware. A provider without them gets these clauses reported as not run, never as
passed.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import ClassVar

import dmem
import pytest

from ._base import SuiteBase
from ._marks import clause

__all__ = ["StorageTests"]

CHURN_ROUNDS = 4
CHURN_BATCH = 150  # keys a round written by set_many, each with two tags
CHURN_SINGLES = 30  # keys a round written one by one
CHURN_TTL = 0.05  # seconds
REFRESHES = 200  # rewrites of one long-lived key (a session refreshed on every request)
PURGE_WITHIN = 30.0  # seconds after expiry, with writes going on (docs/contract.md)
SLACK = 64  # records above the baseline a backend may keep (amortized compaction)
CROSSABLE = 64 * 1024 * 1024  # the largest max_value_bytes the suite sends a value over


class StorageTests(SuiteBase):
    _dmem_suite_class: ClassVar[bool] = True

    @clause("storage.bounded")
    async def test_storage_returns_to_baseline(self, store: dmem.Store) -> None:
        footprint: Callable[[], Awaitable[int]] | None = getattr(store.provider, "footprint", None)
        if footprint is None:
            self.lacks_optional("footprint", "the provider has no footprint() to measure with")
        keep = {"t": "keep"}
        await store.set_many({f"keep{i}": i for i in range(5)}, tags=keep)
        await store.set("plain", "p")
        await store.set("refresh", 0, ttl=3600, tags=keep)
        await store.set("scratch", 0, tags=keep)
        live = set(await store.keys())
        baseline = await footprint()
        assert isinstance(baseline, int) and baseline >= len(live), (
            f"footprint() = {baseline!r} with {len(live)} live keys: not a record count"
        )

        # footprint() must count what is stored: keys without a ttl, so no purge can run
        # before they are counted (the churn below may outlast its own short ttls).
        counted = {f"counted{i}": i for i in range(CHURN_BATCH)}
        await store.set_many(counted, tags={"t": "keep"})
        grown = await footprint()
        assert grown >= baseline + len(counted), (
            f"footprint() = {grown} with {len(counted)} more live keys than at a baseline of "
            f"{baseline}: it does not count stored records"
        )
        assert await store.delete_many(list(counted)) == len(counted)

        churned = 0
        for r in range(CHURN_ROUNDS):
            batch = {f"c{r}:{i}": {"round": r, "i": i} for i in range(CHURN_BATCH)}
            await store.set_many(batch, ttl=CHURN_TTL, tags={"t": "keep", "g": str(r)})
            for i in range(CHURN_SINGLES):
                await store.set(f"s{r}:{i}", i, ttl=CHURN_TTL, tags={"t": "keep", "s": str(i)})
            await store.delete(f"c{r}:0")
            await store.delete_many([f"c{r}:1", f"s{r}:0"])
            await store.expire(f"c{r}:2", CHURN_TTL)
            churned += CHURN_BATCH + CHURN_SINGLES - 3  # three of them deleted above
            for n in range(REFRESHES // CHURN_ROUNDS):
                await store.set("refresh", n, ttl=3600, tags=keep)
        await asyncio.sleep(CHURN_TTL + 0.1)

        # Ordinary use goes on (a write and a read a tick); the expired keys and their
        # bookkeeping must go, in the background or on those writes.
        deadline = time.monotonic() + PURGE_WITHIN
        tick = 0
        while True:
            tick += 1
            await store.set("scratch", tick, tags=keep)
            await store.get("plain")
            now = await footprint()
            if now <= baseline + SLACK:
                break
            assert time.monotonic() < deadline, (
                f"footprint() is {now} records {PURGE_WITHIN:g}s after {churned} churned keys "
                f"expired, against a baseline of {baseline} (+{SLACK} allowed): expired data "
                "or its bookkeeping (tag indexes, expiry queues) is never purged"
            )
            await asyncio.sleep(0.05)
        assert set(await store.keys()) == live, "the churn left keys behind or took live ones"
        assert sorted(await store.find_by_tag("t", "keep")) == sorted(live - {"plain"})

    @clause("batch.refused")
    async def test_batch_refused_partway(self, store: dmem.Store) -> None:
        provider = store.provider
        limit = getattr(provider, "max_value_bytes", None)
        if limit is None:
            self.lacks_optional(
                "max_value_bytes",
                "the provider declares no value limit (if its plugin takes a max_value_bytes "
                "option, give one, e.g. 5242880, to check this clause)",
            )
        if not isinstance(limit, int) or limit < dmem.MIN_VALUE_LIMIT:
            pytest.fail(f"max_value_bytes = {limit!r}: must be an int >= 4 MiB (or None)")
        if limit > CROSSABLE:
            self.lacks_optional(
                "max_value_bytes",
                f"its limit ({limit:,} bytes) is over the {CROSSABLE:,} the suite sends; "
                "open the store with a lower max_value_bytes to check this clause",
            )
        atomic = getattr(provider, "atomic_batches", False) is True
        over = os.urandom(limit - 1)  # encoded as 2 marker bytes + the bytes: limit + 1
        await store.set("before", "kept", tags={"t": "x"})

        with pytest.raises(dmem.InvalidValueError):
            await store.set("big", over)
        assert not await store.exists("big"), "a refused value was written"

        batch: dict[str, object] = {f"a{i}": i for i in range(50)}
        batch["big"] = over
        batch.update({f"z{i}": i for i in range(50)})
        batch["before"] = "overwritten"
        for if_not_exists in (False, True):
            with pytest.raises(dmem.InvalidValueError):
                await store.set_many(batch, tags={"t": "y"}, if_not_exists=if_not_exists)
            if not atomic:
                continue  # a typed error is all a non-atomic provider promises
            written = await store.get_many(list(batch))
            assert written == {"before": "kept"}, (
                f"the provider says atomic_batches, but a batch it refused partway wrote "
                f"{len(written) - 1} of its {len(batch)} keys"
                + ("" if written.get("before") == "kept" else " and replaced a live one")
            )
            assert await store.find_by_tag("t", "y") == [], "a refused batch left its tags"

        if not store.middleware:  # middleware (Compression) changes the encoded size
            edge = os.urandom(limit - 2)  # encoded: exactly the declared limit
            assert await store.set("edge", edge), "a value of exactly max_value_bytes"
            assert await store.get("edge") == edge
        await store.set("after", 1)  # the store still works
        assert await store.get("after") == 1
