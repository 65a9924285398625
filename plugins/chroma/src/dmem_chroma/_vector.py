"""Vectors on Chroma: one cosine-space collection per namespace.

User metadata keys are stored under ``m:`` (so no user key can collide with
Chroma's reserved ones or with dmem's own), and ``d`` records whether the
record has a document (Chroma cannot store "no document" over an old one).
Chroma merges metadata on upsert while the contract replaces it, so an
upsert first reads the old records' keys and clears those not in the new
metadata. Chroma's index is HNSW: results are approximate (``exact = False``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from dmem import HealthStatus
from dmem.vector import VectorMatch, VectorRecord, Where

from ._client import ChromaConfig, ChromaConnection

# Records per Chroma call. The embedded client holds the GIL for parts of every call (its
# Python layers, building and converting the batch), so a huge call can still make the event
# loop (in another thread) wait: smaller calls keep those pauses near 100 ms instead of
# seconds, at no measurable cost in throughput.
_CHUNK = 256

__all__ = ["ChromaVectorProvider", "translate_where"]

_USER = "m:"


def translate_where(where: Where) -> dict[str, Any]:
    """A canonical dmem filter as a Chroma ``where`` (same semantics, see dmem.vector)."""
    ((name, condition),) = where.items()
    if name in ("$and", "$or"):
        return {name: [translate_where(child) for child in condition]}
    ((op, operand),) = condition.items()
    field = _USER + name
    if op in ("$in", "$nin") and len({type(item) for item in operand}) > 1:
        # Chroma wants one type per list: split it, one list per type.
        groups: dict[type, list[Any]] = {}
        for item in operand:
            groups.setdefault(type(item), []).append(item)
        parts = [{field: {op: items}} for items in groups.values()]
        return {"$or" if op == "$in" else "$and": parts}
    return {field: {op: operand}}


def _user_metadata(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    if not meta:
        return {}
    return {k[len(_USER) :]: v for k, v in meta.items() if k.startswith(_USER)}


class ChromaVectorProvider:
    """The vector contract on a Chroma collection (HNSW, cosine)."""

    name = "chroma"
    exact = False

    def __init__(self, config: ChromaConfig) -> None:
        self.config = config
        self.namespace = config.namespace
        self._conn = ChromaConnection(config, "vec")
        self._batch = 1000

    def __repr__(self) -> str:
        return f"<ChromaVectorProvider {self.config.where} namespace={self.namespace!r}>"

    async def initialize(self) -> None:
        self._batch = min(_CHUNK, await self._conn.start({"hnsw:space": "cosine"}))

    async def aclose(self) -> None:
        await self._conn.close()

    def _existing(self, ids: Sequence[str], include: list[str]) -> dict[str, Any]:
        got = self._conn.collection.get(ids=list(ids), include=include)
        return got  # type: ignore[no-any-return]

    def _upsert(self, records: Sequence[VectorRecord]) -> None:
        collection = self._conn.collection
        with self._conn.lock:
            for start in range(0, len(records), self._batch):
                chunk = records[start : start + self._batch]
                old = self._existing([r.id for r in chunk], ["metadatas"])
                old_meta = dict(zip(old["ids"], old["metadatas"] or [], strict=False))
                metadatas: list[dict[str, Any]] = []
                for record in chunk:
                    meta: dict[str, Any] = {_USER + k: v for k, v in record.metadata.items()}
                    meta["d"] = record.document is not None
                    for key in old_meta.get(record.id) or {}:
                        if key.startswith(_USER) and key not in meta:
                            meta[key] = None  # upsert merges: None removes the old key
                    metadatas.append(meta)
                collection.upsert(
                    ids=[r.id for r in chunk],
                    embeddings=[list(r.vector or ()) for r in chunk],
                    metadatas=metadatas,
                    documents=[r.document or "" for r in chunk],
                )

    async def upsert(self, records: Sequence[VectorRecord]) -> None:
        await self._conn.run(self._upsert, records)

    async def query(
        self, vector: tuple[float, ...], k: int, where: Where | None
    ) -> list[VectorMatch]:
        def work() -> list[VectorMatch]:
            ids, metas, docs, dists = self._conn.query_nearest(
                vector, k, None if where is None else translate_where(where)
            )
            out = [
                VectorMatch(
                    rid,
                    min(1.0, max(-1.0, 1.0 - dist)),
                    _user_metadata(meta),
                    doc if meta and meta.get("d") else None,
                )
                for rid, meta, doc, dist in zip(ids, metas, docs, dists, strict=False)
            ]
            out.sort(key=lambda match: (-match.score, match.id))
            return out

        return await self._conn.run(work)

    async def get(self, ids: Sequence[str]) -> list[VectorRecord]:
        def work() -> list[VectorRecord]:
            found: dict[str, VectorRecord] = {}
            for start in range(0, len(ids), self._batch):
                got = self._existing(
                    ids[start : start + self._batch], ["embeddings", "metadatas", "documents"]
                )
                embeddings = got["embeddings"]
                metas = got["metadatas"] or [None] * len(got["ids"])
                docs = got["documents"] or [None] * len(got["ids"])
                for i, rid in enumerate(got["ids"]):
                    meta = metas[i]
                    found[rid] = VectorRecord(
                        rid,
                        tuple(float(x) for x in embeddings[i]),
                        _user_metadata(meta),
                        docs[i] if meta and meta.get("d") else None,
                    )
            return [found[i] for i in ids if i in found]

        return await self._conn.run(work)

    async def delete(self, ids: Sequence[str]) -> int:
        def work() -> int:
            with self._conn.lock:
                removed = 0
                for start in range(0, len(ids), self._batch):
                    chunk = list(ids[start : start + self._batch])
                    present = self._existing(chunk, [])["ids"]
                    if present:
                        self._conn.collection.delete(ids=list(present))
                        removed += len(present)
                return removed

        return await self._conn.run(work)

    async def count(self) -> int:
        return int(await self._conn.run(lambda: self._conn.collection.count()))

    async def clear(self) -> int:
        def work() -> int:
            with self._conn.lock:
                ids = list(self._conn.collection.get(include=[])["ids"])
                for start in range(0, len(ids), self._batch):
                    self._conn.collection.delete(ids=ids[start : start + self._batch])
                return len(ids)

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
