"""LangGraph's long-term memory store over dmem: ``DmemStore``.

``from langgraph.store.dmem import DmemStore``; see ``integrations/langgraph/README.md``,
"The store".
"""

from __future__ import annotations

from ._store import DmemStore

__all__ = ["DmemStore"]
