"""``@dmem.cached``: memoize an async function in a store, through ``get_or_set``.

The default key is ``"<module>.<qualified name>:<arguments>"``, the arguments being their
canonical JSON (``[[positional...], {keyword: ...}]``, keywords sorted by name) when that
is at most 200 bytes, else ``sha256:`` and the first 32 hex digits of its SHA-256: equal
arguments give the same key in every process and run, and short ones stay readable.
Arguments that are not JSON-shaped (objects, bytes, sets) have no stable key: pass
``key=`` (a callable taking the function's arguments and returning the key) for those.
Concurrent callers with equal arguments share one call (single flight); ``lock=True``
extends that to other processes.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, Protocol, TypeVar, cast

import orjson

from ._validation import check_tags, ttl_to_ms
from .errors import InvalidArgumentError

__all__ = ["CachedFunction", "cached"]

P = ParamSpec("P")
R = TypeVar("R")
_OPTIONS = orjson.OPT_SORT_KEYS


class CachedFunction(Protocol[P, R]):
    """What ``@cached`` returns: the function, plus its key and invalidation."""

    __wrapped__: Callable[P, Awaitable[R]]

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The key a call with these arguments reads and writes."""

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Delete the cached result of a call with these arguments; True if there was one."""

    async def invalidate_all(self) -> int:
        """Delete every result written with ``tags`` (needs ``tags=``); how many went."""


_MISSING: Any = object()
_READABLE = 200  # bytes of canonical JSON kept as they are in the key
_BIG = 2**63  # orjson refuses ints outside 64 bits: those take its path (and its error)


def _default_key(prefix: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    if not kwargs and len(args) == 1 and type(args[0]) is int and -_BIG < args[0] < _BIG:
        # The most common call, one int (an id): the same text orjson writes, without it.
        return f"{prefix}[[{args[0]}],{{}}]"
    try:
        canonical = orjson.dumps((args, kwargs), option=_OPTIONS)
    except TypeError:
        raise InvalidArgumentError(
            f"@cached {prefix}: arguments that are not JSON-shaped have no stable key; "
            "pass key=lambda *args, **kwargs: ... to @dmem.cached"
        ) from None
    if len(canonical) <= _READABLE:
        return prefix + canonical.decode()
    return f"{prefix}sha256:{hashlib.sha256(canonical).hexdigest()[:32]}"


def cached(
    store: Any,
    *,
    ttl: float | None = None,
    key: Callable[..., str] | None = None,
    tags: Mapping[str, str] | None = None,
    lock: bool = False,
) -> Callable[[Callable[P, Awaitable[R]]], CachedFunction[P, R]]:
    """Cache an async function's results in ``store`` (a :class:`~dmem.Store`, or a callable
    returning one, for a store opened after the decorator runs).

    ``ttl``, ``tags`` and ``lock`` go to :meth:`~dmem.Store.get_or_set`. The function's
    result must be storable (JSON-shaped or bytes); ``None`` is a result like any other.
    """
    if ttl is not None:
        ttl_to_ms(ttl)
    tag_map = None if tags is None else check_tags(tags)
    if type(lock) is not bool:
        raise InvalidArgumentError(f"lock must be a bool, not {type(lock).__name__}")
    if key is not None and not callable(key):
        raise InvalidArgumentError("key must be a callable returning the key")

    direct = hasattr(store, "get_or_set")  # a Store, not a callable returning one

    def the_store() -> Any:
        return store if direct else store()

    def decorate(fn: Callable[P, Awaitable[R]]) -> CachedFunction[P, R]:
        if not inspect.iscoroutinefunction(fn):
            raise InvalidArgumentError("@dmem.cached decorates async functions")
        prefix = f"{fn.__module__}.{fn.__qualname__}:"

        def key_for(*args: P.args, **kwargs: P.kwargs) -> str:
            # get_or_set checks the key (a custom one may be bad).
            return _default_key(prefix, args, kwargs) if key is None else key(*args, **kwargs)

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            chosen = _default_key(prefix, args, kwargs) if key is None else key(*args, **kwargs)
            current = store if direct else store()
            # A hit is one plain get (no factory closure, no get_or_set arguments); a miss
            # goes through get_or_set, which reads again under its single flight.
            found = await current.get(chosen, _MISSING)
            if found is not _MISSING:
                return found  # type: ignore[no-any-return]
            result: R = await current.get_or_set(
                chosen, lambda: fn(*args, **kwargs), ttl=ttl, tags=tag_map, lock=lock
            )
            return result

        async def invalidate(*args: P.args, **kwargs: P.kwargs) -> bool:
            removed: bool = await the_store().delete(key_for(*args, **kwargs))
            return removed

        async def invalidate_all() -> int:
            if not tag_map:
                raise InvalidArgumentError(
                    f"@cached {prefix}: invalidate_all needs tags= on the decorator"
                )
            current = the_store()
            return sum([await current.delete_by_tag(n, v) for n, v in tag_map.items()])

        wrapper.key_for = key_for  # type: ignore[attr-defined]
        wrapper.invalidate = invalidate  # type: ignore[attr-defined]
        wrapper.invalidate_all = invalidate_all  # type: ignore[attr-defined]
        return cast("CachedFunction[P, R]", wrapper)

    return decorate
