"""Counters, compare-and-set, delete-by-tag, get-or-set and locks on the Store (contract v1.1).

:class:`CoordinationMixin` is a base of :class:`~dmem.Store`: its methods validate like
every Store call (before any I/O), then call the provider's optional operations
``incr``, ``compare_and_set``, ``compare_and_delete`` and ``delete_by_tag``. A provider
without one gets :class:`~dmem.errors.NotSupportedError` naming it: the core never falls
back to a read-then-write that would not be atomic.

``get_or_set`` adds single flight (one factory call per key among the concurrent callers
of one store) and, with ``lock=True``, a :class:`Lock` so that other processes wait for
that one call too. A lock is a key holding its owner's token, written with
``if_not_exists`` and a ttl, released and extended only by its owner (compare-and-delete,
compare-and-set), so a crashed holder blocks others for at most the ttl.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import math
import random
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypedDict

from ._codec import decode, encode
from ._counter import INT64_MAX, INT64_MIN
from ._validation import MAX_KEY_BYTES, check_key, check_tag, check_tags, short_repr, ttl_to_ms
from .errors import (
    DmemError,
    InvalidArgumentError,
    InvalidValueError,
    LockLostError,
    LockNotAcquiredError,
    NotInitializedError,
    NotSupportedError,
    ProviderError,
)

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:  # a dependency on 3.10 only (pyproject), for type checkers
        from typing_extensions import Unpack

    from .provider import KVProvider

__all__ = ["LOCK_KEY_PREFIX", "OPEN_STATE", "CoordinationMixin", "GetOrSetOptions", "Lock"]

OPEN_STATE = 1
"""``Store._state`` of an open store (the Store's states: 0 new, 1 open, 2 closed)."""
LOCK_KEY_PREFIX = "dmem:lock:"
"""The key of ``get_or_set(..., lock=True)``'s lock for key K: this prefix + K."""
GET_OR_SET_LOCK_TTL = 30.0  # seconds a crashed get_or_set holder can block the others
_MISSING: Any = object()
_FIRST_POLL = 0.005  # seconds; doubled each try up to _MAX_POLL, with jitter
_MAX_POLL = 0.2

# (id of the store, key) -> the flight under way: its callers share its result.
_FLIGHTS: dict[tuple[int, str], asyncio.Future[Any]] = {}


def _wrap(exc: Exception) -> ProviderError:
    return ProviderError(f"backend error: {type(exc).__module__}.{type(exc).__name__}: {exc}")


def _check_delta(delta: object) -> int:
    if type(delta) is not int:
        raise InvalidArgumentError(f"delta must be an int, not {type(delta).__name__}")
    if not INT64_MIN <= delta <= INT64_MAX:
        raise InvalidArgumentError(f"delta must fit in signed 64-bit, got {short_repr(delta)}")
    return delta


def _encode(value: object) -> bytes:
    try:
        return encode(value)
    except DmemError:
        raise
    except Exception as exc:  # noqa: BLE001 - an object whose repr or == raises, deep in it
        raise InvalidValueError(f"value cannot be stored: {type(exc).__name__}") from None


class GetOrSetOptions(TypedDict, total=False):
    """The keyword-only options of :meth:`Store.get_or_set <dmem.Store.get_or_set>`."""

    ttl: float | None
    """Seconds the stored value lives; None (the default): no expiry."""
    tags: Mapping[str, str] | None
    """Tags of the stored value."""
    lock: bool
    """Also make other processes wait for the one factory call (default False)."""


_GET_OR_SET_OPTIONS = frozenset(GetOrSetOptions.__annotations__)


def _check_get_or_set(factory: object, options: Mapping[str, object]) -> None:
    for name in options:
        if name not in _GET_OR_SET_OPTIONS:
            # What Python says of an unknown keyword argument to any other Store method.
            raise TypeError(f"get_or_set() got an unexpected keyword argument {name!r}")
    ttl = options.get("ttl")
    if ttl is not None:
        ttl_to_ms(ttl)
    tags = options.get("tags")
    if tags is not None:
        check_tags(tags)
    lock = options.get("lock", False)
    if type(lock) is not bool:
        raise InvalidArgumentError(f"lock must be a bool, not {type(lock).__name__}")
    if not callable(factory):
        raise InvalidArgumentError(f"factory must be callable, not {type(factory).__name__}")


def _lock_key(key: str) -> str:
    """The lock key of ``get_or_set(key, lock=True)``; a digest when prefix + key is too long."""
    candidate = LOCK_KEY_PREFIX + key
    if len(candidate.encode()) <= MAX_KEY_BYTES:
        return candidate
    return LOCK_KEY_PREFIX + "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class CoordinationMixin:
    """The v1.1 operations of :class:`~dmem.Store` (see the module docstring)."""

    __slots__ = ()

    # Provided by Store.
    _provider: KVProvider
    _top: KVProvider
    _state: int

    def _not_open(self) -> NotInitializedError:  # pragma: no cover - Store overrides it
        raise NotImplementedError

    def _operation(self, name: str) -> Callable[..., Any]:
        """The chain's ``name``, or NotSupportedError when the provider lacks it."""
        if self._state != OPEN_STATE:
            raise self._not_open()
        if not callable(getattr(self._provider, name, None)):
            provider = type(self._provider)
            raise NotSupportedError(
                f"{provider.__module__}.{provider.__qualname__} does not support {name} "
                "(an optional provider operation of contract v1.1)"
            )
        found = getattr(self._top, name, None)
        if not callable(found):  # a middleware of the chain that does not forward it
            raise NotSupportedError(f"the middleware chain does not forward {name}")
        return found  # type: ignore[no-any-return]

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        operation = self._operation(name)
        try:
            return await operation(*args, **kwargs)
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc

    # --- counters ----------------------------------------------------------------------------
    async def incr(self, key: str, delta: int = 1, *, ttl: float | None = None) -> int:
        """Add ``delta`` to the int at ``key`` atomically; return the new value.

        A missing key starts at 0 and gets ``ttl`` (and no tags); an existing key keeps its
        expiry and tags. A live value that is not an int, or a result outside signed
        64-bit, is :class:`InvalidValueError`, and nothing changes.
        """
        check_key(key)
        _check_delta(delta)
        ttl_ms = None if ttl is None else ttl_to_ms(ttl)
        result: int = await self._call("incr", key, delta, ttl_ms=ttl_ms)
        return result

    async def decr(self, key: str, delta: int = 1, *, ttl: float | None = None) -> int:
        """``incr(key, -delta, ttl=ttl)``."""
        check_key(key)
        return await self.incr(key, -_check_delta(delta), ttl=ttl)

    # --- compare-and-set / compare-and-delete -------------------------------------------------
    async def compare_and_set(
        self,
        key: str,
        expected: Any,
        value: Any,
        *,
        ttl: float | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> bool:
        """Replace the value (tags, expiry) of ``key`` only if its live value is ``expected``.

        Equal means equal encoded bytes: a dict matches only with its keys in the same
        order (what ``get`` returned always matches). A missing key never matches. Atomic
        against every other writer; True if written.
        """
        check_key(key)
        ttl_ms = None if ttl is None else ttl_to_ms(ttl)
        tag_map = {} if tags is None else check_tags(tags)
        old, new = _encode(expected), _encode(value)
        written: bool = await self._call(
            "compare_and_set", key, old, new, ttl_ms=ttl_ms, tags=tag_map
        )
        return written

    async def compare_and_delete(self, key: str, expected: Any) -> bool:
        """Delete ``key`` only if its live value is ``expected`` (as compare_and_set)."""
        check_key(key)
        removed: bool = await self._call("compare_and_delete", key, _encode(expected))
        return removed

    async def delete_by_tag(self, name: str, value: str) -> int:
        """Delete the live keys of this namespace tagged ``name=value``; return how many."""
        check_tag(name, value)
        removed: int = await self._call("delete_by_tag", name, value)
        return removed

    # --- get-or-set with single flight -------------------------------------------------------
    async def get_or_set(
        self, key: str, factory: Callable[[], Any], **options: Unpack[GetOrSetOptions]
    ) -> Any:
        """The value of ``key``; when missing, ``factory()``'s result, stored and returned.

        ``factory`` is a sync or async callable. Keyword-only options
        (:class:`~dmem.GetOrSetOptions`): ``ttl=None``, ``tags=None``, ``lock=False``, as
        for :meth:`set`. Concurrent callers on this store share one factory call (single
        flight); its exception reaches each of them and nothing is stored. With
        ``lock=True`` callers in other processes wait for it too (a lock at
        ``dmem:lock:KEY`` with a 30 s ttl). When another writer stored the key first, its
        value is returned.
        """
        # Why **options and not `*, ttl=None, tags=None, lock=False`: CPython 3.11-3.13
        # does not specialise a call to a function with keyword-only parameters, and that
        # generic call cost a hit about 100 ns (0.86x a plain get on memory://, measured);
        # this signature costs one empty dict. Type checkers see the same keywords.
        # The hit path is Store.get inlined (one coroutine frame less: this is the call a
        # cache-aside user makes most), after the arguments' cheap checks.
        if self._state != OPEN_STATE:
            raise self._not_open()
        check_key(key)
        if options or not callable(factory):
            _check_get_or_set(factory, options)
        try:
            data = await self._top.get(key)
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc
        if data is not None:
            return decode(data)
        return await self._get_or_set_missed(
            key,
            factory,
            options.get("ttl"),
            options.get("tags"),
            options.get("lock", False),
        )

    async def _get_or_set_missed(
        self,
        key: str,
        factory: Callable[[], Any],
        ttl: float | None,
        tags: Mapping[str, str] | None,
        lock: bool,
    ) -> Any:
        # The miss path, a coroutine of its own: its locals and handlers would otherwise make
        # every hit's frame bigger.
        flight_key = (id(self), key)
        flight = _FLIGHTS.get(flight_key)
        if flight is not None:
            return await asyncio.shield(flight)
        flight = asyncio.get_running_loop().create_future()
        _FLIGHTS[flight_key] = flight
        try:
            if lock:
                held = self.lock(_lock_key(key), ttl=GET_OR_SET_LOCK_TTL)
                await held.acquire()
                try:
                    value = await self._fill(key, factory, ttl, tags)
                finally:
                    # False when a factory outlasted the lock's ttl: the value stands anyway
                    # (written with if_not_exists, so every process reads the same one).
                    await held.release()
            else:
                value = await self._fill(key, factory, ttl, tags)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                flight.cancel()
            else:
                flight.set_exception(exc)
                flight.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            flight.set_result(value)
            return value
        finally:
            if _FLIGHTS.get(flight_key) is flight:
                del _FLIGHTS[flight_key]

    async def _fill(
        self,
        key: str,
        factory: Callable[[], Any],
        ttl: float | None,
        tags: Mapping[str, str] | None,
    ) -> Any:
        get, set_ = self.get, self.set  # type: ignore[attr-defined]
        # Read again before calling the factory: our miss may have been read before another
        # caller's flight stored the value and ended (so it is gone from _FLIGHTS), or, under
        # the lock, the holder before us filled it. A miss costs one read more, a hit nothing.
        found = await get(key, _MISSING)
        if found is not _MISSING:
            return found
        value = factory()
        if inspect.isawaitable(value):
            value = await value
        if await set_(key, value, ttl=ttl, tags=tags, if_not_exists=True):
            return value
        # Another writer stored it meanwhile: every caller gets the one stored value.
        stored = await get(key, _MISSING)
        return value if stored is _MISSING else stored

    # --- locks -------------------------------------------------------------------------------
    def lock(self, name: str, *, ttl: float, wait: float | None = None) -> Lock:
        """A lock on key ``name`` (see :class:`Lock`); use it with ``async with``."""
        return Lock(self, name, ttl=ttl, wait=wait)


class Lock:
    """A lock held as key ``name`` whose value is this lock's owner token.

    ``async with store.lock("job", ttl=10, wait=5):`` acquires it (``if_not_exists`` with
    the ttl), polling with backoff for up to ``wait`` seconds (None: until acquired; 0: one
    try) before :class:`LockNotAcquiredError`. Only the owner releases or extends it
    (compare-and-delete, compare-and-set of the token). If the ttl ran out while held (the
    lock was lost, maybe taken by another), ``release``/``extend`` return False and leaving
    the ``async with`` block raises :class:`LockLostError` (unless the block raised).
    The key lives in the store's namespace: it shows in ``keys()``, and ``clear()``
    removes it.
    """

    __slots__ = ("_store", "_ttl", "_wait", "name", "token")

    def __init__(
        self, store: CoordinationMixin, name: str, *, ttl: float, wait: float | None = None
    ) -> None:
        check_key(name)
        ttl_to_ms(ttl)
        if wait is not None and (
            type(wait) not in (int, float) or not math.isfinite(wait) or wait < 0
        ):
            raise InvalidArgumentError(f"wait must be None or seconds >= 0, got {wait!r}")
        self._store = store
        self._ttl = ttl
        self._wait = wait
        self.name = name
        self.token = secrets.token_hex(16)

    def __repr__(self) -> str:
        return f"<dmem.Lock {self.name!r} ttl={self._ttl}>"

    async def acquire(self) -> None:
        """Take the lock, waiting up to ``wait`` seconds; LockNotAcquiredError after that."""
        store: Any = self._store
        store._operation("compare_and_delete")  # release must be possible: check first
        deadline = None if self._wait is None else time.monotonic() + self._wait
        pause = _FIRST_POLL
        while not await store.set(self.name, self.token, ttl=self._ttl, if_not_exists=True):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise LockNotAcquiredError(
                    f"lock {self.name!r} is held by another owner (waited {self._wait}s)"
                )
            sleep = pause * (0.5 + random.random())  # jitter, not security
            await asyncio.sleep(sleep if left is None else min(sleep, left))
            pause = min(pause * 2, _MAX_POLL)

    async def release(self) -> bool:
        """Give the lock back; False if it was no longer ours (its ttl ran out)."""
        store: Any = self._store
        released: bool = await store.compare_and_delete(self.name, self.token)
        return released

    async def extend(self, ttl: float | None = None) -> bool:
        """Reset the lock's ttl (to ``ttl``, default the original); False if it was lost."""
        store: Any = self._store
        chosen = self._ttl if ttl is None else ttl
        extended: bool = await store.compare_and_set(self.name, self.token, self.token, ttl=chosen)
        return extended

    async def owned(self) -> bool:
        """True while this lock still holds its key."""
        store: Any = self._store
        current: object = await store.get(self.name)
        return current == self.token

    async def __aenter__(self) -> Lock:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        released = await self.release()
        if not released and exc is None:
            raise LockLostError(
                f"lock {self.name!r} expired while held (ttl {self._ttl}s): another owner "
                "may have run at the same time"
            )
