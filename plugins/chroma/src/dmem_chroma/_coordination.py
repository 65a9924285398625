"""Contract v1.1 on Chroma: ``incr``, ``compare_and_set``, ``compare_and_delete``,
``delete_by_tag``.

Chroma has no transactions and no conditional update, so each operation is a read and then a
write, made atomic the way the provider's other read-modify-writes are: in a worker thread,
under the collection's lock (``ChromaConnection.lock``: one ``threading.Lock`` per collection
per process, shared by every store of the process on that collection, whatever its client).

What that makes atomic: every call of every store of **one process**, in every mode (the
conformance clauses' connections are stores of one process). What it does not: two
**processes** on one Chroma server each hold their own lock, so their reads and writes can
interleave: a lost increment, two ``compare_and_set`` winners, a ``compare_and_delete`` that
deletes a value written just after its read. Chroma's ``add`` (``if_not_exists``) is the only
cross-process arbiter, so a ``Store.lock`` is acquired by one process at a time, but its
release or extend at the very moment its ttl runs out can remove or overwrite the next
holder's key. docs/backends/chroma.md says so; coordinate processes on Redis, SQLite or
PostgreSQL.

The record is the provider's (``_kv``): ``incr`` of a live counter updates only ``v`` (its
expiry ``x`` and tags ``T``/``t:`` stay); a missing or expired key is written as a ``set``
with the ttl and no tags; a matching ``compare_and_set`` is exactly a ``set``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from dmem import refuse_large_values
from dmem.provider import add_to_counter, encode_counter, parse_counter

from . import _kv

if TYPE_CHECKING:
    from ._kv import ChromaKVProvider

__all__ = ["compare_and_delete", "compare_and_set", "delete_by_tag", "incr"]


def _live_value(provider: ChromaKVProvider, key: str, now: int) -> bytes | None:
    meta = provider._metas([key]).get(key)
    if meta is None or not _kv._live(meta, now):
        return None
    return _kv._decode(meta)


def _incr(provider: ChromaKVProvider, key: str, delta: int, ttl_ms: int | None) -> int:
    with provider._conn.lock:
        now = _kv._now_ms()
        provider._maybe_purge(now)
        current = _live_value(provider, key, now)
        if current is None:  # missing or expired: a new key, with the ttl and no tags
            result = add_to_counter(0, delta)
            provider._upsert([(key, provider._record(encode_counter(result), ttl_ms, {}, now))])
            return result
        result = add_to_counter(parse_counter(current), delta)
        # A counter is UTF-8 text, so it is in `v` (and `b` is absent): only `v` changes,
        # the record's expiry and tags stay as they are.
        provider._conn.collection.update(
            ids=[key], metadatas=[{"v": encode_counter(result).decode("ascii")}]
        )
        return result


def _compare_and_set(
    provider: ChromaKVProvider,
    key: str,
    expected: bytes,
    value: bytes,
    ttl_ms: int | None,
    tags: Mapping[str, str],
) -> bool:
    with provider._conn.lock:
        now = _kv._now_ms()
        provider._maybe_purge(now)
        if _live_value(provider, key, now) != expected:
            return False
        provider._upsert([(key, provider._record(value, ttl_ms, tags, now))])
        return True


def _compare_and_delete(provider: ChromaKVProvider, key: str, expected: bytes) -> bool:
    with provider._conn.lock:
        now = _kv._now_ms()
        if _live_value(provider, key, now) != expected:
            return False
        provider._conn.collection.delete(ids=[key])
        return True


def _delete_by_tag(provider: ChromaKVProvider, name: str, value: str) -> int:
    with provider._conn.lock:
        now = _kv._now_ms()
        collection = provider._conn.collection
        where = {"$and": [{_kv._TAG + name: value}, {"x": {"$gt": now}}]}
        got = collection.get(where=where, include=["metadatas"])
        doomed = [
            key
            for key, meta in zip(got["ids"], got["metadatas"] or [], strict=True)
            # Not a t: field an overwrite left behind: the key's tags are T.
            if _kv._tags(meta or {}).get(name) == value
        ]
        for start in range(0, len(doomed), provider._batch):
            collection.delete(ids=doomed[start : start + provider._batch])
        return len(doomed)


async def incr(provider: ChromaKVProvider, key: str, delta: int, ttl_ms: int | None) -> int:
    return await provider._conn.run(_incr, provider, key, delta, ttl_ms)


async def compare_and_set(
    provider: ChromaKVProvider,
    key: str,
    expected: bytes,
    value: bytes,
    ttl_ms: int | None,
    tags: Mapping[str, str],
) -> bool:
    refuse_large_values((value,), provider.max_value_bytes)  # before any Chroma call
    return await provider._conn.run(_compare_and_set, provider, key, expected, value, ttl_ms, tags)


async def compare_and_delete(provider: ChromaKVProvider, key: str, expected: bytes) -> bool:
    return await provider._conn.run(_compare_and_delete, provider, key, expected)


async def delete_by_tag(provider: ChromaKVProvider, name: str, value: str) -> int:
    return await provider._conn.run(_delete_by_tag, provider, name, value)
