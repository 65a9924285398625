"""An async ``dmem.Store`` over a :class:`dmem.SyncStore`, to run the conformance suite through
the blocking API.

Every public method of :class:`SyncBackedStore` runs the matching ``SyncStore`` method in a
worker thread of :data:`WORKERS` (``loop.run_in_executor``), so each suite call really takes
the path a sync user's call takes: the suite's loop -> a worker thread (the "user" thread,
blocked) -> ``SyncStore`` -> dmem's loop thread and back. 64 workers because suite clauses
run 50 calls at once. What is not a Store method gets the same treatment:

- ``store.provider`` is a proxy: the suite calls provider coroutines (``footprint``,
  ``get_entry``) and reads attributes (``max_value_bytes``); its coroutine methods run on
  dmem's loop thread (where the provider's connections live) through ``SyncStore._run``.
- ``lock()`` wraps a :class:`dmem.SyncLock` (its methods hop like the store's).
- ``get_or_set`` factories are the suite's own async functions, bound to its loop: they are
  wrapped in a sync callable that runs them back on the suite's loop and waits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import dmem
from dmem import InvalidationChannel
from dmem._derive import DerivedStore
from dmem._health import HealthStatus
from dmem_conformance import StoreFactory
from dmem_conformance._factory import secrets_of

__all__ = ["WORKERS", "SyncBackedStore", "sync_factory"]

T = TypeVar("T")

# The blocked "user" threads. Shared by every adapter of the process; threads start lazily.
WORKERS = concurrent.futures.ThreadPoolExecutor(64, thread_name_prefix="sync-user")

_END: Any = object()


async def _hop(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` in a worker thread; the caller's loop goes on meanwhile."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(WORKERS, functools.partial(function, *args, **kwargs))


class _ProviderProxy:
    """``store.provider`` for the suite: attributes as they are, coroutines on dmem's loop.

    A coroutine's result that has coroutine methods of its own (the channel
    ``open_invalidation`` returns) is proxied the same way: its connection lives on dmem's
    loop too.
    """

    def __init__(self, sync: dmem.SyncStore, target: Any = None) -> None:
        self._sync = sync
        self._target = sync.store.provider if target is None else target

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._target, name)
        if not callable(found):
            return found
        sync = self._sync

        async def on_dmem_loop(*args: Any, **kwargs: Any) -> Any:
            def call() -> Any:
                async def run() -> Any:
                    result = found(*args, **kwargs)
                    return await result if inspect.isawaitable(result) else result

                return sync._run(run())

            result = await _hop(call)
            if isinstance(result, InvalidationChannel):
                return _ChannelProxy(sync, result)
            return _ProviderProxy(sync, result) if _has_coroutines(result) else result

        return on_dmem_loop

    def __repr__(self) -> str:
        return f"<proxy of {self._target!r}>"


class _ChannelProxy(_ProviderProxy):
    """An invalidation channel's proxy, with the protocol's members spelled out: from Python
    3.12, ``isinstance`` against a runtime-checkable protocol looks members up statically,
    and does not see what ``__getattr__`` gives."""

    @property
    def mode(self) -> str:
        channel: Any = self._target
        mode: str = channel.mode
        return mode

    @property
    def bound(self) -> float | None:
        channel: Any = self._target
        bound: float | None = channel.bound
        return bound

    @property
    def up(self) -> bool:
        channel: Any = self._target
        up: bool = channel.up
        return up

    async def close(self) -> None:
        await self.__getattr__("close")()


def _has_coroutines(value: object) -> bool:
    kind = type(value)
    return any(
        inspect.iscoroutinefunction(getattr(kind, name, None))
        for name in dir(kind)
        if not name.startswith("__")
    )


class _LockOverSync(dmem.Lock):
    """:class:`dmem.Lock`'s async face over a :class:`dmem.SyncLock`."""

    __slots__ = ("_sync_lock",)

    def __init__(self, sync_lock: dmem.SyncLock, store: SyncBackedStore, ttl: float) -> None:
        super().__init__(store, sync_lock.name, ttl=ttl)
        self._sync_lock = sync_lock

    async def acquire(self) -> None:
        await _hop(self._sync_lock.acquire)

    async def release(self) -> bool:
        return await _hop(self._sync_lock.release)

    async def extend(self, ttl: float | None = None) -> bool:
        return await _hop(self._sync_lock.extend, ttl)

    async def owned(self) -> bool:
        return await _hop(self._sync_lock.owned)

    async def __aenter__(self) -> _LockOverSync:
        await _hop(self._sync_lock.__enter__)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await _hop(self._sync_lock.__exit__, exc_type, exc, tb)


class _DerivedOverSync(DerivedStore):
    """``with_namespace``'s awaitable: ``SyncStore.with_namespace`` in a worker thread."""

    __slots__ = ()

    async def _open(self) -> dmem.Store:
        parent = self._parent
        assert isinstance(parent, SyncBackedStore)
        return SyncBackedStore(await _hop(parent.sync.with_namespace, self._namespace))


def _on_caller_loop(factory: Callable[[], Any], loop: asyncio.AbstractEventLoop) -> Any:
    """A sync factory that runs the suite's ``factory`` on the suite's loop and waits."""
    if not callable(factory):
        return factory  # let get_or_set refuse it, before any I/O

    def blocking() -> Any:
        async def call() -> Any:
            value = factory()
            return await value if inspect.isawaitable(value) else value

        return asyncio.run_coroutine_threadsafe(call(), loop).result()

    return blocking


class SyncBackedStore(dmem.Store):
    """A :class:`dmem.Store` whose every call goes through ``sync`` in a worker thread.

    ``Store.__init__`` is not run: this store has no chain of its own (the one behind
    ``sync`` does the work), and every method that would use one is overridden.
    """

    __slots__ = ("_proxy", "sync")

    def __init__(self, sync: dmem.SyncStore) -> None:
        self.sync = sync
        self._proxy = _ProviderProxy(sync)
        self.middleware = sync.store.middleware
        self.url = sync.url

    def __repr__(self) -> str:
        return f"<SyncBackedStore over {self.sync!r}>"

    @property
    def provider(self) -> Any:
        return self._proxy

    @property
    def namespace(self) -> str:
        return self.sync.namespace

    # --- lifecycle -------------------------------------------------------------------------
    async def initialize(self) -> None:
        # SyncStore has no initialize (open_sync gives an open one); the async Store's
        # initialize is what says "closed" after close, so run it on dmem's loop.
        sync = self.sync
        await _hop(lambda: sync._run(sync.store.initialize()))

    async def aclose(self) -> None:
        await _hop(self.sync.close)

    def with_namespace(self, namespace: str) -> DerivedStore:
        return _DerivedOverSync(self, namespace)

    # --- reads and writes ------------------------------------------------------------------
    async def get(self, key: str, default: Any = None) -> Any:
        return await _hop(self.sync.get, key, default)

    async def get_with_ttl(self, key: str) -> tuple[Any, float | None] | None:
        return await _hop(self.sync.get_with_ttl, key)

    async def exists(self, key: str) -> bool:
        return await _hop(self.sync.exists, key)

    async def set(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        if_not_exists: bool = False,
        tags: Mapping[str, str] | None = None,
    ) -> bool:
        return await _hop(
            self.sync.set, key, value, ttl=ttl, if_not_exists=if_not_exists, tags=tags
        )

    async def delete(self, key: str) -> bool:
        return await _hop(self.sync.delete, key)

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return await _hop(self.sync.get_many, keys)

    async def set_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
        if_not_exists: bool = False,
        tags: Mapping[str, str] | None = None,
    ) -> int:
        return await _hop(
            self.sync.set_many, items, ttl=ttl, if_not_exists=if_not_exists, tags=tags
        )

    async def delete_many(self, keys: Iterable[str]) -> int:
        return await _hop(self.sync.delete_many, keys)

    async def scan(self, pattern: str = "*") -> AsyncIterator[tuple[str, Any]]:
        # The sync iterator is pulled one entry per hop (it fetches in chunks itself), and
        # closed in a worker when the async iteration ends early.
        entries = self.sync.scan(pattern)
        assert isinstance(entries, Generator)
        try:
            while True:
                item = await _hop(next, entries, _END)
                if item is _END:
                    return
                yield item
        finally:
            await _hop(entries.close)

    async def keys(self, pattern: str = "*") -> list[str]:
        return await _hop(self.sync.keys, pattern)

    async def count(self, pattern: str = "*") -> int:
        return await _hop(self.sync.count, pattern)

    async def clear(self) -> int:
        return await _hop(self.sync.clear)

    async def find_by_tag(self, name: str, value: str) -> list[str]:
        return await _hop(self.sync.find_by_tag, name, value)

    async def get_tags(self, key: str) -> dict[str, str]:
        return await _hop(self.sync.get_tags, key)

    async def expire(self, key: str, ttl: float) -> bool:
        return await _hop(self.sync.expire, key, ttl)

    async def persist(self, key: str) -> bool:
        return await _hop(self.sync.persist, key)

    async def ttl(self, key: str) -> float | None:
        return await _hop(self.sync.ttl, key)

    async def health(self) -> HealthStatus:
        return await _hop(self.sync.health)

    # --- contract v1.1 -----------------------------------------------------------------------
    async def incr(self, key: str, delta: int = 1, *, ttl: float | None = None) -> int:
        return await _hop(self.sync.incr, key, delta, ttl=ttl)

    async def decr(self, key: str, delta: int = 1, *, ttl: float | None = None) -> int:
        return await _hop(self.sync.decr, key, delta, ttl=ttl)

    async def compare_and_set(
        self,
        key: str,
        expected: Any,
        value: Any,
        *,
        ttl: float | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> bool:
        return await _hop(self.sync.compare_and_set, key, expected, value, ttl=ttl, tags=tags)

    async def compare_and_delete(self, key: str, expected: Any) -> bool:
        return await _hop(self.sync.compare_and_delete, key, expected)

    async def delete_by_tag(self, name: str, value: str) -> int:
        return await _hop(self.sync.delete_by_tag, name, value)

    async def get_or_set(
        self,
        key: str,
        factory: Callable[[], Any],
        *,
        ttl: float | None = None,
        tags: Mapping[str, str] | None = None,
        lock: bool = False,
    ) -> Any:
        blocking = _on_caller_loop(factory, asyncio.get_running_loop())
        return await _hop(self.sync.get_or_set, key, blocking, ttl=ttl, tags=tags, lock=lock)

    def lock(self, name: str, *, ttl: float, wait: float | None = None) -> dmem.Lock:
        return _LockOverSync(self.sync.lock(name, ttl=ttl, wait=wait), self, ttl)


class _SyncFactory:
    """A conformance ``StoreFactory``: ``dmem.open_sync`` in a worker, wrapped for the suite.

    Like ``dmem_conformance.url_factory``, every other store gets ``share_connection=False``
    (unless the URL or options choose), so the multi-connection clauses race over
    independent connections.
    """

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self.url = url
        self.options = options
        self.secrets = secrets_of(url, options)
        chosen = "share_connection" in options or any(
            name == "share_connection" for name, _ in parse_qsl(url.partition("?")[2])
        )
        self._own = None if chosen else {**options, "share_connection": False}
        self.calls = 0

    async def __call__(self, namespace: str, *, middleware: Sequence[Any] = ()) -> dmem.Store:
        self.calls += 1
        options = self.options if self._own is None or self.calls % 2 else self._own
        sync = await _hop(
            dmem.open_sync, self.url, namespace=namespace, middleware=middleware, **options
        )
        return SyncBackedStore(sync)

    def __repr__(self) -> str:
        return f"sync_factory({dmem.redact_url(self.url)!r})"


def sync_factory(url: str, **options: Any) -> StoreFactory:
    """A ``StoreFactory`` of :class:`SyncBackedStore` over ``dmem.open_sync(url, ...)``."""
    return _SyncFactory(url, options)
