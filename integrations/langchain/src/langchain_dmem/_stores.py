"""The two public stores: bytes (LangChain's ``ByteStore``) and JSON-shaped values."""

from __future__ import annotations

from typing import Any

import dmem

from ._base import DmemBaseStore

__all__ = ["DmemByteStore", "DmemStore"]

_BYTES_LIKE = (bytes, bytearray, memoryview)


def _short(key: object) -> str:
    text = repr(key)
    return text if len(text) <= 80 else text[:77] + "..."


class DmemByteStore(DmemBaseStore[bytes]):
    """A LangChain ``ByteStore`` (``BaseStore[str, bytes]``) over any dmem key-value URL.

    ``DmemByteStore("redis://localhost:6379/0", namespace="embeddings")``: ``url`` (None:
    ``$DMEM_URL``, else dmem's default SQLite file), ``namespace``, ``middleware`` and
    ``**options`` are ``dmem.open``'s. Nothing is opened until the first call: the sync
    methods use a ``dmem.open_sync`` store (any thread), the async ones a ``dmem.open``
    store on the event loop of the first ``a*`` call. ``close()``/``aclose()`` or a
    ``with``/``async with`` block close them. See :meth:`from_store` for an async store you
    already hold.

    Values are ``bytes`` (``bytearray`` and ``memoryview`` are stored as bytes); anything
    else is ``dmem.InvalidValueError`` before any I/O, and nothing of the batch is written.
    Keys follow dmem's rules (a non-empty str, at most 1024 bytes in UTF-8, no NUL, no lone
    surrogates): another key is ``dmem.InvalidKeyError``, never rewritten.
    """

    def _check_values(self, batch: list[Any]) -> None:
        for pair in batch:
            # A pair of another shape is left to dmem's set_many, which refuses it.
            if type(pair) is tuple and len(pair) == 2 and not isinstance(pair[1], _BYTES_LIKE):
                raise dmem.InvalidValueError(
                    f"DmemByteStore stores bytes; the value for key {_short(pair[0])} is a "
                    f"{type(pair[1]).__name__} (use DmemStore for JSON-shaped values)"
                )

    def _check_found(self, found: dict[str, Any]) -> None:
        for key, value in found.items():
            if type(value) is not bytes:
                raise dmem.CorruptValueError(
                    f"key {_short(key)} holds a {type(value).__name__}, not bytes: something "
                    "other than a DmemByteStore wrote it in this namespace"
                )


class DmemStore(DmemBaseStore[Any]):
    """A LangChain ``BaseStore[str, Any]`` of JSON-shaped values over any dmem key-value URL.

    Arguments, lifecycle and key rules as :class:`DmemByteStore`. Values are what dmem
    stores: ``None``, ``bool``, ``int`` (signed 64-bit), finite ``float``, ``str``,
    ``bytes`` (as the top-level value only), lists/tuples and dicts with str keys, nested up
    to 64 deep; they come back equal and of the same types, except that a tuple comes back
    as a list. Anything else is ``dmem.InvalidValueError`` before any I/O, and nothing of
    the batch is written. A stored ``None`` reads back as ``None``, as a missing key does.
    """
