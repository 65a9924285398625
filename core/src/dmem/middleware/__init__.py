"""Built-in middleware: :class:`Cache`, :class:`Compression` and :class:`Encryption`, and
the :class:`Wrapper` base class for writing your own (docs/middleware.md)."""

from __future__ import annotations

from ._base import Middleware, Wrapper
from ._cache import Cache, CacheProvider
from ._compression import Compression, CompressionProvider
from ._encryption import Encryption, EncryptionProvider

__all__ = [
    "Cache",
    "CacheProvider",
    "Compression",
    "CompressionProvider",
    "Encryption",
    "EncryptionProvider",
    "Middleware",
    "Wrapper",
]
