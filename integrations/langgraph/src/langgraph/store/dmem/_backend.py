"""The async engine under ``DmemStore``: one batch of LangGraph store ops on open dmem stores.

Every dmem object here is bound to the event loop that opened it, so a ``_Backend`` is
opened and used on one loop: the caller's loop for ``abatch``, dmem's loop thread (through
``dmem.run_sync``) for ``batch``. Embedding happens before a batch reaches the engine (the
caller's thread or loop runs the user's embedder), so the engine only moves data.

Records: item ``(namespace, key)`` is the dmem key ``encode_key(namespace, key)`` (see
``_keys``) holding ``{"v": value, "c": created_at, "u": updated_at, "t": ttl minutes or
None, "x": [vector ids]}``, with dmem's own ttl when ``t`` is set, so an expired item is
absent from every call on every backend. Vector ids are the item's key plus ``#field``;
a derived namespace (``<namespace>.vectors``) maps each item key with vectors to those
ids, so vectors whose item expired can be found and removed (``sweep``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from langgraph.store.base import (
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

import dmem
from dmem import CorruptValueError, InvalidArgumentError, VectorRecord

from ._filter import check_filter, matches
from ._keys import decode_key, encode_key, encode_label, prefix_pattern

__all__ = ["Backend", "Plan", "check_ops", "dedupe_puts"]

_CHUNK = 256  # keys per get_many while paging through a filtered search
_MAX_K = 10_000  # dmem's largest k per vector query
_MAX_TTL_MINUTES = 10 * 365.25 * 24 * 60  # dmem's largest ttl, ten years

Texts = list[tuple[tuple[str, ...], str, str, str]]  # (namespace, key, field path, text)


@dataclass
class Plan:
    """A checked batch and the vectors its caller embedded for it."""

    ops: list[Op]
    puts: dict[tuple[tuple[str, ...], str], PutOp]
    put_vectors: dict[tuple[tuple[str, ...], str], list[tuple[str, list[float]]]] = field(
        default_factory=dict
    )
    query_vectors: dict[str, list[float]] = field(default_factory=dict)


def _check_window(op: SearchOp | ListNamespacesOp) -> None:
    for name in ("limit", "offset"):
        number = getattr(op, name)
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise InvalidArgumentError(f"{name} must be an int >= 0, got {number!r}")


def _check_namespace(namespace: object, what: str) -> tuple[str, ...]:
    if not isinstance(namespace, tuple):
        raise InvalidArgumentError(f"{what} must be a tuple of str, not {type(namespace).__name__}")
    for label in namespace:
        if not isinstance(label, str) or not label:
            raise InvalidArgumentError(f"{what} labels must be non-empty str, got {label!r}")
    return namespace


def check_ttl(ttl: object) -> float | None:
    """A put's ttl in minutes (LangGraph's unit), checked before any I/O."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise InvalidArgumentError(f"ttl is minutes as a number, not {type(ttl).__name__}")
    if not math.isfinite(ttl) or ttl <= 0 or ttl > _MAX_TTL_MINUTES:
        raise InvalidArgumentError(
            f"ttl must be > 0 and at most ten years (in minutes), got {ttl!r}"
        )
    return float(ttl)


def check_ops(ops: Iterable[Op]) -> list[Op]:
    """Every op of a batch checked, so a bad one fails before any I/O."""
    checked = list(ops)
    for op in checked:
        if isinstance(op, GetOp):
            _check_namespace(op.namespace, "namespace")
            if not isinstance(op.key, str):
                raise InvalidArgumentError(f"key must be a str, not {type(op.key).__name__}")
        elif isinstance(op, PutOp):
            if not _check_namespace(op.namespace, "namespace"):
                raise InvalidArgumentError("namespace cannot be empty")
            if not isinstance(op.key, str):
                raise InvalidArgumentError(f"key must be a str, not {type(op.key).__name__}")
            if op.value is not None and not isinstance(op.value, Mapping):
                raise InvalidArgumentError(
                    f"value must be a dict (or None to delete), not {type(op.value).__name__}"
                )
            check_ttl(op.ttl)
        elif isinstance(op, SearchOp):
            _check_namespace(op.namespace_prefix, "namespace_prefix")
            check_filter(op.filter)
            _check_window(op)
            if op.query is not None and not isinstance(op.query, str):
                raise InvalidArgumentError(f"query must be a str, not {type(op.query).__name__}")
        elif isinstance(op, ListNamespacesOp):
            _check_window(op)
            if op.max_depth is not None and (
                isinstance(op.max_depth, bool)
                or not isinstance(op.max_depth, int)
                or op.max_depth < 1
            ):
                raise InvalidArgumentError(f"max_depth must be an int >= 1, got {op.max_depth!r}")
            for condition in op.match_conditions or ():
                if condition.match_type not in ("prefix", "suffix"):
                    raise InvalidArgumentError(
                        f"match_type must be 'prefix' or 'suffix', got {condition.match_type!r}"
                    )
                _check_namespace(tuple(condition.path), "match path")
        else:
            raise InvalidArgumentError(f"unknown store operation: {type(op).__name__}")
    return checked


def dedupe_puts(ops: Sequence[Op]) -> dict[tuple[tuple[str, ...], str], PutOp]:
    """The puts of a batch, the last one per item winning (as InMemoryStore and Postgres)."""
    puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
    for op in ops:
        if isinstance(op, PutOp):
            puts[(op.namespace, op.key)] = op
    return puts


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _item(namespace: tuple[str, ...], key: str, record: Mapping[str, Any]) -> Item:
    return Item(
        value=record["v"],
        key=key,
        namespace=namespace,
        created_at=datetime.fromisoformat(record["c"]),
        updated_at=datetime.fromisoformat(record["u"]),
    )


def _search_item(
    namespace: tuple[str, ...], key: str, record: Mapping[str, Any], score: float | None
) -> SearchItem:
    return SearchItem(
        namespace=namespace,
        key=key,
        value=record["v"],
        created_at=datetime.fromisoformat(record["c"]),
        updated_at=datetime.fromisoformat(record["u"]),
        score=score,
    )


def _matches_condition(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    pairs = (
        zip(namespace, path, strict=False)
        if condition.match_type == "prefix"
        else zip(reversed(namespace), reversed(path), strict=False)
    )
    return all(want == "*" or label == want for label, want in pairs)


def _sort_key(stored: str) -> tuple[tuple[str, ...], str]:
    return decode_key(stored)


class Backend:
    """Open dmem stores (key-value, and vectors when an index is configured) and the ops."""

    def __init__(self, kv: dmem.Store, vectors: dmem.VectorStore | None, index: Any) -> None:
        self.kv = kv
        self.vectors = vectors
        self.vector_ids: Any = None  # the derived store of item key -> vector ids
        self._index = index

    @classmethod
    async def open(
        cls,
        url: str | None,
        namespace: str,
        options: dict[str, Any],
        vector_url: str | None,
    ) -> Backend:
        kv = await dmem.open(url, namespace=namespace, **options)
        vectors = None
        backend = cls(kv, None, None)
        try:
            if vector_url is not None:
                vectors = await dmem.open_vector(vector_url, namespace=namespace)
                backend.vectors = vectors
                backend.vector_ids = await kv.with_namespace(namespace + ".vectors")
        except BaseException:
            await backend.aclose()
            raise
        return backend

    async def aclose(self) -> None:
        try:
            if self.vector_ids is not None:
                await self.vector_ids.aclose()
            if self.vectors is not None:
                await self.vectors.aclose()
        finally:
            await self.kv.aclose()

    # --- the batch -------------------------------------------------------------------------
    async def run(self, plan: Plan) -> list[Result]:
        """Reads first, then the puts, as InMemoryStore and PostgresStore order a batch."""
        results: list[Result] = [None] * len(plan.ops)
        gets = [(i, op) for i, op in enumerate(plan.ops) if isinstance(op, GetOp)]
        if gets:
            await self._gets(gets, results)
        for i, op in enumerate(plan.ops):
            if isinstance(op, SearchOp):
                results[i] = await self._search(op, plan.query_vectors.get(op.query or ""))
            elif isinstance(op, ListNamespacesOp):
                results[i] = await self._list_namespaces(op)
        if plan.puts:
            await self._puts(plan)
        return results

    async def _records(self, keys: list[str]) -> dict[str, Mapping[str, Any]]:
        """The live records of ``keys``; one this store did not write is CorruptValueError."""
        found = await self.kv.get_many(keys)
        for key, record in found.items():
            if not (
                isinstance(record, dict)
                and isinstance(record.get("v"), dict)
                and isinstance(record.get("c"), str)
                and isinstance(record.get("u"), str)
                and isinstance(record.get("x", []), list)
                and isinstance(record.get("t"), (int, float, type(None)))
            ):
                raise CorruptValueError(
                    f"key {key!r} of dmem namespace {self.kv.namespace!r} does not hold a "
                    "DmemStore item (another program's data in the store's namespace?)"
                )
        return found

    async def _refresh(self, stored: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        # LangGraph's refresh on read: the item's own ttl starts again from now (Postgres:
        # expires_at = NOW() + ttl_minutes). dmem's expire does exactly that, on every backend.
        refreshes = [
            self.kv.expire(key, record["t"] * 60)
            for key, record in stored
            if record.get("t") is not None
        ]
        if refreshes:  # concurrent: one round trip's wait for a page of items
            await asyncio.gather(*refreshes)

    async def _gets(self, gets: list[tuple[int, GetOp]], results: list[Result]) -> None:
        keys = {i: encode_key(op.namespace, op.key) for i, op in gets}
        records = await self._records(list(dict.fromkeys(keys.values())))
        refresh: dict[str, Mapping[str, Any]] = {}
        for i, op in gets:
            record = records.get(keys[i])
            if record is None:
                continue
            results[i] = _item(op.namespace, op.key, record)
            if op.refresh_ttl:
                refresh[keys[i]] = record
        await self._refresh(refresh.items())

    async def _sorted_keys(self, prefix: tuple[str, ...]) -> list[str]:
        # Only keys holding a "/" are items (every item has a non-empty namespace).
        keys = [k for k in await self.kv.keys(prefix_pattern(prefix)) if "/" in k]
        keys.sort(key=_sort_key)
        return keys

    async def _filtered(
        self, op: SearchOp, stop: int | None
    ) -> list[tuple[str, Mapping[str, Any]]]:
        """The live items under the prefix that pass the filter, in order, up to ``stop``."""
        keys = await self._sorted_keys(op.namespace_prefix)
        if not op.filter and stop is not None:
            keys = keys[:stop]
        found: list[tuple[str, Mapping[str, Any]]] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            records = await self._records(chunk)
            for key in chunk:
                record = records.get(key)
                if record is not None and matches(record["v"], op.filter):
                    found.append((key, record))
                    if stop is not None and len(found) >= stop:
                        return found
        return found

    async def _search(self, op: SearchOp, query_vector: list[float] | None) -> list[SearchItem]:
        if op.query and query_vector is not None and self.vectors is not None:
            hits = await self._semantic(op, query_vector)
        else:
            wanted = op.offset + op.limit
            page = (await self._filtered(op, wanted))[op.offset : wanted] if op.limit else []
            hits = [(key, record, None) for key, record in page]
        if op.refresh_ttl:
            await self._refresh((key, record) for key, record, _ in hits)
        out = []
        for key, record, score in hits:
            namespace, item_key = decode_key(key)
            out.append(_search_item(namespace, item_key, record, score))
        return out

    async def _semantic(
        self, op: SearchOp, query_vector: list[float]
    ) -> list[tuple[str, Mapping[str, Any], float | None]]:
        """InMemoryStore's ranking: each item scored by its best field (max pooling), the
        items passing the filter ranked by that, ``offset`` and ``limit`` applied, and
        when fewer than ``limit`` remain, items without vectors after them (score None).
        """
        assert self.vectors is not None
        where = {f"n{i}": encode_label(label) for i, label in enumerate(op.namespace_prefix)}
        wanted = op.offset + op.limit
        k = min(_MAX_K, max(wanted, 1) * 4)
        while True:
            found = await self.vectors.query(query_vector, k=k, where=where or None)
            owners = list(dict.fromkeys(str(m.metadata.get("k", "")) for m in found))
            records = await self._records(owners) if owners else {}
            ranked: list[tuple[str, Mapping[str, Any], float | None]] = []
            seen: set[str] = set()
            for match in found:  # best first: an item's first valid match is its max
                owner = str(match.metadata.get("k", ""))
                record = records.get(owner)
                # A vector of an item deleted, expired or re-put without that field is stale.
                if owner in seen or record is None or match.id not in (record.get("x") or ()):
                    continue
                seen.add(owner)
                if matches(record["v"], op.filter):
                    ranked.append((owner, record, match.score))
            if len(ranked) >= wanted or len(found) < k or k >= _MAX_K:
                break
            k = min(_MAX_K, k * 4)
        kept = ranked[op.offset : wanted]
        if len(kept) < op.limit:
            # As InMemoryStore: the unscored items fill the page, offset not applied to them.
            unscored = [
                (key, record, None)
                for key, record in await self._filtered(op, None)
                if not record.get("x")
            ]
            kept.extend(unscored[: op.limit - len(kept)])
        return kept

    async def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        literal: tuple[str, ...] = ()
        for condition in op.match_conditions or ():
            if condition.match_type == "prefix":
                path = tuple(condition.path)
                cut = path.index("*") if "*" in path else len(path)
                if cut > len(literal):
                    literal = path[:cut]
        namespaces = {decode_key(k)[0] for k in await self.kv.keys(prefix_pattern(literal))}
        namespaces.discard(())
        chosen = [
            ns
            for ns in namespaces
            if all(_matches_condition(c, ns) for c in op.match_conditions or ())
        ]
        if op.max_depth is not None:
            chosen = list({ns[: op.max_depth] for ns in chosen})
        chosen.sort()
        return chosen[op.offset : op.offset + op.limit]

    async def _puts(self, plan: Plan) -> None:
        keys = {item: encode_key(*item) for item in plan.puts}
        old = await self._records(list(keys.values()))
        now = _now()
        deletes: list[str] = []
        by_ttl: dict[float | None, dict[str, Any]] = {}
        upserts: list[VectorRecord] = []
        stale: list[str] = []
        index_writes: dict[str, list[str]] = {}
        index_deletes: list[str] = []
        for item, op in plan.puts.items():
            key = keys[item]
            previous = old.get(key)
            old_ids: list[str] = list(previous.get("x") or ()) if previous else []
            if op.value is None:
                deletes.append(key)
                stale.extend(old_ids)
                if old_ids:
                    index_deletes.append(key)
                continue
            vectors = plan.put_vectors.get(item, [])
            ids = [f"{key}#{encode_label(path)}" for path, _ in vectors]
            metadata: dict[str, str | int] = {"k": key, "d": len(op.namespace)}
            metadata.update({f"n{i}": encode_label(lb) for i, lb in enumerate(op.namespace)})
            for record_id, (path, vector) in zip(ids, vectors, strict=True):
                upserts.append(VectorRecord(record_id, tuple(vector), metadata, path))
            stale.extend(i for i in old_ids if i not in ids)
            if ids:
                index_writes[key] = ids
            elif old_ids:
                index_deletes.append(key)
            ttl = check_ttl(op.ttl)
            created = previous["c"] if previous else now
            record = {"v": dict(op.value), "c": created, "u": now, "t": ttl, "x": ids}
            by_ttl.setdefault(ttl, {})[key] = record
        if self.vector_ids is not None and index_writes:
            # The index first: a crash between the writes leaves an index entry the sweep
            # cleans up, never a vector nobody can find.
            await self.vector_ids.set_many(index_writes)
        for ttl, records in by_ttl.items():
            await self.kv.set_many(records, ttl=None if ttl is None else ttl * 60)
        if deletes:
            await self.kv.delete_many(deletes)
        if self.vectors is not None:
            if upserts:
                await self.vectors.upsert(upserts)
            if stale:
                await self.vectors.delete(stale)
            if index_deletes and self.vector_ids is not None:
                await self.vector_ids.delete_many(index_deletes)

    async def sweep(self) -> int:
        """Remove the vectors of items that expired (dmem already removed the items)."""
        if self.vectors is None or self.vector_ids is None:
            return 0
        removed = 0
        owners = await self.vector_ids.keys()
        for start in range(0, len(owners), _CHUNK):
            chunk = owners[start : start + _CHUNK]
            live = await self._records(chunk)
            gone = [owner for owner in chunk if owner not in live]
            if not gone:
                continue
            ids = await self.vector_ids.get_many(gone)
            removed += await self.vectors.delete([i for owner in gone for i in ids.get(owner, [])])
            await self.vector_ids.delete_many(gone)
        return removed
