"""dmem: one async key-value (and vector) memory API over pluggable backends.

    import dmem
    kv = await dmem.open("memory://")
    await kv.set("user:1", {"name": "Ada"}, ttl=60, tags={"team": "x"})

See docs/ for the contract, the plugin-author guide and the backends.
"""

from __future__ import annotations

from ._cached import CachedFunction, cached
from ._codec import decode, encode
from ._coordination import GetOrSetOptions, Lock
from ._health import HealthStatus, redact_url
from ._invalidation import (
    FollowingChannel,
    InvalidationChannel,
    InvalidationListener,
    ReadPause,
)
from ._loop_thread import run_sync
from ._open import create_provider, default_url, open  # noqa: A004 - dmem.open is the API
from ._options import ProviderOptions
from ._pattern import Pattern, compile_pattern, escape_pattern
from ._registry import EmbedderSpec, MiddlewareSpec, PluginInfo, ProviderSpec, registry
from ._store import Store
from ._sync import (
    SyncLock,
    SyncMemorySystem,
    SyncStore,
    SyncVectorStore,
    open_sync,
    open_vector_sync,
)
from ._system import MemorySystem
from ._validation import MAX_NAMESPACE_BYTES
from .errors import (
    CorruptValueError,
    DmemError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidPatternError,
    InvalidValueError,
    KeyNotFoundError,
    LockLostError,
    LockNotAcquiredError,
    NotInitializedError,
    NotSupportedError,
    PluginNotFoundError,
    ProviderError,
    ProviderUnavailableError,
    StoreNotFoundError,
    SyncCallInLoopError,
)
from .hookspecs import hookimpl
from .middleware import Cache, Compression, Encryption, Wrapper
from .provider import MIN_VALUE_LIMIT, BaseKVProvider, Entry, KVProvider, refuse_large_values
from .vector import (
    Embedder,
    HashEmbedder,
    MiniLMEmbedder,
    VectorMatch,
    VectorProvider,
    VectorRecord,
    VectorStore,
    open_vector,
)

__all__ = [
    "Embedder",
    "Encryption",
    "HashEmbedder",
    "MiniLMEmbedder",
    "VectorMatch",
    "VectorProvider",
    "VectorRecord",
    "VectorStore",
    "open_vector",
    "BaseKVProvider",
    "CachedFunction",
    "Cache",
    "Compression",
    "CorruptValueError",
    "DmemError",
    "EmbedderSpec",
    "Entry",
    "FollowingChannel",
    "GetOrSetOptions",
    "HealthStatus",
    "InvalidArgumentError",
    "InvalidationChannel",
    "InvalidationListener",
    "InvalidKeyError",
    "InvalidPatternError",
    "InvalidValueError",
    "KVProvider",
    "KeyNotFoundError",
    "Lock",
    "LockLostError",
    "LockNotAcquiredError",
    "MAX_NAMESPACE_BYTES",
    "MIN_VALUE_LIMIT",
    "MemorySystem",
    "MiddlewareSpec",
    "NotInitializedError",
    "NotSupportedError",
    "Pattern",
    "PluginInfo",
    "PluginNotFoundError",
    "ProviderError",
    "ProviderOptions",
    "ProviderSpec",
    "ProviderUnavailableError",
    "ReadPause",
    "Store",
    "StoreNotFoundError",
    "SyncCallInLoopError",
    "SyncLock",
    "SyncMemorySystem",
    "SyncStore",
    "SyncVectorStore",
    "Wrapper",
    "cached",
    "compile_pattern",
    "escape_pattern",
    "create_provider",
    "decode",
    "default_url",
    "encode",
    "hookimpl",
    "open",
    "open_sync",
    "open_vector_sync",
    "redact_url",
    "refuse_large_values",
    "registry",
    "run_sync",
]

__version__ = "0.1.0"
