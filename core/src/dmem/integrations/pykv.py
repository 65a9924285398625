"""A py-key-value store over dmem: :class:`DmemStore`, for FastMCP and other py-key-value users.

``pip install 'dmem[pykv]'``, then::

    from dmem.integrations.pykv import DmemStore

    store = DmemStore("redis://localhost:6379/0")  # any dmem URL: sqlite, postgresql, memory...
    await store.put(key="k", value={"a": 1}, collection="users", ttl=60)

Each py-key-value *collection* is a dmem *namespace* (``namespace_prefix + collection``; see
:func:`namespace_of` for names over dmem's limit) on the one backend the URL names, so what the
adapter writes is an ordinary dmem store's data: the CLI (``dmem keys URL --namespace users``)
and :meth:`DmemStore.collection_store` see it, with dmem's tags, expiry calls and atomic
``if_not_exists``. Values are stored as they are (a dict of JSON values, no envelope); expiry
is dmem's own.

How py-key-value's interface maps (docs/integrations/pykv.md has the whole story):

- ``get`` / ``get_many``: ``Store.get`` / ``get_many`` (the value only; no ttl read).
- ``ttl`` / ``ttl_many``: ``Store.get_with_ttl`` (the value and the time left, one read).
- ``put`` / ``put_many``: ``Store.set`` / ``set_many``, the ttl in seconds.
- ``delete`` / ``delete_many``: ``Store.delete`` / ``delete_many``.
- ``keys(collection, limit=...)``: ``Store.keys()``, unordered.
- ``destroy_collection(collection)``: ``Store.clear()`` of that namespace.
- ``put_if_absent`` (newer py-key-value's protocol, offered here already): ``Store.set(...,
  if_not_exists=True)``, atomic across processes.

Not offered: ``collections()`` and ``destroy()`` (dmem keeps no list of namespaces, so neither
could be honest), and py-key-value's key/collection sanitization strategies.

dmem is stricter than py-key-value's own stores in a few places, and says so with
py-key-value's errors: a key over 1024 UTF-8 bytes, empty, or holding NUL is
:class:`~key_value.aio.errors.InvalidKeyError`; an int outside signed 64 bits, NaN or an
infinity, a non-str dict key, or a type JSON has not is
:class:`~key_value.aio.errors.SerializationError`; a ttl that is not finite, ``<= 0`` or over ten
years is :class:`~key_value.aio.errors.InvalidTTLError`; a collection dmem cannot take as a
namespace (NUL, lone surrogates) is :class:`~key_value.aio.errors.InvalidKeyError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, SupportsFloat

from .._health import redact_url
from .._open import open as open_store
from .._store import Store
from .._validation import MAX_NAMESPACE_BYTES, MAX_TTL_SECONDS, check_namespace
from ..errors import (
    CorruptValueError,
    DmemError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidValueError,
    NotSupportedError,
    ProviderError,
    ProviderUnavailableError,
)

try:
    from key_value.aio import errors as kv_errors
    from key_value.aio.stores.base import (
        BaseContextManagerStore,
        BaseDestroyCollectionStore,
        BaseEnumerateKeysStore,
        ManagedEntry,
    )
except ImportError as exc:  # pragma: no cover - the extra is installed wherever tests run
    raise ImportError(
        f"dmem.integrations.pykv needs py-key-value-aio ({exc}): pip install 'dmem[pykv]'"
    ) from exc

__all__ = ["DmemStore", "namespace_of"]

_MISSING = object()
_SHORTEST_TTL = 0.001  # dmem's resolution: a ttl is whole milliseconds, rounded up
_LONG_MARK = "#sha256:"  # in the namespace of a collection too long to be one whole


class DmemStore(BaseEnumerateKeysStore, BaseDestroyCollectionStore, BaseContextManagerStore):
    """A py-key-value ``AsyncKeyValue`` store whose collections are dmem namespaces.

    ``url`` is any dmem URL (``None``: ``DMEM_URL``, else the embedded default, as
    ``dmem.open()``); ``namespace_prefix`` goes before every collection's name to make its
    namespace (so one backend can hold several applications' collections apart);
    ``middleware`` and ``**options`` are passed to ``dmem.open``.
    ``default_collection`` and ``seed`` are py-key-value's own.

    Use it with ``async with`` or call :meth:`close`: it closes every dmem store it opened.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace_prefix: str = "",
        middleware: Sequence[Any] = (),
        default_collection: str | None = None,
        seed: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
        **options: Any,
    ) -> None:
        if url is not None and type(url) is not str:
            raise InvalidArgumentError(f"url must be a str or None, not {type(url).__name__}")
        check_namespace(namespace_prefix, "namespace_prefix")
        if "namespace" in options:
            raise InvalidArgumentError(
                "DmemStore takes no 'namespace': each collection is one (namespace_prefix + "
                "collection name); use namespace_prefix"
            )
        self._url = url
        self._namespace_prefix = namespace_prefix
        self._middleware = tuple(middleware)
        self._options = options
        self._stores: dict[str, Store] = {}
        self._opening: asyncio.Lock | None = None
        self._url_works = False  # a store was opened: the URL and options are good
        self._shares_connection = True  # until the provider says it cannot
        super().__init__(default_collection=default_collection, seed=seed, stable_api=True)

    def __repr__(self) -> str:
        where = redact_url(self._url) if self._url else "dmem default URL"
        return f"<DmemStore {where} namespace_prefix={self._namespace_prefix!r}>"

    # --- the dmem stores behind the collections ---------------------------------------------
    async def _open_namespace(self, namespace: str) -> Store:
        """The one place a collection's dmem store is made.

        Over the connection of a store already open (``Store.with_namespace``: no new
        connection, pool or thread), where the backend's provider can share it; else a
        ``dmem.open`` of its own.
        """
        base = next(iter(self._stores.values()), None)
        if base is not None and self._shares_connection:
            try:
                return await base.with_namespace(namespace)
            except NotSupportedError:
                self._shares_connection = False
        return await open_store(
            self._url, middleware=self._middleware, namespace=namespace, **self._options
        )

    async def _store(self, collection: str) -> Store:
        """The dmem store of ``collection``, opened on first use (again after :meth:`close`)."""
        namespace = namespace_of(self._namespace_prefix, collection)
        store = self._stores.get(namespace)
        if store is not None:
            return store
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            store = self._stores.get(namespace)
            if store is not None:
                return store
            try:
                store = await self._open_namespace(namespace)
            except InvalidArgumentError as exc:
                if not self._url_works:  # the URL or an option, not the collection: setup()
                    raise
                raise kv_errors.InvalidKeyError(
                    f"collection {collection!r} cannot be a dmem namespace: {exc}"
                ) from exc
            self._url_works = True
            if not self._stores:  # the first since the adapter opened or closed
                await self._ensure_exit_stack_entered()
                self._exit_stack.push_async_callback(self._close_stores)
            self._stores[namespace] = store
            return store

    async def _close_stores(self) -> None:
        stores = list(self._stores.values())
        self._stores.clear()
        failure: BaseException | None = None
        for store in stores:
            try:
                await store.aclose()
            except Exception as exc:  # noqa: BLE001 - close the others, then raise the first
                failure = failure or exc
        if failure is not None:
            raise failure

    async def _ready(self, collection: str | None) -> Store:
        collection = collection or self.default_collection
        await self.setup_collection(collection=collection)
        return await self._store(collection)

    async def collection_store(self, collection: str | None = None) -> Store:
        """The dmem :class:`~dmem.Store` behind ``collection`` (default: the default one).

        It sees what this adapter writes and offers everything dmem does on it: tags and
        ``find_by_tag``, ``expire``/``persist``, ``count``, ``scan``. It stays open until the
        adapter closes; do not close it yourself.
        """
        return await self._ready(collection)

    async def _setup(self) -> None:
        # Open the default collection's store now: a bad URL, a bad option or an unreachable
        # backend fails setup (StoreSetupError) instead of the first call on some collection.
        await self._store(self.default_collection)

    # --- reads ---------------------------------------------------------------------------------
    async def get(self, key: str, *, collection: str | None = None) -> dict[str, Any] | None:
        store = await self._ready(collection)
        with _translated():
            value = await store.get(key, _MISSING)
        return None if value is _MISSING else _as_dict(value)

    async def get_many(
        self, keys: Sequence[str], *, collection: str | None = None
    ) -> list[dict[str, Any] | None]:
        store = await self._ready(collection)
        with _translated():
            found = await store.get_many(keys)
        return [_as_dict(found[key]) if key in found else None for key in keys]

    async def _get_managed_entry(self, *, collection: str, key: str) -> ManagedEntry | None:
        store = await self._store(collection)
        with _translated():
            found = await store.get_with_ttl(key)
        if found is None:
            return None
        value, left = found
        expires_at = None if left is None else _now() + timedelta(seconds=left)
        return ManagedEntry(value=_as_dict(value), expires_at=expires_at)

    async def _get_collection_keys(self, *, collection: str, limit: int | None = None) -> list[str]:
        store = await self._store(collection)
        with _translated():
            keys = await store.keys()
        return keys if limit is None else keys[: max(limit, 0)]

    # --- writes --------------------------------------------------------------------------------
    async def put(
        self,
        key: str,
        value: Mapping[str, Any],
        *,
        collection: str | None = None,
        ttl: SupportsFloat | None = None,
    ) -> None:
        _check_ttl(ttl)
        await super().put(key=key, value=value, collection=collection, ttl=ttl)

    async def put_many(
        self,
        keys: Sequence[str],
        values: Sequence[Mapping[str, Any]],
        *,
        collection: str | None = None,
        ttl: SupportsFloat | None = None,
    ) -> None:
        _check_ttl(ttl)
        await super().put_many(keys=keys, values=values, collection=collection, ttl=ttl)

    async def put_if_absent(
        self,
        key: str,
        value: Mapping[str, Any],
        *,
        collection: str | None = None,
        ttl: SupportsFloat | None = None,
    ) -> bool:
        """Write only if ``key`` is not live; ``True`` if written.

        Atomic on every dmem backend, across processes: of many concurrent writers of one
        key exactly one gets ``True``, and with ``ttl`` the value and its expiry land together.
        """
        seconds = _check_ttl(ttl)
        store = await self._ready(collection)
        with _translated():
            return await store.set(key, _as_value(value), ttl=seconds, if_not_exists=True)

    async def _put_managed_entry(
        self, *, collection: str, key: str, managed_entry: ManagedEntry
    ) -> None:
        store = await self._store(collection)
        value = _as_value(managed_entry.value)
        with _translated():
            await store.set(key, value, ttl=_seconds_until(managed_entry.expires_at))

    async def _put_managed_entries(
        self,
        *,
        collection: str,
        keys: Sequence[str],
        managed_entries: Sequence[ManagedEntry],
        ttl: float | None,
        created_at: datetime,
        expires_at: datetime | None,
    ) -> None:
        store = await self._store(collection)
        values = [_as_value(entry.value) for entry in managed_entries]
        items = list(zip(keys, values, strict=True))
        with _translated():
            await store.set_many(items, ttl=_seconds_until(expires_at))

    async def _delete_managed_entry(self, *, key: str, collection: str) -> bool:
        store = await self._store(collection)
        with _translated():
            return await store.delete(key)

    async def _delete_managed_entries(self, *, keys: Sequence[str], collection: str) -> int:
        store = await self._store(collection)
        with _translated():
            return await store.delete_many(keys)

    async def _delete_collection(self, *, collection: str) -> bool:
        store = await self._store(collection or self.default_collection)
        with _translated():
            return await store.clear() > 0


def namespace_of(prefix: str, collection: str) -> str:
    """The dmem namespace of ``collection``: ``prefix + collection``.

    Unless that is longer than dmem allows (``MAX_NAMESPACE_BYTES`` of UTF-8): then the
    prefix, the collection's first bytes, ``#sha256:`` and the SHA-256 of the whole collection
    name, within the limit (py-key-value cannot list collections, so its users never see
    this form). A name dmem refuses for another reason (NUL, lone surrogates) keeps it, for
    dmem's own error.
    """
    name = prefix + collection
    try:
        if len(name.encode("utf-8")) <= MAX_NAMESPACE_BYTES:
            return name
    except UnicodeEncodeError:
        return name
    digest = hashlib.sha256(collection.encode("utf-8")).hexdigest()
    room = MAX_NAMESPACE_BYTES - len(prefix.encode("utf-8")) - len(_LONG_MARK) - len(digest)
    if room < 0:  # the prefix leaves no room: dmem says so
        return name
    head = collection.encode("utf-8")[:room].decode("utf-8", "ignore")
    return f"{prefix}{head}{_LONG_MARK}{digest}"


def _now() -> datetime:
    return datetime.now(tz=timezone.utc)


def _seconds_until(expires_at: datetime | None) -> float | None:
    """The ttl to give dmem for an entry expiring at ``expires_at`` (at least 1 ms)."""
    if expires_at is None:
        return None
    return max((expires_at - _now()).total_seconds(), _SHORTEST_TTL)


def _check_ttl(ttl: object) -> float | None:
    """py-key-value's ttl rule plus dmem's: a finite number of seconds, > 0, <= ten years."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, SupportsFloat):  # "60" too: no __float__
        raise kv_errors.InvalidTTLError(ttl=ttl, extra_info={"type": type(ttl).__name__})
    try:
        seconds = float(ttl)
    except (TypeError, ValueError, OverflowError):
        raise kv_errors.InvalidTTLError(ttl=ttl, extra_info={"type": type(ttl).__name__}) from None
    if not math.isfinite(seconds) or seconds <= 0 or seconds > MAX_TTL_SECONDS:
        raise kv_errors.InvalidTTLError(
            ttl=ttl, extra_info={"dmem": "a finite number of seconds > 0, at most ten years"}
        )
    return seconds


def _as_value(value: object) -> dict[str, Any]:
    """What dmem stores for a py-key-value value: the mapping as a plain dict."""
    if not isinstance(value, Mapping):
        raise kv_errors.SerializationError(
            f"a py-key-value value is a mapping, not {type(value).__name__}"
        )
    return dict(value)


def _as_dict(value: object) -> dict[str, Any]:
    """A stored value as py-key-value returns it; anything but a dict was written by others."""
    if type(value) is not dict:
        raise kv_errors.DeserializationError(
            f"the stored value is a {type(value).__name__}, not a dict (written by something "
            "other than a py-key-value store?)"
        )
    return value


@contextmanager
def _translated() -> Iterator[None]:
    """dmem's errors as py-key-value's, the dmem error chained as ``__cause__``."""
    try:
        yield
    except InvalidKeyError as exc:
        raise kv_errors.InvalidKeyError(str(exc)) from exc
    except InvalidValueError as exc:
        raise kv_errors.SerializationError(str(exc)) from exc
    except CorruptValueError as exc:
        raise kv_errors.DeserializationError(str(exc)) from exc
    except ProviderUnavailableError as exc:
        raise kv_errors.StoreConnectionError(str(exc)) from exc
    except ProviderError as exc:
        raise kv_errors.KeyValueStoreError(str(exc)) from exc
    except DmemError as exc:
        raise kv_errors.KeyValueOperationError(str(exc)) from exc
