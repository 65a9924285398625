"""Every error dmem raises.

One root, :class:`DmemError`; each leaf also derives from the builtin a caller
would naturally catch (``ValueError`` for bad input, ``KeyError`` for a missing
key, ``ConnectionError`` for an unreachable backend)::

    DmemError
    ├── InvalidArgumentError (ValueError)     bad ttl, option, URL, tag ...
    │   ├── InvalidKeyError                   key not a valid str
    │   ├── InvalidValueError                 value not storable
    │   └── InvalidPatternError               malformed glob
    ├── KeyNotFoundError (KeyError)           ttl()/get_tags() of a missing key
    ├── NotInitializedError (RuntimeError)    call before initialize()/after aclose()
    ├── NotSupportedError (NotImplementedError) the provider lacks an optional operation
    ├── LockNotAcquiredError (TimeoutError)   Lock: still held by another after ``wait``
    ├── LockLostError                         Lock: its ttl ran out while held
    ├── SyncCallInLoopError (RuntimeError)    a sync call on dmem's own loop thread
    ├── CorruptValueError                     stored bytes cannot be decoded
    ├── PluginNotFoundError (LookupError)     no plugin for a URL scheme / name
    ├── StoreNotFoundError (FileNotFoundError) create=False and no such file / directory
    └── ProviderError                         the backend failed
        └── ProviderUnavailableError (ConnectionError)   backend unreachable

Backend exceptions (``redis.*``, ``sqlalchemy.*`` ...) never escape raw: they
are chained as ``__cause__`` of a :class:`ProviderError`. Messages never carry
secrets; use :func:`dmem.redact_url` when a URL goes into one.
"""

from __future__ import annotations

__all__ = [
    "CorruptValueError",
    "DmemError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "InvalidPatternError",
    "InvalidValueError",
    "KeyNotFoundError",
    "LockLostError",
    "LockNotAcquiredError",
    "NotInitializedError",
    "NotSupportedError",
    "PluginNotFoundError",
    "ProviderError",
    "ProviderUnavailableError",
    "StoreNotFoundError",
    "SyncCallInLoopError",
]


class DmemError(Exception):
    """Root of every error raised by dmem and its plugins."""


class InvalidArgumentError(DmemError, ValueError):
    """An argument is invalid (ttl, option, URL, tag, ...); raised before any I/O."""


class InvalidKeyError(InvalidArgumentError):
    """A key is not a non-empty str of at most 1024 UTF-8 bytes without NUL or lone surrogates."""


class InvalidValueError(InvalidArgumentError):
    """A value is not storable (NaN, non-str dict key, unsupported type, too deep ...)."""


class InvalidPatternError(InvalidArgumentError):
    """A glob pattern is malformed (unclosed ``[``, trailing ``\\``, empty class ...)."""


class KeyNotFoundError(DmemError, KeyError):
    """The key is not live (missing or expired)."""

    def __str__(self) -> str:
        # KeyError.__str__ shows repr(args[0]); a message reads better as itself.
        return str(self.args[0]) if self.args else "key not found"


class NotInitializedError(DmemError, RuntimeError):
    """The store was used before ``initialize()`` or after ``aclose()``."""


class NotSupportedError(DmemError, NotImplementedError):
    """The provider does not offer an optional operation (``Store.with_namespace`` on a
    provider without ``with_namespace``); the message names the provider."""


class LockNotAcquiredError(DmemError, TimeoutError):
    """``Store.lock``: another owner still held the lock when ``wait`` ran out."""


class LockLostError(DmemError):
    """``Store.lock``: the lock's ttl ran out while it was held, so another owner may have
    taken it; raised when leaving the ``async with`` block."""


class SyncCallInLoopError(DmemError, RuntimeError):
    """A sync API call was made on dmem's own event-loop thread, where it would deadlock."""


class CorruptValueError(DmemError):
    """Stored bytes cannot be decoded into a value (or exceed a decompression limit)."""


class PluginNotFoundError(DmemError, LookupError):
    """No installed plugin provides what was asked for; the message says what to install."""


class StoreNotFoundError(DmemError, FileNotFoundError):
    """Opened with ``create=False``, and the local storage (a SQLite file, a Chroma
    directory) does not exist; nothing was created."""


class ProviderError(DmemError):
    """The backend failed; the backend's own exception is the ``__cause__``."""


class ProviderUnavailableError(ProviderError, ConnectionError):
    """The backend cannot be reached; raised within the configured timeout, never a hang."""
