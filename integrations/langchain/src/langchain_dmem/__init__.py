"""LangChain key-value stores over dmem: :class:`DmemByteStore` and :class:`DmemStore`.

::

    from langchain_dmem import DmemByteStore

    with DmemByteStore("sqlite:///cache.db", namespace="embeddings") as store:
        store.mset([("a", b"1")])
        store.mget(["a"])  # [b"1"]
"""

from __future__ import annotations

from ._stores import DmemByteStore, DmemStore

__all__ = ["DmemByteStore", "DmemStore"]

__version__ = "0.1.0"
