"""The sync API: ``dmem.open_sync`` and the blocking twins of the async objects.

    with dmem.open_sync("sqlite:///app.db", namespace="app") as kv:
        kv.set("user:1", {"name": "Ada"}, ttl=60)
        kv.get("user:1")

Each sync object wraps its async twin, opened on dmem's background loop thread
(:mod:`dmem._loop_thread`), and runs each call there as one coroutine, blocking the calling
thread: the same arguments, results and errors, because the same code runs. Middleware and
plugins run unchanged. ``scan`` gives an ordinary iterator that fetches 256 entries per
hop. ``get_or_set`` takes a sync factory and runs it in a worker thread (``asyncio.to_thread``),
so a slow factory never stalls the loop that other threads' calls share; an async
factory runs on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import Any, TypeVar

from ._coordination import Lock
from ._health import HealthStatus
from ._loop_thread import LoopThread, current_generation, loop_thread
from ._store import Store
from .errors import NotInitializedError

__all__ = [
    "SyncLock",
    "SyncMemorySystem",
    "SyncStore",
    "SyncVectorStore",
    "open_sync",
    "open_vector_sync",
]

T = TypeVar("T")
S = TypeVar("S", bound="_OnLoop")

_SCAN_CHUNK = 256  # entries a sync scan fetches per hop to the loop thread, at most
# ... and about this many bytes of values (shallow sys.getsizeof: exact for str and bytes),
# so that a scan of large values still streams in constant memory (the scan.memory clause:
# 256 values of 4 KiB held at once broke it).
_SCAN_CHUNK_BYTES = 128 * 1024


class _OnLoop:
    """What the sync objects share: their loop thread, the fork check, and closing once
    (by ``close()``, a ``with`` block's end, or the exit hook for what is still open)."""

    __slots__ = ("__weakref__", "_closed", "_thread")

    def __init__(self, thread: LoopThread) -> None:
        self._thread = thread
        self._closed = False

    def _aclose(self) -> Coroutine[Any, Any, None]:
        """The async twin's ``aclose()``."""
        raise NotImplementedError

    def close(self) -> None:
        """Close it (and its share of the connection); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._run(self._aclose())

    def _close_at_exit(self) -> Coroutine[Any, Any, None]:
        self._closed = True
        return self._aclose()

    def __enter__(self: S) -> S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        thread = self._thread
        if thread.generation != current_generation():
            coro.close()
            raise NotInitializedError(
                "this store was opened before os.fork(), on the parent's event-loop thread; "
                "open it again in the child"
            )
        return thread.run(coro)


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


class SyncStore(_OnLoop):
    """A :class:`~dmem.Store` with blocking methods; see :func:`open_sync`.

    ``store`` is the async Store behind it. It lives on dmem's loop thread: use it only in
    coroutines given to :func:`dmem.run_sync`.
    """

    __slots__ = ("store",)

    def __init__(self, store: Store, thread: LoopThread) -> None:
        super().__init__(thread)
        self.store = store
        thread.register(self)

    def __repr__(self) -> str:
        return f"<dmem.SyncStore of {self.store!r}>"

    @property
    def namespace(self) -> str:
        return self.store.namespace

    @property
    def url(self) -> str | None:
        url: str | None = self.store.url
        return url

    # --- lifecycle -----------------------------------------------------------------------
    def _aclose(self) -> Coroutine[Any, Any, None]:
        return self.store.aclose()

    def with_namespace(self, namespace: str) -> SyncStore:
        """A store on ``namespace`` over this store's connection (close it too)."""
        return SyncStore(self._run(_awaited(self.store.with_namespace(namespace))), self._thread)

    # --- reads and writes ----------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        return self._run(self.store.get(key, default))

    def get_with_ttl(self, key: str) -> tuple[Any, float | None] | None:
        return self._run(self.store.get_with_ttl(key))

    def exists(self, key: str) -> bool:
        return self._run(self.store.exists(key))

    def set(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        if_not_exists: bool = False,
        tags: Mapping[str, str] | None = None,
    ) -> bool:
        return self._run(
            self.store.set(key, value, ttl=ttl, if_not_exists=if_not_exists, tags=tags)
        )

    def delete(self, key: str) -> bool:
        return self._run(self.store.delete(key))

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return self._run(self.store.get_many(keys))

    def set_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
        if_not_exists: bool = False,
        tags: Mapping[str, str] | None = None,
    ) -> int:
        return self._run(
            self.store.set_many(items, ttl=ttl, if_not_exists=if_not_exists, tags=tags)
        )

    def delete_many(self, keys: Iterable[str]) -> int:
        return self._run(self.store.delete_many(keys))

    def scan(self, pattern: str = "*") -> Iterator[tuple[str, Any]]:
        """``(key, value)`` of the live keys matching ``pattern``, fetched in chunks.

        Errors (a malformed pattern, a closed store) are raised by the first ``next()``, as
        the async ``scan`` raises them on its first step. Leave the loop early and the scan
        is closed on the loop thread.
        """
        return self._scan(self.store.scan(pattern))

    def _scan(self, entries: AsyncIterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
        done = False
        try:
            while not done:
                chunk, done = self._run(_take(entries, _SCAN_CHUNK))
                yield from chunk
        finally:
            if not done:
                aclose = getattr(entries, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        self._run(aclose())

    def keys(self, pattern: str = "*") -> list[str]:
        return self._run(self.store.keys(pattern))

    def count(self, pattern: str = "*") -> int:
        return self._run(self.store.count(pattern))

    def clear(self) -> int:
        return self._run(self.store.clear())

    def find_by_tag(self, name: str, value: str) -> list[str]:
        return self._run(self.store.find_by_tag(name, value))

    def get_tags(self, key: str) -> dict[str, str]:
        return self._run(self.store.get_tags(key))

    def expire(self, key: str, ttl: float) -> bool:
        return self._run(self.store.expire(key, ttl))

    def persist(self, key: str) -> bool:
        return self._run(self.store.persist(key))

    def ttl(self, key: str) -> float | None:
        return self._run(self.store.ttl(key))

    def health(self) -> HealthStatus:
        return self._run(self.store.health())

    # --- contract v1.1 ---------------------------------------------------------------------
    def incr(self, key: str, delta: int = 1, *, ttl: float | None = None) -> int:
        return self._run(self.store.incr(key, delta, ttl=ttl))

    def decr(self, key: str, delta: int = 1, *, ttl: float | None = None) -> int:
        return self._run(self.store.decr(key, delta, ttl=ttl))

    def compare_and_set(
        self,
        key: str,
        expected: Any,
        value: Any,
        *,
        ttl: float | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> bool:
        return self._run(self.store.compare_and_set(key, expected, value, ttl=ttl, tags=tags))

    def compare_and_delete(self, key: str, expected: Any) -> bool:
        return self._run(self.store.compare_and_delete(key, expected))

    def delete_by_tag(self, name: str, value: str) -> int:
        return self._run(self.store.delete_by_tag(name, value))

    def get_or_set(
        self,
        key: str,
        factory: Callable[[], Any],
        *,
        ttl: float | None = None,
        tags: Mapping[str, str] | None = None,
        lock: bool = False,
    ) -> Any:
        """As :meth:`Store.get_or_set`; a sync ``factory`` runs in a worker thread."""
        return self._run(
            self.store.get_or_set(key, _off_loop(factory), ttl=ttl, tags=tags, lock=lock)
        )

    def lock(self, name: str, *, ttl: float, wait: float | None = None) -> SyncLock:
        """A lock on key ``name`` (see :class:`dmem.Lock`); use it with ``with``."""
        return SyncLock(self.store.lock(name, ttl=ttl, wait=wait), self)


def _off_loop(factory: Callable[[], Any]) -> Callable[[], Any]:
    if not callable(factory) or inspect.iscoroutinefunction(factory):
        return factory  # Store.get_or_set checks it, and runs an async factory itself

    async def in_worker_thread() -> Any:
        result = await asyncio.to_thread(factory)
        if inspect.isawaitable(result):  # a sync callable that returned an awaitable
            return await result
        return result

    return in_worker_thread


async def _take(
    entries: AsyncIterator[tuple[str, Any]], limit: int
) -> tuple[list[tuple[str, Any]], bool]:
    chunk: list[tuple[str, Any]] = []
    size = 0
    try:
        while len(chunk) < limit and size < _SCAN_CHUNK_BYTES:
            entry = await entries.__anext__()
            chunk.append(entry)
            size += sys.getsizeof(entry[1])
    except StopAsyncIteration:
        return chunk, True
    return chunk, False


class SyncLock:
    """:class:`dmem.Lock` with blocking methods; ``with kv.lock("job", ttl=10):``."""

    __slots__ = ("_lock", "_owner")

    def __init__(self, lock: Lock, owner: SyncStore) -> None:
        self._lock = lock
        self._owner = owner

    def __repr__(self) -> str:
        return repr(self._lock).replace("<dmem.Lock", "<dmem.SyncLock", 1)

    @property
    def name(self) -> str:
        return self._lock.name

    def acquire(self) -> None:
        self._owner._run(self._lock.acquire())

    def release(self) -> bool:
        return self._owner._run(self._lock.release())

    def extend(self, ttl: float | None = None) -> bool:
        return self._owner._run(self._lock.extend(ttl))

    def owned(self) -> bool:
        return self._owner._run(self._lock.owned())

    def __enter__(self) -> SyncLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._owner._run(self._lock.__aexit__(exc_type, exc, tb))


def open_sync(
    url: str | None = None, /, *, middleware: Sequence[Any] = (), **options: Any
) -> SyncStore:
    """Open a :class:`SyncStore`: ``dmem.open``'s arguments, blocking, on dmem's loop thread.

    ``with dmem.open_sync("redis://localhost/0", namespace="app") as kv: kv.get("k")``.
    Safe to call from many threads; each call blocks only its own thread.
    """
    from ._open import open as open_async

    thread = loop_thread()
    store = thread.run(_awaited(open_async(url, middleware=middleware, **options)))
    return SyncStore(store, thread)


class SyncVectorStore(_OnLoop):
    """A :class:`~dmem.VectorStore` with blocking methods; see :func:`open_vector_sync`."""

    __slots__ = ("store",)

    def __init__(self, store: Any, thread: LoopThread) -> None:
        super().__init__(thread)
        self.store = store
        thread.register(self)

    def __repr__(self) -> str:
        return f"<dmem.SyncVectorStore of {self.store!r}>"

    @property
    def namespace(self) -> str:
        namespace: str = self.store.namespace
        return namespace

    def _aclose(self) -> Coroutine[Any, Any, None]:
        closing: Coroutine[Any, Any, None] = self.store.aclose()
        return closing

    def upsert(self, records: Iterable[Any]) -> int:
        written: int = self._run(self.store.upsert(records))
        return written

    def query(
        self, query: str | Sequence[float], k: int = 10, where: dict[str, Any] | None = None
    ) -> list[Any]:
        matches: list[Any] = self._run(self.store.query(query, k, where))
        return matches

    def get(self, ids: Iterable[str]) -> list[Any]:
        records: list[Any] = self._run(self.store.get(ids))
        return records

    def delete(self, ids: Iterable[str]) -> int:
        removed: int = self._run(self.store.delete(ids))
        return removed

    def count(self) -> int:
        counted: int = self._run(self.store.count())
        return counted

    def clear(self) -> int:
        removed: int = self._run(self.store.clear())
        return removed

    def health(self) -> HealthStatus:
        status: HealthStatus = self._run(self.store.health())
        return status


def open_vector_sync(url: str, /, *, embedder: Any = None, **options: Any) -> SyncVectorStore:
    """Open a :class:`SyncVectorStore`: ``dmem.open_vector``'s arguments, blocking."""
    from .vector import open_vector

    thread = loop_thread()
    store = thread.run(_awaited(open_vector(url, embedder=embedder, **options)))
    return SyncVectorStore(store, thread)


class SyncMemorySystem(_OnLoop):
    """:class:`~dmem.MemorySystem` with blocking methods (same constructor arguments).

    ``with dmem.SyncMemorySystem(kv="sqlite:///m.db", vector="memory://") as memory:``
    initializes on entry; ``memory.kv`` is a :class:`SyncStore`, ``memory.vector`` a
    :class:`SyncVectorStore`. Closing the system closes both.
    """

    __slots__ = ("_kv", "_vector", "system")

    def __init__(self, **arguments: Any) -> None:
        from ._system import MemorySystem

        thread = loop_thread()
        super().__init__(thread)

        async def build() -> MemorySystem:
            return MemorySystem(**arguments)

        self.system = thread.run(build())
        self._kv: SyncStore | None = None
        self._vector: SyncVectorStore | None = None
        thread.register(self)

    def __repr__(self) -> str:
        return f"<dmem.SyncMemorySystem of {self.system!r}>"

    def initialize(self) -> None:
        self._run(self.system.initialize())

    @property
    def kv(self) -> SyncStore:
        if self._kv is None:
            self._kv = SyncStore(self.system.kv, self._thread)
        return self._kv

    @property
    def vector(self) -> SyncVectorStore:
        if self._vector is None:
            self._vector = SyncVectorStore(self.system.vector, self._thread)
        return self._vector

    def provider(self, kind: str) -> Any:
        return self.system.provider(kind)

    def health(self) -> dict[str, HealthStatus]:
        return self._run(self.system.health())

    def _aclose(self) -> Coroutine[Any, Any, None]:
        for twin in (self._kv, self._vector):
            if twin is not None:
                twin._closed = True  # closed with the system, not again at exit
        return self.system.aclose()

    def __enter__(self) -> SyncMemorySystem:
        self.initialize()
        return self
