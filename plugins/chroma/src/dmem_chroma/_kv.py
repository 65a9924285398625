"""Key-value on Chroma: one collection per namespace, one record per key.

Record layout (all in the record's metadata; the record's embedding is the
constant ``[0.0]`` because Chroma requires one and KV has no use for it):

* ``v``: the core's bytes when they are valid UTF-8 (JSON text: readable with
  any Chroma tool), else ``b``: the bytes in base64. Exactly one is set.
* ``x``: expiry as Unix epoch milliseconds; ``NO_EXPIRY`` (2**62) for none, so
  "live" is the single filter ``x > now``.
* ``T``: the key's tags as a JSON object: the truth for ``get_tags`` and
  ``find_by_tag``.
* ``t:NAME``: the value of tag NAME, so ``find_by_tag`` is a metadata filter;
  every hit is checked against ``T``.
* ``w``: a random token written by ``if_not_exists`` (see below).

Chroma has no id range or pattern filter: listing fetches the ids of live
records (``x > now``, no values), filters them with the core's matcher, then
reads values in batches. An exact pattern is a lookup by id.

Chroma merges metadata on upsert, so a ``set`` cannot simply drop the old
record's ``t:`` fields. Rather than read the old record first (a second round
trip on every ``set``), it writes ``T`` whole and ``None`` (which deletes a
metadata key) for every other tag name this provider has seen; a ``t:`` field
that survives anyway (a name only another process used) is harmless, because
reads go by ``T``. ``if_not_exists`` uses Chroma's ``add``, which ignores an id
that exists: after removing the key if it is expired, it adds the record with a
fresh token and reads the token back; the writer whose token is there won.
In-process, every read-modify-write runs under one lock per collection.

A batch goes to Chroma in calls of up to 256 records, each applied on its own: batches
are not atomic (``atomic_batches`` is False), except that a batch holding a value over
``max_value_bytes`` (the option; no limit without it) is refused before any call, so it
writes nothing. ``footprint()`` counts the namespace's collection: one record per key,
expired ones not yet purged included (tags live in the record's metadata).
"""

from __future__ import annotations

import base64
import dataclasses
import gc
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from dmem import HealthStatus, KeyNotFoundError, NotInitializedError, Pattern, refuse_large_values
from dmem.provider import Entry

from . import _coordination
from ._client import ChromaConfig, ChromaConnection

# Records per Chroma call. The embedded client holds the GIL for parts of every call (its
# Python layers, building and converting the batch), so a huge call can still make the event
# loop (in another thread) wait: smaller calls keep those pauses near 100 ms instead of
# seconds, at no measurable cost in throughput.
_CHUNK = 256

__all__ = ["NO_EXPIRY", "ChromaKVProvider"]

log = logging.getLogger("dmem.chroma")

NO_EXPIRY = 2**62
_TAG = "t:"
_EMBEDDING = [0.0]
_PURGE_EVERY_MS = 1000
# Bounds the tag names a provider remembers for clearing (so a set's metadata stays small).
_MAX_TAG_NAMES = 256
# scan reads values in batches sized to hold about this many value bytes at once
# (HTTP responses cost ~15x their payload while parsed, hence the smaller budget).
_SCAN_BUDGET_LOCAL = 256 * 1024
_SCAN_BUDGET_HTTP = 32 * 1024
_SCAN_FIRST_BATCH = 4


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _encode(value: bytes) -> dict[str, Any]:
    try:
        return {"v": value.decode("utf-8"), "b": None}
    except UnicodeDecodeError:
        return {"v": None, "b": base64.b64encode(value).decode("ascii")}


def _decode(meta: Mapping[str, Any]) -> bytes:
    text = meta.get("v")
    if isinstance(text, str):
        return text.encode("utf-8")
    return base64.b64decode(meta.get("b") or "")


def _live(meta: Mapping[str, Any] | None, now: int) -> bool:
    return meta is not None and int(meta.get("x", 0)) > now


def _tags(meta: Mapping[str, Any]) -> dict[str, str]:
    whole = meta.get("T")
    if isinstance(whole, str):
        tags: dict[str, str] = json.loads(whole)
        return tags
    # A record written before ``T`` existed: its ``t:`` fields are exact.
    return {k[len(_TAG) :]: str(v) for k, v in meta.items() if k.startswith(_TAG)}


class ChromaKVProvider:
    """The whole KV contract on a Chroma collection (embedded or server)."""

    name = "chroma"
    # Chroma has no transactions: a batch is written in calls of up to 256 records, and a
    # failure between two calls (or another reader between them) sees part of it.
    atomic_batches = False

    def __init__(self, config: ChromaConfig) -> None:
        self.config = config
        self.namespace = config.namespace
        # The option, or None: Chroma declares no value limit of its own.
        self.max_value_bytes: int | None = config.max_value_bytes
        self._conn = ChromaConnection(config, "kv")
        self._last_purge = 0
        self._batch = 1000
        # Tag names seen by this provider: a set clears their t: fields (see above).
        self._tag_names: set[str] = set()

    def __repr__(self) -> str:
        return f"<ChromaKVProvider {self.config.where} namespace={self.namespace!r}>"

    # --- lifecycle -------------------------------------------------------------------------
    async def initialize(self) -> None:
        self._batch = min(_CHUNK, await self._conn.start({}))

    def with_namespace(self, namespace: str) -> ChromaKVProvider:
        """A provider on ``namespace`` on this one's Chroma client (no new client); its
        ``initialize`` opens the namespace's collection (one call), closed on its own."""
        lease = self._conn.lease
        if lease is None:
            raise NotInitializedError("the Chroma provider is not initialized")
        derived = ChromaKVProvider(dataclasses.replace(self.config, namespace=namespace))
        derived._conn.adopt(lease.share())
        return derived

    async def aclose(self) -> None:
        await self._conn.close()

    # --- helpers (worker thread) -------------------------------------------------------------
    def _metas(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        read = self._conn.read_metadatas
        for start in range(0, len(keys), self._batch):
            ids, metas = read(keys[start : start + self._batch])
            for key, meta in zip(ids, metas, strict=False):
                found[key] = dict(meta or {})
        return found

    def _live_ids(self) -> list[str]:
        got = self._conn.collection.get(where={"x": {"$gt": _now_ms()}}, include=[])
        return list(got["ids"])

    def _maybe_purge(self, now: int) -> None:
        # Expired records are invisible at once; this bounds storage, at most once a second.
        if now - self._last_purge >= _PURGE_EVERY_MS:
            self._last_purge = now
            self._conn.collection.delete(where={"x": {"$lte": now}})
            log.debug("%s: purged expired records", self._conn.config.where)

    def _record(
        self, value: bytes, ttl_ms: int | None, tags: Mapping[str, str], now: int
    ) -> dict[str, Any]:
        meta: dict[str, Any] = _encode(value)
        meta["x"] = NO_EXPIRY if ttl_ms is None else now + ttl_ms
        meta["T"] = json.dumps(tags, ensure_ascii=False)
        for name in self._tag_names.difference(tags):
            meta[_TAG + name] = None  # upsert merges: None removes an old tag's field
        for name, tag_value in tags.items():
            meta[_TAG + name] = tag_value
        self._seen(tags)
        return meta

    def _seen(self, tags: Mapping[str, str]) -> None:
        if len(self._tag_names) < _MAX_TAG_NAMES:
            self._tag_names.update(tags)

    def _upsert(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        for start in range(0, len(items), self._batch):
            chunk = items[start : start + self._batch]
            self._conn.collection.upsert(
                ids=[key for key, _ in chunk],
                embeddings=[_EMBEDDING] * len(chunk),
                metadatas=[meta for _, meta in chunk],
            )

    def _write(
        self,
        items: Sequence[tuple[str, bytes]],
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        with self._conn.lock:
            now = _now_ms()
            self._maybe_purge(now)
            if not if_not_exists:
                record = self._record
                self._upsert([(key, record(value, ttl_ms, tags, now)) for key, value in items])
                return len(items)
            old = self._metas([key for key, _ in items])
            todo = [(key, value) for key, value in items if not _live(old.get(key), now)]
            if not todo:
                return 0
            expired = [key for key, _ in todo if key in old]
            collection = self._conn.collection
            if expired:
                # Only while still expired: another process may have just written it.
                collection.delete(ids=expired, where={"x": {"$lte": now}})
            token = uuid.uuid4().hex
            metas = [self._record(value, ttl_ms, tags, now) for _, value in todo]
            for meta in metas:
                meta["w"] = token
                for name in [n for n, v in meta.items() if v is None]:
                    del meta[name]  # add() takes no None values
            for start in range(0, len(todo), self._batch):
                chunk = todo[start : start + self._batch]
                # add() ignores ids that exist: that is the atomic "if not exists".
                collection.add(
                    ids=[key for key, _ in chunk],
                    embeddings=[_EMBEDDING] * len(chunk),
                    metadatas=metas[start : start + self._batch],
                )
            after = self._metas([key for key, _ in todo])
            return sum(1 for key, _ in todo if after.get(key, {}).get("w") == token)

    # --- reads -----------------------------------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        def work() -> bytes | None:
            metas = self._conn.read_metadatas((key,))[1]
            meta = metas[0] if metas else None
            if meta is None or not _live(meta, _now_ms()):
                return None
            return _decode(meta)

        return await self._conn.run(work)

    async def get_entry(self, key: str) -> Entry | None:
        def work() -> Entry | None:
            meta = self._metas([key]).get(key)
            now = _now_ms()
            if not _live(meta, now):
                return None
            assert meta is not None
            expires = int(meta["x"])
            return _decode(meta), None if expires == NO_EXPIRY else max(0, expires - now)

        return await self._conn.run(work)

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        def work() -> dict[str, bytes]:
            metas = self._metas(keys)
            now = _now_ms()
            return {k: _decode(m) for k, m in metas.items() if _live(m, now)}

        return await self._conn.run(work)

    async def exists(self, key: str) -> bool:
        def work() -> bool:
            got = self._conn.collection.get(ids=[key], where={"x": {"$gt": _now_ms()}}, include=[])
            return bool(got["ids"])

        return await self._conn.run(work)

    # --- writes ----------------------------------------------------------------------------
    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        refuse_large_values((value,), self.max_value_bytes)
        return bool(await self._conn.run(self._write, [(key, value)], ttl_ms, if_not_exists, tags))

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        # Before any call: a batch holding a value over the limit writes none of its keys.
        refuse_large_values((value for _, value in items), self.max_value_bytes)
        return await self._conn.run(self._write, items, ttl_ms, if_not_exists, tags)

    def _delete(self, keys: Sequence[str]) -> int:
        with self._conn.lock:
            now = _now_ms()
            metas = self._metas(keys)
            if not metas:
                return 0
            for start in range(0, len(keys), self._batch):
                self._conn.collection.delete(ids=list(keys[start : start + self._batch]))
            return sum(1 for meta in metas.values() if _live(meta, now))

    async def delete(self, key: str) -> bool:
        return bool(await self._conn.run(self._delete, [key]))

    async def delete_many(self, keys: Sequence[str]) -> int:
        return await self._conn.run(self._delete, keys)

    async def clear(self) -> int:
        def work() -> int:
            with self._conn.lock:
                now = _now_ms()
                got = self._conn.collection.get(include=["metadatas"])
                ids = list(got["ids"])
                live = sum(1 for meta in got["metadatas"] or [] if _live(meta, now))
                for start in range(0, len(ids), self._batch):
                    self._conn.collection.delete(ids=ids[start : start + self._batch])
                return live

        return await self._conn.run(work)

    # --- listing ---------------------------------------------------------------------------
    def _matching(self, pattern: Pattern) -> list[str]:
        if pattern.is_exact:
            key = pattern.literal_prefix
            got = self._conn.collection.get(ids=[key], where={"x": {"$gt": _now_ms()}}, include=[])
            return list(got["ids"])
        prefix, matches = pattern.literal_prefix, pattern.matches
        return [key for key in self._live_ids() if key.startswith(prefix) and matches(key)]

    async def scan(self, pattern: Pattern) -> AsyncIterator[tuple[str, bytes]]:
        # A snapshot of the matching ids (no values); values are read batch by batch,
        # each batch sized from the previous one's value sizes so memory stays bounded
        # whatever the values weigh. A key deleted meanwhile is skipped.
        keys = await self._conn.run(self._matching, pattern)
        budget = _SCAN_BUDGET_HTTP if self.config.mode == "http" else _SCAN_BUDGET_LOCAL
        batch = _SCAN_FIRST_BATCH
        start = 0
        while start < len(keys):
            chunk = keys[start : start + batch]
            start += len(chunk)
            values = await self.get_many(chunk)
            size = sum(len(v) for v in values.values())
            if values:
                batch = max(1, min(1024, budget * len(values) // max(1, size)))
            for key in chunk:
                value = values.get(key)
                if value is not None:
                    yield key, value
            del values
            if self.config.mode == "http":
                # chromadb's HTTP client leaves each response in a reference cycle, so the
                # bodies would pile up until a full collection: free them batch by batch.
                gc.collect(1)

    async def keys(self, pattern: Pattern) -> list[str]:
        return await self._conn.run(self._matching, pattern)

    async def count(self, pattern: Pattern) -> int:
        return len(await self._conn.run(self._matching, pattern))

    # --- tags and expiry -------------------------------------------------------------------
    async def find_by_tag(self, name: str, value: str) -> list[str]:
        def work() -> list[str]:
            where = {"$and": [{_TAG + name: value}, {"x": {"$gt": _now_ms()}}]}
            got = self._conn.collection.get(where=where, include=["metadatas"])
            found = []
            for key, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                tags = _tags(meta or {})
                self._seen(tags)
                if tags.get(name) == value:  # not a t: field an overwrite left behind
                    found.append(key)
            return found

        return await self._conn.run(work)

    async def get_tags(self, key: str) -> dict[str, str]:
        def work() -> dict[str, str]:
            meta = self._metas([key]).get(key)
            if not _live(meta, _now_ms()):
                raise KeyNotFoundError(f"key {key!r} is not live")
            assert meta is not None
            tags = _tags(meta)
            self._seen(tags)
            return tags

        return await self._conn.run(work)

    def _set_expiry(self, key: str, ttl_ms: int | None) -> bool:
        with self._conn.lock:
            now = _now_ms()
            if not _live(self._metas([key]).get(key), now):
                return False
            expires = NO_EXPIRY if ttl_ms is None else now + ttl_ms
            self._conn.collection.update(ids=[key], metadatas=[{"x": expires}])
            return True

    async def expire(self, key: str, ttl_ms: int) -> bool:
        return await self._conn.run(self._set_expiry, key, ttl_ms)

    async def persist(self, key: str) -> bool:
        return await self._conn.run(self._set_expiry, key, None)

    async def ttl(self, key: str) -> float | None:
        entry = await self.get_entry(key)
        if entry is None:
            raise KeyNotFoundError(f"key {key!r} is not live")
        return None if entry[1] is None else entry[1] / 1000

    # --- contract v1.1: under the collection's lock (_coordination: what is atomic where) ----
    async def incr(self, key: str, delta: int, *, ttl_ms: int | None) -> int:
        return await _coordination.incr(self, key, delta, ttl_ms)

    async def compare_and_set(
        self,
        key: str,
        expected: bytes,
        value: bytes,
        *,
        ttl_ms: int | None,
        tags: Mapping[str, str],
    ) -> bool:
        return await _coordination.compare_and_set(self, key, expected, value, ttl_ms, tags)

    async def compare_and_delete(self, key: str, expected: bytes) -> bool:
        return await _coordination.compare_and_delete(self, key, expected)

    async def delete_by_tag(self, name: str, value: str) -> int:
        return await _coordination.delete_by_tag(self, name, value)

    async def footprint(self) -> int:
        """Records in this namespace's collection: one per key, live or expired and not yet
        purged (a write purges expired records at most once a second). Tags are fields of
        the key's record, so there is no other bookkeeping to count."""

        def work() -> int:
            return int(self._conn.collection.count())

        return await self._conn.run(work)

    async def health(self) -> HealthStatus:
        start = time.perf_counter()
        try:
            await self._conn.run(self._conn.heartbeat)
        except Exception as exc:  # noqa: BLE001 - health never raises
            return HealthStatus("unhealthy", self.name, f"{type(exc).__name__}: {exc}")
        return HealthStatus(
            "healthy",
            self.name,
            f"ok: {self.config.where}",
            latency_ms=(time.perf_counter() - start) * 1000,
            details={"collection": self._conn.collection_name, "namespace": self.namespace},
        )
