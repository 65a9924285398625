"""LangGraph long-term memory store over dmem (``DmemStore``); written in this package."""
