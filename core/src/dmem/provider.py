"""What a key-value backend implements: :class:`KVProvider`, and :class:`BaseKVProvider`.

Providers store bytes. The :class:`~dmem.Store` in front of them has already
validated every argument and encoded every value, so a provider never sees a
bad key, a bad ttl or a Python object: only

* ``key``: a valid key (str), ``value``: ``bytes``;
* ``ttl_ms``: ``None`` (no expiry) or a positive ``int`` of milliseconds;
* ``tags``: a validated ``dict[str, str]`` (empty means no tags);
* ``pattern``: a compiled :class:`~dmem.Pattern`. Push ``pattern.literal_prefix``
  down to the backend if you can, then keep only keys where
  ``pattern.matches(key)`` is true.

A provider raises :class:`~dmem.errors.ProviderUnavailableError` when its
backend cannot be reached (within its timeout), :class:`~dmem.errors.KeyNotFoundError`
from ``ttl``/``get_tags`` for a key that is not live, and lets other backend
exceptions propagate: the store chains them into a ``ProviderError``.

Optional members a provider may have (read with ``getattr``; the conformance suite
checks each one a provider has, and reports its clause as not run where one is missing):

* ``atomic_batches: bool``: ``set_many``/``delete_many`` are all-or-nothing, also when
  the backend refuses an item partway (say so only if true).
* ``max_value_bytes: int | None``: the largest encoded value the provider accepts (at
  least :data:`MIN_VALUE_LIMIT`); a larger one raises
  :class:`~dmem.errors.InvalidValueError`, and with ``atomic_batches`` a batch holding
  one writes nothing. :func:`refuse_large_values` is the check, for providers that make
  it before any I/O.
* ``async footprint() -> int``: how many records the backend holds for this namespace,
  live or expired-but-not-purged, bookkeeping (tag indexes, expiry queues) included;
  the suite checks it returns to its baseline after churn, so storage cannot grow
  without bound.
* Contract v1.1 operations, each atomic against every other writer (the store raises
  :class:`~dmem.errors.NotSupportedError` naming the provider when one is missing; there
  is deliberately no non-atomic default in :class:`BaseKVProvider`):

  - ``async incr(key, delta, *, ttl_ms) -> int``: the live value parsed with
    :func:`parse_counter` (else InvalidValueError, nothing changed) plus ``delta``
    (:func:`add_to_counter`: InvalidValueError outside signed 64-bit), written back as
    :func:`encode_counter` keeping expiry and tags; a missing or expired key is created
    with ``ttl_ms`` and no tags, starting from 0.
  - ``async compare_and_set(key, expected, value, *, ttl_ms, tags) -> bool``: when the
    live value's bytes equal ``expected``, a ``set`` of value, ttl and tags.
  - ``async compare_and_delete(key, expected) -> bool``: likewise, a ``delete``.
  - ``async delete_by_tag(name, value) -> int``: deletes this namespace's live keys
    tagged ``name=value``, returns how many.

* ``async open_invalidation(listener) -> InvalidationChannel`` (``dmem.InvalidationListener``,
  ``dmem.InvalidationChannel``; ``dmem.FollowingChannel`` is a base for one that follows the
  backend from a task of its own, reconnecting with backoff, as Redis's and PostgreSQL's do):
  the channel through which writes made by any process reach a ``Cache`` on this
  namespace: ``listener.invalidate(keys)`` (``None``: any key) on the loop's thread within
  the channel's ``bound``, ``channel_down()``/``channel_up()`` around a time messages may
  have been lost. Raise :class:`~dmem.errors.NotSupportedError` where a configuration has
  none (the ``Cache`` then falls back to its ttl), ProviderUnavailableError when it cannot
  be opened. Middleware that keeps keys as they are forwards it (``Wrapper`` does).
  Clause ``invalidation.delivery``.
* ``with_namespace(namespace) -> KVProvider``: a provider on another (valid) namespace of
  the same backend, sharing this initialized provider's connection: it takes its own
  reference to it at once, without I/O (see :mod:`dmem.sharing`), so it keeps working
  after this provider closes and until it is closed itself. ``Store.with_namespace`` calls
  it, then the new provider's ``initialize()``, which must open no other connection (it
  may do what a namespace needs, or nothing); its ``aclose()`` gives the reference back.
  Without it, ``Store.with_namespace`` raises :class:`~dmem.errors.NotSupportedError`.
  :class:`BaseKVProvider` has no default: only the provider knows its connection.

Third-party authors: subclass :class:`BaseKVProvider` and implement the
abstract methods; the batch and listing calls then have working (not
necessarily atomic or fast) defaults you can override. Then run the
conformance suite on it (docs/plugin-authors.md).
"""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from ._counter import INT64_MAX, INT64_MIN, add_to_counter, encode_counter, parse_counter
from ._health import HealthStatus
from ._pattern import Pattern
from .errors import InvalidValueError, KeyNotFoundError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MIN_VALUE_LIMIT",
    "BaseKVProvider",
    "Entry",
    "KVProvider",
    "add_to_counter",
    "encode_counter",
    "parse_counter",
    "refuse_large_values",
]

MIN_VALUE_LIMIT = 4 * 1024 * 1024
"""The smallest ``max_value_bytes`` a provider may declare: the contract's 4 MiB."""


def refuse_large_values(values: Iterable[bytes], limit: int | None) -> None:
    """:class:`~dmem.errors.InvalidValueError` if any value is longer than ``limit`` bytes.

    Call it before writing anything, so a batch holding one too-large value writes none.
    """
    if limit is None:
        return
    for value in values:
        if len(value) > limit:
            raise InvalidValueError(
                f"encoded value of {len(value):,} bytes is over this backend's limit of "
                f"{limit:,} bytes (max_value_bytes)"
            )


Entry = tuple[bytes, "int | None"]
"""A live value and its remaining time to live in ms (None: no expiry)."""


@runtime_checkable
class KVProvider(Protocol):
    """The byte-level key-value interface every backend and middleware implements."""

    @property
    def namespace(self) -> str:
        """The namespace this provider reads and writes (a plain attribute is fine)."""

    async def initialize(self) -> None:
        """Connect, create schema; called once by the store before any other call."""

    async def aclose(self) -> None:
        """Release every resource; called once by the store."""

    async def get(self, key: str) -> bytes | None:
        """The live value, or None."""

    async def get_entry(self, key: str) -> Entry | None:
        """The live value with its remaining ttl in ms, or None (used by the Cache)."""

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Live values of ``keys`` (which hold no duplicates)."""

    async def exists(self, key: str) -> bool:
        """True when ``key`` is live."""

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool:
        """Write value, tags and expiry together; with ``if_not_exists`` only when not live
        (atomically). Return whether it was written."""

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        """Write every pair (keys distinct), atomically where the backend can; return how many."""

    async def delete(self, key: str) -> bool:
        """Remove ``key`` and its tags; True if it was live."""

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Remove ``keys`` (distinct); return how many were live."""

    def scan(self, pattern: Pattern) -> AsyncIterator[tuple[str, bytes]]:
        """Stream live ``(key, value)`` pairs matching ``pattern`` in constant memory."""

    async def keys(self, pattern: Pattern) -> list[str]:
        """Live keys matching ``pattern``, no duplicates."""

    async def count(self, pattern: Pattern) -> int:
        """How many live keys match ``pattern``; should not load values."""

    async def clear(self) -> int:
        """Remove every key of this namespace (nothing else); return how many were live."""

    async def find_by_tag(self, name: str, value: str) -> list[str]:
        """Live keys whose tags hold ``name=value``."""

    async def get_tags(self, key: str) -> dict[str, str]:
        """Tags of a live key; :class:`KeyNotFoundError` if not live."""

    async def expire(self, key: str, ttl_ms: int) -> bool:
        """Give a live key a new expiry; False if not live."""

    async def persist(self, key: str) -> bool:
        """Remove a live key's expiry; False if not live."""

    async def ttl(self, key: str) -> float | None:
        """Seconds left, None without expiry; :class:`KeyNotFoundError` if not live."""

    async def health(self) -> HealthStatus:
        """A health report; must not raise and must not contain secrets."""


class BaseKVProvider(abc.ABC):
    """Optional base class: implement the abstract methods, override the rest for speed.

    The defaults for batch calls loop over single calls, so they are *not*
    atomic: override ``set_many``/``delete_many`` where the backend has
    transactions, and say so in your plugin's README.
    """

    namespace: str = ""
    name: str = "provider"
    atomic_batches: bool = False
    """The default batch calls loop over single calls: not atomic (override both)."""
    max_value_bytes: int | None = None
    """None: no limit this provider knows of (see the module docstring)."""

    # --- lifecycle -----------------------------------------------------------------------
    async def initialize(self) -> None:  # noqa: B027 - optional hook
        """Nothing to do by default."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Nothing to do by default."""

    # --- must implement ------------------------------------------------------------------
    @abc.abstractmethod
    async def get_entry(self, key: str) -> Entry | None: ...

    @abc.abstractmethod
    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> bool: ...

    @abc.abstractmethod
    async def delete(self, key: str) -> bool: ...

    @abc.abstractmethod
    def scan(self, pattern: Pattern) -> AsyncIterator[tuple[str, bytes]]: ...

    @abc.abstractmethod
    async def find_by_tag(self, name: str, value: str) -> list[str]: ...

    @abc.abstractmethod
    async def get_tags(self, key: str) -> dict[str, str]: ...

    @abc.abstractmethod
    async def expire(self, key: str, ttl_ms: int) -> bool: ...

    @abc.abstractmethod
    async def persist(self, key: str) -> bool: ...

    # --- defaults built on the above -----------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        entry = await self.get_entry(key)
        return None if entry is None else entry[0]

    async def exists(self, key: str) -> bool:
        return await self.get_entry(key) is not None

    async def ttl(self, key: str) -> float | None:
        entry = await self.get_entry(key)
        if entry is None:
            raise KeyNotFoundError(f"key {key!r} is not live")
        return None if entry[1] is None else entry[1] / 1000

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for key in keys:
            value = await self.get(key)
            if value is not None:
                found[key] = value
        return found

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        ttl_ms: int | None,
        if_not_exists: bool,
        tags: Mapping[str, str],
    ) -> int:
        written = 0
        for key, value in items:
            if await self.set(key, value, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tags):
                written += 1
        return written

    async def delete_many(self, keys: Sequence[str]) -> int:
        removed = 0
        for key in keys:
            if await self.delete(key):
                removed += 1
        return removed

    async def keys(self, pattern: Pattern) -> list[str]:
        return [key async for key, _ in self.scan(pattern)]

    async def count(self, pattern: Pattern) -> int:
        return len(await self.keys(pattern))

    async def clear(self) -> int:
        from ._pattern import compile_pattern

        return await self.delete_many(await self.keys(compile_pattern("*")))

    async def health(self) -> HealthStatus:
        start = time.perf_counter()
        try:
            await self.exists("dmem:health-probe")
        except Exception as exc:  # noqa: BLE001 - health never raises
            return HealthStatus("unhealthy", self.name, f"{type(exc).__name__}")
        latency = (time.perf_counter() - start) * 1000
        return HealthStatus("healthy", self.name, "ok", latency_ms=latency)
