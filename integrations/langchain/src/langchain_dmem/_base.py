"""The LangChain ``BaseStore`` over dmem that both public stores share.

One instance holds up to two dmem stores on the same URL, each opened on first use:

* a :class:`dmem.SyncStore` (``dmem.open_sync``) for ``mget``/``mset``/``mdelete``/
  ``yield_keys``; it lives on dmem's own loop thread, so any thread may call them;
* a :class:`dmem.Store` opened on the event loop of the first ``a*`` call. An async dmem
  store is bound to the loop that opened it, so a call from another loop is refused
  (``NotSupportedError``) rather than handed a store that would fail in obscure ways.

Both see the same data: they are two connections to one backend (``memory://NAME`` stores
of one process share theirs by name).
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

import dmem
from langchain_core.stores import BaseStore

__all__ = ["DmemBaseStore"]

V = TypeVar("V")
_S = TypeVar("_S", bound="DmemBaseStore[Any]")

_TEXT = (str, bytes, bytearray)


class DmemBaseStore(BaseStore[str, V]):
    """What :class:`DmemByteStore` and :class:`DmemStore` share; see their docs."""

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str | None = None,
        middleware: Sequence[Any] = (),
        **options: Any,
    ) -> None:
        if url is not None and type(url) is not str:
            raise dmem.InvalidArgumentError(f"url must be a str or None, not {type(url).__name__}")
        if namespace is not None:
            _check_namespace(namespace)
        if isinstance(middleware, _TEXT):
            raise dmem.InvalidArgumentError("middleware must be a list, not a str")
        try:
            chain = tuple(middleware)
        except TypeError:
            raise dmem.InvalidArgumentError(
                f"middleware must be a list, not {type(middleware).__name__}"
            ) from None
        self._url = url
        self._namespace = namespace
        self._middleware = chain
        self._options = options
        # _guard orders the state changes (never held across I/O); _sync_guard is held while
        # the sync store opens, so that concurrent first calls open it once.
        self._guard = threading.Lock()
        self._sync_guard = threading.Lock()
        self._closed = False
        self._borrowed: dmem.Store | None = None
        self._sync: dmem.SyncStore | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._aopening: asyncio.Task[dmem.Store] | None = None
        # (loop, store) once the async store is open: the fast path of every async call.
        self._aready: tuple[asyncio.AbstractEventLoop, dmem.Store] | None = None

    @classmethod
    def from_store(cls: type[_S], store: dmem.Store) -> _S:
        """An instance over an open async ``store`` that its owner keeps and closes.

        Only the async methods work (on the loop ``store`` was opened on); the sync ones
        raise ``NotSupportedError``, since a sync caller would need a store of its own on
        dmem's loop thread: build the instance from a URL for that. ``close()``/``aclose()``
        leave ``store`` open.
        """
        if not isinstance(store, dmem.Store):
            raise dmem.InvalidArgumentError(
                f"from_store takes an open dmem.Store, not {type(store).__name__}"
            )
        made = cls()
        made._borrowed = store
        return made

    def __repr__(self) -> str:
        name = type(self).__name__
        if self._borrowed is not None:
            return f"<{name} over {self._borrowed!r}>"
        where = dmem.redact_url(self._url) if self._url else "dmem default URL"
        namespace = "" if self._namespace is None else f" namespace={self._namespace!r}"
        return f"<{name} {where}{namespace}>"

    # --- values: what each public store accepts and returns ---------------------------------
    # Whole batches, not a call per value: the adapter's cost per batch is what it adds to
    # dmem's (bench/bench_langchain.py). dmem itself checks every key and value it stores.
    def _check_values(self, batch: list[Any]) -> None:
        """Refuse a batch of pairs this store does not store (before any I/O)."""

    def _check_found(self, found: dict[str, Any]) -> None:
        """Refuse values read that this store would not have written."""

    # --- the two dmem stores ----------------------------------------------------------------
    def _open_options(self) -> dict[str, Any]:
        options = dict(self._options)
        if self._namespace is not None:
            options["namespace"] = self._namespace
        return options

    def _closed_error(self) -> dmem.NotInitializedError:
        return dmem.NotInitializedError(f"{type(self).__name__} is closed")

    def _sync_store(self) -> dmem.SyncStore:
        sync = self._sync
        if sync is not None and not self._closed:
            return sync
        with self._sync_guard:
            if self._closed:
                raise self._closed_error()
            if self._borrowed is not None:
                raise dmem.NotSupportedError(
                    f"{type(self).__name__}.from_store(...) serves the async methods only "
                    "(amget, amset, amdelete, ayield_keys); for the sync ones build it from "
                    "a URL"
                )
            if self._sync is None:
                self._sync = dmem.open_sync(
                    self._url, middleware=self._middleware, **self._open_options()
                )
            return self._sync

    async def _async_store(self) -> dmem.Store:
        loop = asyncio.get_running_loop()
        with self._guard:
            if self._closed:
                raise self._closed_error()
            if self._borrowed is not None:
                return self._borrowed
            if self._aloop is None:
                self._aloop = loop
                self._aopening = loop.create_task(self._open_async())
            elif self._aloop is not loop:
                raise dmem.NotSupportedError(
                    f"{type(self).__name__}'s async methods serve the event loop they were "
                    "first called on (an async dmem store is bound to its loop), and this is "
                    "another one: use one instance per event loop, and await aclose() on it"
                )
            opening = self._aopening
        assert opening is not None
        try:
            # Shielded: a caller cancelled while the store opens does not cancel the opening
            # that concurrent callers wait for too.
            store = await asyncio.shield(opening)
        except Exception:
            if opening.done():  # the opening failed: the next call tries again
                with self._guard:
                    if self._aopening is opening:
                        self._aloop = self._aopening = None
            raise
        with self._guard:
            if self._aopening is opening:  # not closed meanwhile
                self._aready = (loop, store)
        return store

    def _ready(self) -> dmem.Store | None:
        """The async store when it is open on the running loop, else None (then await
        :meth:`_async_store`, which opens it or says what is wrong)."""
        ready = self._aready
        if ready is not None and ready[0] is asyncio.get_running_loop():
            return ready[1]
        return self._borrowed if not self._closed else None

    async def _open_async(self) -> dmem.Store:
        return await dmem.open(self._url, middleware=self._middleware, **self._open_options())

    # --- lifecycle --------------------------------------------------------------------------
    def _take(self) -> tuple[dmem.SyncStore | None, Any, asyncio.Task[dmem.Store] | None]:
        """Mark closed and hand over what is open (once: None after the first close)."""
        with self._guard:
            self._closed = True
            loop, opening = self._aloop, self._aopening
            self._aloop = self._aopening = self._aready = None
        with self._sync_guard:
            sync, self._sync = self._sync, None
        return sync, loop, opening

    def close(self) -> None:
        """Close the dmem stores this instance opened; idempotent. Then every call raises
        ``NotInitializedError``. With the async side open on a loop running in this thread,
        use ``await aclose()`` (``NotSupportedError`` here: closing would block that loop).
        """
        with self._guard:
            if self._closed:
                return
            if self._aloop is not None and _running_loop() is self._aloop:
                raise dmem.NotSupportedError(
                    f"{type(self).__name__}.close() inside the event loop its async methods "
                    "use would block that loop: await aclose() instead"
                )
        sync, loop, opening = self._take()
        try:
            if sync is not None:
                sync.close()
        finally:
            if opening is not None:
                _close_elsewhere(loop, opening)

    async def aclose(self) -> None:
        """Close the dmem stores this instance opened; idempotent. Then every call raises
        ``NotInitializedError``."""
        if self._closed:
            return
        sync, loop, opening = self._take()
        try:
            if sync is not None:
                await asyncio.to_thread(sync.close)
        finally:
            if opening is not None:
                if loop is asyncio.get_running_loop():
                    await _finish(opening)
                elif loop.is_running():
                    await asyncio.wrap_future(
                        asyncio.run_coroutine_threadsafe(_finish(opening), loop)
                    )
                else:
                    _abandon(opening)

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self: _S) -> _S:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- arguments, checked before any I/O ---------------------------------------------------
    def _batch(self, pairs: Iterable[Any]) -> list[Any]:
        # dmem's set_many checks that each item is a (key, value) tuple, each key and value.
        batch = _listed(pairs, "mset", "(key, value) pairs")
        self._check_values(batch)
        return batch

    def _results(self, keys: list[str], found: dict[str, Any]) -> list[V | None]:
        self._check_found(found)
        get = found.get  # found holds the live keys only: a missing one reads as None
        return [get(key) for key in keys]

    # --- BaseStore: sync --------------------------------------------------------------------
    def mget(self, keys: Sequence[str]) -> list[V | None]:
        wanted = _listed(keys, "mget", "keys")
        return self._results(wanted, self._sync_store().get_many(wanted))

    def mset(self, key_value_pairs: Sequence[tuple[str, V]]) -> None:
        batch = self._batch(key_value_pairs)
        self._sync_store().set_many(batch)

    def mdelete(self, keys: Sequence[str]) -> None:
        doomed = _listed(keys, "mdelete", "keys")
        self._sync_store().delete_many(doomed)

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        # The prefix is checked now; the keys are read when the iteration starts.
        return self._yield_keys(_prefix_pattern(prefix))

    def _yield_keys(self, pattern: str) -> Generator[str, None, None]:
        yield from self._sync_store().keys(pattern)

    # --- BaseStore: async -------------------------------------------------------------------
    async def amget(self, keys: Sequence[str]) -> list[V | None]:
        wanted = _listed(keys, "amget", "keys")
        store = self._ready() or await self._async_store()
        return self._results(wanted, await store.get_many(wanted))

    async def amset(self, key_value_pairs: Sequence[tuple[str, V]]) -> None:
        batch = self._batch(key_value_pairs)
        store = self._ready() or await self._async_store()
        await store.set_many(batch)

    async def amdelete(self, keys: Sequence[str]) -> None:
        doomed = _listed(keys, "amdelete", "keys")
        store = self._ready() or await self._async_store()
        await store.delete_many(doomed)

    async def ayield_keys(self, *, prefix: str | None = None) -> AsyncIterator[str]:
        pattern = _prefix_pattern(prefix)
        store = self._ready() or await self._async_store()
        for key in await store.keys(pattern):
            yield key


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _listed(items: Iterable[Any], call: str, what: str) -> list[Any]:
    """``items`` as a list (read once), or InvalidArgumentError for a str or a non-sequence.

    A str is a sequence too, but ``mget("abc")`` reading keys "a", "b", "c" is never meant.
    """
    if type(items) is list:  # the usual case, used as it is: neither side changes it
        return items
    if isinstance(items, _TEXT):
        raise dmem.InvalidArgumentError(f"{call} takes a sequence of {what}, not a str")
    try:
        return list(items)
    except TypeError:
        raise dmem.InvalidArgumentError(
            f"{call} takes a sequence of {what}, not {type(items).__name__}"
        ) from None


def _prefix_pattern(prefix: object) -> str:
    """The dmem pattern of the keys starting with ``prefix``, its glob characters literal."""
    if prefix is None:
        return "*"
    if type(prefix) is not str:
        raise dmem.InvalidArgumentError(
            f"prefix must be a str or None, not {type(prefix).__name__}"
        )
    return dmem.escape_pattern(prefix) + "*"


def _check_namespace(namespace: object) -> None:
    # dmem.open checks it too, but only at the first call; this says so at construction.
    if type(namespace) is not str:
        raise dmem.InvalidArgumentError(
            f"namespace must be a str or None, not {type(namespace).__name__}"
        )
    if "\x00" in namespace:
        raise dmem.InvalidArgumentError("namespace must not contain NUL")
    try:
        size = len(namespace.encode("utf-8"))
    except UnicodeEncodeError:
        raise dmem.InvalidArgumentError("namespace must not contain lone surrogates") from None
    if size > dmem.MAX_NAMESPACE_BYTES:
        raise dmem.InvalidArgumentError(
            f"namespace is {size} bytes in UTF-8; at most {dmem.MAX_NAMESPACE_BYTES}"
        )


async def _finish(opening: asyncio.Task[dmem.Store]) -> None:
    """Close the store ``opening`` opens (on its loop); nothing when the opening failed."""
    try:
        store = await opening
    except Exception:  # noqa: BLE001 - its caller got the error; there is nothing to close
        return
    await store.aclose()


def _close_elsewhere(loop: asyncio.AbstractEventLoop, opening: asyncio.Task[dmem.Store]) -> None:
    """Close the async store from a thread where its loop is not running."""
    if loop.is_running():  # in another thread: run the close there and wait for it
        asyncio.run_coroutine_threadsafe(_finish(opening), loop).result()
    elif not loop.is_closed():
        loop.run_until_complete(_finish(opening))
    else:
        _abandon(opening)


def _abandon(opening: asyncio.Task[dmem.Store]) -> None:
    # Its loop is closed (or stopped and unreachable from here): no coroutine can run on it,
    # so the store cannot be closed. Said the way Python says it of an unclosed file.
    if opening.done() and not opening.cancelled() and opening.exception() is None:
        warnings.warn(
            f"{opening.result()!r} was opened on an event loop that can no longer run it and "
            "could not be closed: await aclose() before that loop ends",
            ResourceWarning,
            stacklevel=3,
        )
