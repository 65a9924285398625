"""LangGraph checkpointers over dmem: ``DmemSaver`` (sync) and ``AsyncDmemSaver``."""

from __future__ import annotations

__all__: list[str] = []
