"""The :class:`Store` users hold: validates, encodes once, runs the middleware chain.

Every call checks its arguments before any I/O, then hands bytes to the top of
the provider chain (outermost middleware, or the provider itself). A bad
argument of any type or value is a :class:`DmemError` (an
:class:`InvalidArgumentError` or one of its subclasses), never a ``TypeError``
from deeper down. Any exception from below that is not a :class:`DmemError` is
wrapped in a :class:`ProviderError` with the original as ``__cause__``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from ._codec import decode, encode, encode_many
from ._coordination import OPEN_STATE, CoordinationMixin
from ._derive import DerivedStore
from ._health import HealthStatus, redact_url
from ._logging import log, slow_call_log
from ._pattern import Pattern, compile_pattern
from ._validation import (
    check_key,
    check_namespace,
    check_tag,
    check_tags,
    iterate,
    short_repr,
    ttl_to_ms,
)
from .errors import (
    DmemError,
    InvalidArgumentError,
    InvalidPatternError,
    InvalidValueError,
    NotInitializedError,
    NotSupportedError,
    ProviderError,
)
from .provider import KVProvider

__all__ = ["Store"]

_NEW, _OPEN, _CLOSED = 0, OPEN_STATE, 2
# Iterable, but never a collection of keys or pairs: they iterate characters or ints (and a
# released memoryview raises ValueError on the first one).
_TEXT = (str, bytes, bytearray, memoryview)


def _wrap(exc: Exception) -> ProviderError:
    return ProviderError(f"backend error: {type(exc).__module__}.{type(exc).__name__}: {exc}")


class Store(CoordinationMixin):
    """A key-value store over one provider and a middleware chain.

    Get one with ``await dmem.open(url)``; or build it from a provider and
    call :meth:`initialize` (or use ``async with``).
    """

    __slots__ = ("_provider", "_state", "_top", "middleware", "url")

    def __init__(
        self,
        provider: KVProvider,
        *,
        middleware: Sequence[Any] = (),
        url: str | None = None,
    ) -> None:
        _check_provider(provider)
        check_namespace(provider.namespace, "the provider's namespace")
        if url is not None and type(url) is not str:
            raise InvalidArgumentError(f"url must be a str or None, not {type(url).__name__}")
        self._provider = provider
        self.middleware = _check_middleware(middleware)
        top: KVProvider = provider
        # List order is outermost first, so wrap from the innermost outwards.
        for mw in reversed(self.middleware):
            top = mw.wrap(top)
        self.url = redact_url(url) if url else None
        self._top = slow_call_log(top, self.url or type(provider).__name__)
        self._state = _NEW

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def provider(self) -> KVProvider:
        """The backend provider under the middleware."""
        return self._provider

    @property
    def namespace(self) -> str:
        return self._provider.namespace

    async def initialize(self) -> None:
        """Connect the chain. Idempotent; after :meth:`aclose` it raises NotInitializedError."""
        if self._state == _OPEN:
            return
        if self._state == _CLOSED:
            raise NotInitializedError("store is closed; open a new one")
        try:
            await self._top.initialize()
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc
        self._state = _OPEN
        log.debug("opened %s (namespace %r)", self._where(), self.namespace)

    async def aclose(self) -> None:
        """Release the backend. Idempotent."""
        if self._state == _CLOSED:
            return
        was_open = self._state == _OPEN
        self._state = _CLOSED
        if was_open:
            try:
                await self._top.aclose()
            except DmemError:
                raise
            except Exception as exc:
                raise _wrap(exc) from exc
            log.debug("closed %s (namespace %r)", self._where(), self.namespace)

    def _where(self) -> str:
        return self.url or type(self._provider).__name__

    async def __aenter__(self) -> Store:
        await self.initialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _not_open(self) -> NotInitializedError:
        if self._state == _NEW:
            return NotInitializedError("store is not initialized: await store.initialize() first")
        return NotInitializedError("store is closed")

    def __repr__(self) -> str:
        return f"<dmem.Store {self._where()} namespace={self.namespace!r}>"

    # --- other namespaces on the same connection -------------------------------------------
    def with_namespace(self, namespace: str) -> DerivedStore:
        """A store on ``namespace`` over this store's connection, with the same middleware.

        ``other = await kv.with_namespace("users")``, or ``async with kv.with_namespace(
        "users") as other``. Cheap: no new connection, pool or thread, and no round trip to
        open it (the provider's ``with_namespace``). Middleware are fresh instances from the
        same specs (a ``Cache`` of its own). Each store is closed on its own: closing this
        one leaves ``other`` working, and the connection closes with the last store using
        it. A bad namespace is InvalidArgumentError and a store that is not open
        NotInitializedError, here and before any I/O; a provider without
        ``with_namespace`` is NotSupportedError.
        """
        self._derivation(namespace)
        return DerivedStore(self, namespace)

    def _derivation(self, namespace: object) -> Callable[[str], KVProvider]:
        if self._state != _OPEN:
            raise self._not_open()
        check_namespace(namespace)
        derive = getattr(self._provider, "with_namespace", None)
        if not callable(derive):
            raise NotSupportedError(
                f"{type(self._provider).__name__} cannot open another namespace on its "
                "connection (it has no with_namespace); open one with "
                "dmem.open(url, namespace=...)"
            )
        return derive  # type: ignore[no-any-return]

    # --- single keys -----------------------------------------------------------------------
    async def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when it is not live."""
        if self._state != _OPEN:
            raise self._not_open()
        check_key(key)
        try:
            data = await self._top.get(key)
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc
        if data is None:
            return default
        return decode(data)

    async def get_with_ttl(self, key: str) -> tuple[Any, float | None] | None:
        """``(value, seconds left)`` of a live key in one atomic read, or None if not live.

        Seconds left is None for a key without expiry; otherwise > 0, at ms resolution,
        rounded up (as :meth:`ttl`). One read of the provider's entry, so the value and
        its ttl belong together (two calls could see a rewrite in between).
        """
        if self._state != _OPEN:
            raise self._not_open()
        check_key(key)
        try:
            entry = await self._top.get_entry(key)
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc
        if entry is None:
            return None
        data, left_ms = entry
        return decode(data), None if left_ms is None else left_ms / 1000

    async def exists(self, key: str) -> bool:
        if self._state != _OPEN:
            raise self._not_open()
        check_key(key)
        try:
            return await self._top.exists(key)
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc

    async def set(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        if_not_exists: bool = False,
        tags: Mapping[str, str] | None = None,
    ) -> bool:
        """Store ``value``, replacing value, tags and expiry; True if written."""
        if self._state != _OPEN:
            raise self._not_open()
        check_key(key)
        ttl_ms = None if ttl is None else ttl_to_ms(ttl)
        # ``tags is None`` first: the common call costs one identity test. Not ``if tags``,
        # which took [], 0 and "" for "no tags" while refusing other non-mappings.
        tag_map = {} if tags is None else check_tags(tags)
        _check_flag(if_not_exists)
        try:
            data = encode(value)
        except DmemError:
            raise
        except Exception as exc:
            raise _bad_value(exc) from exc
        try:
            return await self._top.set(
                key, data, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tag_map
            )
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc

    async def delete(self, key: str) -> bool:
        if self._state != _OPEN:
            raise self._not_open()
        check_key(key)
        try:
            return await self._top.delete(key)
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc

    # --- batches ---------------------------------------------------------------------------
    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Values of the live keys among ``keys`` (duplicates allowed)."""
        if self._state != _OPEN:
            raise self._not_open()
        unique = _unique_keys(keys)
        if not unique:
            return {}
        try:
            found = await self._top.get_many(unique)
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc
        return {key: decode(data) for key, data in found.items()}

    async def set_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
        if_not_exists: bool = False,
        tags: Mapping[str, str] | None = None,
    ) -> int:
        """Store many values with the same options; nothing is written if one is invalid.

        A key given twice keeps its last value. Returns how many keys were written.
        """
        if self._state != _OPEN:
            raise self._not_open()
        ttl_ms = None if ttl is None else ttl_to_ms(ttl)
        tag_map = {} if tags is None else check_tags(tags)
        _check_flag(if_not_exists)
        batch: list[tuple[str, bytes]]
        if type(items) is dict:
            # The common case, kept to C-level iteration (map/zip): a plain dict has no
            # duplicate keys to fold, and no pair to unpack and check (~0.1 us a pair less).
            for _ in map(check_key, items):
                pass
            batch = list(zip(items, _encode_many(items.values()), strict=True))
        else:
            if isinstance(items, _TEXT):
                raise InvalidArgumentError(
                    f"set_many takes a mapping or (key, value) pairs, not {type(items).__name__}"
                )
            pairs = items.items() if isinstance(items, Mapping) else iterate(items, "items")
            keys: list[str] = []
            values: list[Any] = []
            for pair in pairs:
                if not isinstance(pair, tuple) or len(pair) != 2:
                    raise InvalidArgumentError(
                        "set_many takes a mapping or (key, value) pairs, "
                        f"not an iterable of {type(pair).__name__}"
                    )
                key, value = pair
                check_key(key)
                keys.append(key)
                values.append(value)
            # Every value is checked, also one that a later pair with the same key replaces;
            # then a key given twice keeps its last value (at its first position).
            batch = list(dict(zip(keys, _encode_many(values), strict=True)).items())
        if not batch:
            return 0
        try:
            return await self._top.set_many(
                batch, ttl_ms=ttl_ms, if_not_exists=if_not_exists, tags=tag_map
            )
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Remove ``keys``; returns how many distinct live keys were removed."""
        if self._state != _OPEN:
            raise self._not_open()
        unique = _unique_keys(keys)
        if not unique:
            return 0
        try:
            return await self._top.delete_many(unique)
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc

    # --- listing ---------------------------------------------------------------------------
    async def scan(self, pattern: str = "*") -> AsyncIterator[tuple[str, Any]]:
        """Stream ``(key, value)`` of live keys matching ``pattern``, in constant memory."""
        if self._state != _OPEN:
            raise self._not_open()
        compiled = _compile(pattern)
        iterator = self._top.scan(compiled).__aiter__()
        while True:
            try:
                key, data = await iterator.__anext__()
            except StopAsyncIteration:
                return
            except DmemError:
                raise
            except Exception as exc:
                raise _wrap(exc) from exc
            yield key, decode(data)

    async def keys(self, pattern: str = "*") -> list[str]:
        """Live keys matching ``pattern``, unordered, without duplicates."""
        if self._state != _OPEN:
            raise self._not_open()
        compiled = _compile(pattern)
        try:
            return await self._top.keys(compiled)
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc

    async def count(self, pattern: str = "*") -> int:
        if self._state != _OPEN:
            raise self._not_open()
        compiled = _compile(pattern)
        try:
            return await self._top.count(compiled)
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc

    async def clear(self) -> int:
        """Remove every key of this store's namespace; returns how many were live."""
        if self._state != _OPEN:
            raise self._not_open()
        try:
            return await self._top.clear()
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc

    # --- tags and expiry -------------------------------------------------------------------
    async def find_by_tag(self, name: str, value: str) -> list[str]:
        """Live keys whose tags hold ``name=value``."""
        if self._state != _OPEN:
            raise self._not_open()
        check_tag(name, value)
        try:
            return await self._top.find_by_tag(name, value)
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc

    async def get_tags(self, key: str) -> dict[str, str]:
        """Tags of a live key; :class:`KeyNotFoundError` if it is not live."""
        if self._state != _OPEN:
            raise self._not_open()
        check_key(key)
        try:
            return await self._top.get_tags(key)
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc

    async def expire(self, key: str, ttl: float) -> bool:
        """Give a live key a new expiry ``ttl`` seconds from now; False if not live."""
        if self._state != _OPEN:
            raise self._not_open()
        check_key(key)
        ttl_ms = ttl_to_ms(ttl)
        try:
            return await self._top.expire(key, ttl_ms)
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc

    async def persist(self, key: str) -> bool:
        """Remove a live key's expiry; False if not live."""
        if self._state != _OPEN:
            raise self._not_open()
        check_key(key)
        try:
            return await self._top.persist(key)
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc

    async def ttl(self, key: str) -> float | None:
        """Seconds left for a live key, None without expiry; KeyNotFoundError if not live."""
        if self._state != _OPEN:
            raise self._not_open()
        check_key(key)
        try:
            return await self._top.ttl(key)
        except DmemError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc

    async def health(self) -> HealthStatus:
        """A health report of the provider chain; never raises, never shows a secret."""
        name = type(self._provider).__name__
        if self._state != _OPEN:
            return HealthStatus("unhealthy", name, str(self._not_open()))
        start = time.perf_counter()
        try:
            report = await self._top.health()
        except Exception as exc:  # noqa: BLE001 - health never raises
            return HealthStatus("unhealthy", name, f"health check failed: {type(exc).__name__}")
        if report.latency_ms is None:
            latency = (time.perf_counter() - start) * 1000
            report = HealthStatus(
                report.status, report.provider, report.message, latency, report.details
            )
        return report


def _check_flag(flag: object) -> None:
    if type(flag) is not bool:
        raise InvalidArgumentError(f"if_not_exists must be a bool, not {type(flag).__name__}")


def _compile(pattern: object) -> Pattern:
    # The type is checked here, not left to compile_pattern: its cache would hash an
    # unhashable argument (a list) first and raise TypeError.
    if type(pattern) is not str:
        raise InvalidPatternError(f"pattern must be a str, not {type(pattern).__name__}")
    return compile_pattern(pattern)


def _bad_value(exc: Exception) -> InvalidValueError:
    # What the codec's own checks let through and Python then refused, e.g. a released
    # memoryview (ValueError): still a bad value, raised before any I/O.
    return InvalidValueError(f"value cannot be stored: {type(exc).__name__}: {exc}")


def _encode_many(values: Collection[object]) -> list[bytes]:
    try:
        return encode_many(values)
    except DmemError:
        raise
    except Exception as exc:
        raise _bad_value(exc) from exc


def _unique_keys(keys: Iterable[str]) -> list[str]:
    if isinstance(keys, _TEXT):
        raise InvalidArgumentError(f"pass an iterable of keys, not a single {type(keys).__name__}")
    listed = list(iterate(keys, "keys"))
    for key in listed:
        check_key(key)
    return list(dict.fromkeys(listed))


def _check_provider(provider: object) -> None:
    """InvalidArgumentError unless ``provider`` has every member of :class:`KVProvider`.

    So a wrong object fails here, not later as an AttributeError from deep inside. The
    methods are looked up on the class, as ``collections.abc`` does: that runs none of the
    provider's own code (a property, a ``__getattribute__``) for them.
    """
    kind = type(provider)
    missing = [name for name in _PROVIDER_METHODS if not callable(getattr(kind, name, None))]
    if not hasattr(provider, "namespace"):  # may be a plain instance attribute
        missing.append("namespace")
    if missing:
        raise InvalidArgumentError(
            f"{short_repr(provider)} is not a dmem.KVProvider (missing: {', '.join(missing)})"
        )


_PROVIDER_METHODS = sorted(
    name
    for name in dir(KVProvider)
    if not name.startswith("_") and name not in dir(object) and name != "namespace"
)


def _check_middleware(middleware: object) -> tuple[Any, ...]:
    if isinstance(middleware, (*_TEXT, Mapping)):
        raise InvalidArgumentError(
            f"middleware must be a list of middleware, not {type(middleware).__name__}"
        )
    chain = tuple(iterate(middleware, "middleware"))
    for item in chain:
        if not callable(getattr(item, "wrap", None)):
            raise InvalidArgumentError(
                f"{short_repr(item)} is not a middleware (it has no wrap(inner))"
            )
    return chain
