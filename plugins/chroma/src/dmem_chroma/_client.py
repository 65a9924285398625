"""Connecting to Chroma, running its synchronous client off the event loop, mapping errors.

One :class:`ChromaConnection` per provider, on a client the process's stores on the same
Chroma share (``_shared``). Every Chroma call goes through
:meth:`ChromaConnection.run`: it runs in a worker thread (``_threads``: one shared
thread for the in-process client, a few for HTTP) so the event loop stays free,
is bounded by the configured ``timeout`` (``ProviderUnavailableError`` when it
passes, never a hang), and turns Chroma's exceptions into dmem errors
(``chromadb.*`` never escapes raw).

Reads by id (:attr:`ChromaConnection.read_metadatas`) and nearest-neighbour queries
(:attr:`ChromaConnection.query_nearest`) skip chromadb's Python layers in the embedded
client when its bindings allow (see :func:`_metadata_reader` and :func:`_query_runner`).

Writes that must not interleave (read-modify-write such as ``if_not_exists``)
take :meth:`ChromaConnection.lock`: one ``threading.Lock`` per collection per
process, shared by every provider of this process on that collection.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import SplitResult, unquote, urlsplit

from dmem import (
    InvalidArgumentError,
    ProviderError,
    ProviderOptions,
    ProviderUnavailableError,
    StoreNotFoundError,
)
from dmem.sharing import Lease

from ._shared import (
    SharedClient,
    _make_private_dirs,  # noqa: F401 - tests import it from here
    lease_client,
)
from ._threads import CallThreads

__all__ = ["ChromaConfig", "ChromaConnection", "parse_config"]

T = TypeVar("T")
# ids -> (the ids found, their metadatas, in the same order).
MetadataReader = Callable[[Sequence[str]], tuple[list[str], list[Mapping[str, Any] | None]]]
# (vector, k, Chroma where or None) -> (ids, metadatas, documents, distances) of the one query.
Nearest = tuple[list[str], list[Mapping[str, Any] | None], list[str | None], list[float]]
QueryRunner = Callable[[Sequence[float], int, "dict[str, Any] | None"], Nearest]
_QUERY_INCLUDE = ["metadatas", "documents", "distances"]
Mode = Literal["ephemeral", "persistent", "http"]

# Set on every collection dmem creates. Chroma keeps each write in its log until
# ``sync_threshold`` writes have gathered, then persists the index and trims the log, and each
# write (and query) costs more the more of the log is pending, about 7 µs per pending record
# (measured): with Chroma's default of 1000 a one-record KV upsert rose from 3.5 to 10 ms over
# every 1,000 writes, 7.2 ms on average; syncing every 200 writes, 4.1 ms (a one-vector upsert
# into 50,000 vectors of 128 dimensions: 6.4 -> 4.3 ms). A sync costs more the larger the
# collection, so bulk loads into a very large one are slower, but single writes stayed faster
# at every size measured (docs/backends/chroma.md). batch_size may not exceed sync_threshold.
_COLLECTION_SETTINGS = {"hnsw:sync_threshold": 200, "hnsw:batch_size": 100}

_LOCKS: dict[tuple[str, ...], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@dataclass(frozen=True)
class ChromaConfig:
    """Where and how to reach Chroma; built by :func:`parse_config`, no I/O."""

    mode: Mode
    url: str
    path: str = ""  # persistent: as in the URL (relative to the working directory, or absolute)
    host: str = ""
    port: int = 8000
    ssl: bool = False
    tenant: str = "default_tenant"
    database: str = "default_database"
    collection: str = "dmem"
    namespace: str = ""
    timeout: float = 10.0
    create: bool = True  # persistent: False makes a missing directory StoreNotFoundError
    max_value_bytes: int | None = None  # key-value: larger encoded values, InvalidValueError
    share_connection: bool = True  # False: a client of the store's own
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        # ``where``, not the URL: it is built from checked parts only (no user info).
        return f"ChromaConfig({self.where!r}, namespace={self.namespace!r})"

    @property
    def where(self) -> str:
        """A secret-free description for messages and health reports."""
        if self.mode == "http":
            scheme = "https" if self.ssl else "http"
            return f"chroma+{scheme}://{self.host}:{self.port} ({self.tenant}/{self.database})"
        if self.mode == "persistent":
            return f"chroma:///{self.path}"
        return "chroma:// (in-process, ephemeral)"

    def collection_name(self, kind: str) -> str:
        """Chroma's names allow only [a-zA-Z0-9._-], so the namespace goes in as a hash."""
        digest = hashlib.sha256(self.namespace.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.collection}-{kind}-{digest[:32]}"


_OPTIONS = frozenset(
    (
        "namespace",
        "tenant",
        "database",
        "collection",
        "timeout",
        "token",
        "create",
        "max_value_bytes",
        "share_connection",
    )
)


def parse_config(url: str, options: dict[str, Any]) -> ChromaConfig:
    """``chroma://``, ``chroma:///path``, ``chroma+http(s)://host:port`` and options.

    Paths follow SQLite's (and SQLAlchemy's) convention: ``chroma:///data/chroma`` is
    ``data/chroma`` relative to the working directory, ``chroma:////srv/chroma`` the absolute
    ``/srv/chroma``; the path is percent-decoded and ``~`` is expanded.

    No message quotes the URL: a secret typed into it without percent-encoding can land
    in any part of it (see ``_unknown_options``).
    """
    _unknown_options(options)
    opts = ProviderOptions(options, provider="chroma")
    namespace = opts.namespace()
    tenant = opts.str("tenant", "default_tenant")
    database = opts.str("database", "default_database")
    collection = opts.str("collection", "dmem")
    timeout = opts.float("timeout", 10.0)
    token = opts.optional_str("token")
    create = opts.bool("create", True)
    max_value_bytes = opts.max_value_bytes()
    share_connection = opts.bool("share_connection", True)
    opts.done()
    if not collection or not collection[0].isalnum() or len(collection) > 200:
        raise InvalidArgumentError("chroma option 'collection' must start with a letter or digit")
    if not all(c.isascii() and (c.isalnum() or c in "._-") for c in collection):
        raise InvalidArgumentError("chroma option 'collection' may hold only [a-zA-Z0-9._-]")
    # Sent as an HTTP header: httpx's error for a control character there quotes the
    # value, and a non-ASCII one fails only at open; so check here, and show nothing of it.
    if token is not None and not all(" " <= c <= "~" for c in token):
        raise InvalidArgumentError(
            "chroma option 'token' must be printable ASCII (it is sent as an HTTP header)"
        )
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme in ("chroma+http", "chroma+https") and "@" in rest.partition("?")[0]:
        # User info (an '@' before the query; after a '/' or '#' too: a password holding
        # one unencoded). dmem would not send it, and redact_url cannot find a password
        # whose '/', '#' or '?' ends the URL's authority early.
        raise InvalidArgumentError(
            "chroma+http URLs take no user info (user:password@): "
            "give a token with the token option"
        )
    # urlsplit's errors quote the netloc (user info included): raised outside the except
    # blocks, so they are not even kept as the __context__ of dmem's error.
    try:
        parts: SplitResult | None = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None:
        raise InvalidArgumentError(
            "bad chroma URL: an unbalanced '[' or ']', or a character that Unicode "
            "normalization turns into '/', '?', '#', '@' or ':' (percent-encode it)"
        )
    port: int | None = None
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port == -1:
        raise InvalidArgumentError("bad chroma URL: the port must be a number from 0 to 65535")
    common: dict[str, Any] = {
        "url": url,
        "tenant": tenant,
        "database": database,
        "collection": collection,
        "namespace": namespace,
        "timeout": timeout,
        "create": create,
        "max_value_bytes": max_value_bytes,
        "share_connection": share_connection,
    }
    if scheme in ("chroma+http", "chroma+https"):
        if not parts.hostname:
            raise InvalidArgumentError("chroma+http URLs need a host: chroma+http://HOST:PORT")
        headers = {"x-chroma-token": token} if token else {}
        return ChromaConfig(
            mode="http",
            host=parts.hostname,
            port=port or 8000,
            ssl=scheme == "chroma+https",
            headers=headers,
            **common,
        )
    if scheme != "chroma":
        raise InvalidArgumentError(
            "not a chroma URL: the scheme must be chroma, chroma+http or chroma+https"
        )
    if token:
        raise InvalidArgumentError("chroma option 'token' applies to chroma+http(s) URLs only")
    if rest and not rest.startswith("/"):
        raise InvalidArgumentError(
            "chroma URLs have no host: chroma:// (in-process), chroma:///relative/dir, "
            "chroma:////absolute/dir, or chroma+http://HOST:PORT for a server"
        )
    raw = unquote(rest[1:]) if rest else ""
    if not raw:
        return ChromaConfig(mode="ephemeral", **common)
    return ChromaConfig(mode="persistent", path=str(Path(raw).expanduser()), **common)


def _unknown_options(options: Mapping[str, Any]) -> None:
    """Reject unknown options without naming them when they may be part of a secret.

    A secret typed into a URL without percent-encoding splits it: a '?' in a password
    (``user:pa?ss@host``) makes ``ss@host`` an option, and a '&' in a token
    (``?token=ab&cd``) makes ``cd`` one. So when an unknown option holds an '@', or a
    token is given, no name is shown; otherwise ``ProviderOptions`` names them as usual.
    """
    unknown = [name for name in options if name not in _OPTIONS]
    if not unknown:
        return
    at = any("@" in name or "@" in str(options[name]) for name in unknown)
    if at or "token" in options:
        raise InvalidArgumentError(
            f"{len(unknown)} unknown chroma option(s), not named because they may be part "
            "of a secret (percent-encode '?', '&', '#', '/' and '@' inside a URL)"
        )


# One warm thread serves every in-process store: a hand-off to a thread that is already
# running is cheapest, and in-process writes to a collection take its lock anyway (more
# threads were not measured). The loop keeps running meanwhile: a worker inside Chroma left
# the loop's thread 81% of its speed (measured). HTTP calls wait on the network, so several
# of them may be in flight at once.
_EMBEDDED_THREADS = CallThreads(1, "dmem-chroma")
_HTTP_THREADS = CallThreads(16, "dmem-chroma-http")


def _lock_for(key: tuple[str, ...]) -> threading.Lock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = threading.Lock()
        return lock


def _is_unreachable(exc: BaseException) -> bool:
    """Connection-level failures (the server is down or does not answer)."""
    import httpx

    if isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError)):
        return True
    text = str(exc)
    return "Could not connect to" in text or "Connection refused" in text


def map_error(exc: Exception, where: str) -> Exception:
    """The dmem error for a Chroma exception (the caller chains the original)."""
    from dmem import DmemError

    if isinstance(exc, DmemError):
        return exc
    if _is_unreachable(exc):
        return ProviderUnavailableError(f"cannot reach {where}: {type(exc).__name__}: {exc}")
    text = str(exc)
    if "dimension" in text.lower() and "expecting embedding" in text.lower():
        return InvalidArgumentError(f"vector dimension mismatch: {text}")
    return ProviderError(
        f"chroma error on {where}: {type(exc).__module__}.{type(exc).__name__}: {text}"
    )


class ChromaConnection:
    """One collection on a Chroma client the process's stores share (``_shared``), used from
    worker threads."""

    def __init__(self, config: ChromaConfig, kind: str) -> None:
        self.config = config
        self.kind = kind
        self.collection_name = config.collection_name(kind)
        self.lease: Lease[SharedClient] | None = None
        self._client: Any = None
        self._collection: Any = None
        self.read_metadatas: MetadataReader = _not_open
        self.query_nearest: QueryRunner = _not_open_query
        # A relative directory is relative to the working directory when the store is built.
        self.path = os.path.abspath(config.path) if config.mode == "persistent" else ""
        place = self.path if config.mode == "persistent" else f"{config.host}:{config.port}"
        self.lock = _lock_for(
            (config.mode, place, config.tenant, config.database, self.collection_name)
        )

    @property
    def collection(self) -> Any:
        if self._collection is None:  # pragma: no cover - the store checks initialize first
            raise ProviderError("chroma provider is not initialized")
        return self._collection

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread, within the timeout, with errors mapped."""
        return await _run(self.config, fn, *args)

    def adopt(self, lease: Lease[SharedClient]) -> None:
        """Use ``lease``'s client (``with_namespace``); :meth:`start` opens the collection."""
        self.lease = lease

    async def start(self, metadata: dict[str, Any]) -> int:
        """Open the shared client (if no store has yet) and the collection; Chroma's largest
        batch size."""
        config = self.config
        if config.mode == "persistent" and not config.create:
            # One stat, once at open, before any thread or directory is made.
            missing = not os.path.isdir(self.path)  # noqa: ASYNC240
            if missing:
                raise StoreNotFoundError(f"{config.where} does not exist (create=False)")
        # chromadb's first import in a process is 0.8-1.5 s of CPU here: local work, not a
        # wait on Chroma, so it happens before the timed call rather than in it (a first open
        # with timeout=1 failed against a healthy server). Later opens find it imported.
        await asyncio.to_thread(importlib.import_module, "chromadb.config")
        lease = self.lease
        if lease is None:
            lease = lease_client(config, self.path, _close_client)
        shared = lease.value

        def work() -> int:
            client = shared.get()
            self.open(client, metadata)
            return max(1, int(client.get_max_batch_size()))

        try:
            batch = await self.run(work)
        except BaseException:
            if self.lease is None:  # ours: give it back (with_namespace's goes with aclose)
                await lease.release()
            raise
        self.lease = lease
        return batch

    async def close(self) -> None:
        """Forget the collection and give the client back (the last store closes it)."""
        lease, self.lease = self.lease, None
        self._client = self._collection = None
        self.read_metadatas = _not_open
        self.query_nearest = _not_open_query
        if lease is not None:
            await lease.release()

    # --- worker thread ----------------------------------------------------------------------
    def open(self, client: Any, metadata: dict[str, Any]) -> None:
        config = self.config
        self._collection = client.get_or_create_collection(
            self.collection_name,
            metadata={
                "dmem:kind": self.kind,
                "dmem:namespace": config.namespace,
                **_COLLECTION_SETTINGS,
                **metadata,
            },
            # Never the default embedding function: it downloads a model.
            embedding_function=None,
        )
        self.read_metadatas = _metadata_reader(self._collection)
        self.query_nearest = _query_runner(self._collection)
        self._client = client

    def heartbeat(self) -> int:
        client = self._client
        if client is None:
            raise ProviderError("chroma provider is not initialized")
        return int(client.heartbeat())


async def _run(config: ChromaConfig, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread, within ``config.timeout``, with errors mapped."""
    threads = _HTTP_THREADS if config.mode == "http" else _EMBEDDED_THREADS
    try:
        return await threads.call(fn, args, timeout=config.timeout, what=config.where)
    except Exception as exc:
        raise map_error(exc, config.where) from exc


async def _close_client(shared: SharedClient) -> None:
    await _run(shared.config, shared.close)


def _not_open(ids: Sequence[str]) -> tuple[list[str], list[Mapping[str, Any] | None]]:
    raise ProviderError("chroma provider is not initialized")


def _not_open_query(vector: Sequence[float], k: int, where: dict[str, Any] | None) -> Nearest:
    raise ProviderError("chroma provider is not initialized")


def _bindings(collection: Any, method: str) -> tuple[Callable[..., Any], dict[str, str]] | None:
    """The embedded client's Rust bindings' ``method``, and the arguments naming ``collection``.

    chromadb's ``Collection`` methods spend tens of µs of Python per call around these
    (argument validation and conversion, a telemetry event even when telemetry is off, result
    wrapping); dmem has validated its arguments already. That is chromadb's internal API:
    each caller probes it once at open and falls back to the public method on any surprise,
    and the conformance suites run every call through it. The HTTP client has no bindings
    (its round trip dwarfs the Python layers) and always takes the public path.
    """
    bound = getattr(getattr(getattr(collection, "_client", None), "bindings", None), method, None)
    if not callable(bound):
        return None
    where = {
        "collection_id": str(collection.id),
        "tenant": collection.tenant,
        "database": collection.database,
    }
    return bound, where


def _metadata_reader(collection: Any) -> MetadataReader:
    """``collection.get(ids=..., include=["metadatas"])``, as fast as this client allows.

    In the embedded client, ``Collection.get`` spends ~45 µs of Python around a ~500 µs call
    into its Rust bindings (measured here), and a KV ``get`` pays it on every call, on top of
    the hand-off to the worker thread. So this calls the bindings' ``get`` by keyword (see
    :func:`_bindings`) when one probe call at open succeeds.
    """

    def public(ids: Sequence[str]) -> tuple[list[str], list[Mapping[str, Any] | None]]:
        got = collection.get(ids=list(ids), include=["metadatas"])
        return list(got["ids"]), list(got["metadatas"] or [])

    found = _bindings(collection, "get")
    if found is None:
        return public
    bindings_get, where = found

    def direct(ids: Sequence[str]) -> tuple[list[str], list[Mapping[str, Any] | None]]:
        got = bindings_get(ids=list(ids), include=["metadatas"], **where)
        return got.ids, got.metadatas or []

    try:
        probe_ids, probe_metas = direct(["dmem:probe"])
        if not isinstance(probe_ids, list) or not isinstance(probe_metas, list):
            return public
    except Exception:  # noqa: BLE001 - any surprise means: use the public API
        return public
    return direct


def _query_runner(collection: Any) -> QueryRunner:
    """``collection.query`` of one vector for k matches, as fast as this client allows.

    The public ``Collection.query`` converts and validates its input in Python before the
    bindings' ``query``: 57-80 µs of an 800 µs query (k=10 of 10,000 records of 128
    dimensions, measured here). The direct path hands the bindings what that conversion
    would: the vector as a float32 array and the filter as JSON text. Probed once at open
    with an empty batch of queries (no vector, so no dimension to match).
    """
    import json

    import numpy as np

    def public(vector: Sequence[float], k: int, where: dict[str, Any] | None) -> Nearest:
        got = collection.query(
            query_embeddings=[list(vector)], n_results=k, where=where, include=_QUERY_INCLUDE
        )
        return _first_query(got["ids"], got["metadatas"], got["documents"], got["distances"])

    found = _bindings(collection, "query")
    if found is None:
        return public
    bindings_query, named = found

    def direct(vector: Sequence[float], k: int, where: dict[str, Any] | None) -> Nearest:
        got = bindings_query(
            ids=None,
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=k,
            where=None if where is None else json.dumps(where),
            where_document=None,
            include=_QUERY_INCLUDE,
            **named,
        )
        return _first_query(got.ids, got.metadatas, got.documents, got.distances)

    try:
        probe = bindings_query(
            ids=None,
            query_embeddings=[],
            n_results=1,
            where=None,
            where_document=None,
            include=_QUERY_INCLUDE,
            **named,
        )
        if not isinstance(probe.ids, list):
            return public
    except Exception:  # noqa: BLE001 - any surprise means: use the public API
        return public
    return direct


def _first_query(ids: Any, metadatas: Any, documents: Any, distances: Any) -> Nearest:
    """The first (only) query's columns; a column Chroma left out comes back as Nones."""
    found: list[str] = list(ids[0])
    missing: list[Any] = [None] * len(found)
    return (
        found,
        list((metadatas or [[]])[0] or missing),
        list((documents or [[]])[0] or missing),
        [float(distance) for distance in (distances or [[]])[0]],
    )
