"""``DmemStore``: LangGraph's ``BaseStore`` over any dmem key-value URL (and vector URL)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, cast

from langchain_core.embeddings import Embeddings
from langgraph.store.base import (
    BaseStore,
    IndexConfig,
    Op,
    PutOp,
    Result,
    SearchOp,
    TTLConfig,
    ensure_embeddings,
    get_text_at_path,
    tokenize_path,
)

import dmem
from dmem import InvalidArgumentError, NotInitializedError

from ._backend import Backend, Plan, Texts, check_ops, check_ttl, dedupe_puts

__all__ = ["DmemStore"]

log = logging.getLogger("dmem.langgraph")

_TTL_KEYS = frozenset({"refresh_on_read", "default_ttl", "sweep_interval_minutes", "omit_expired"})
_INDEX_KEYS = frozenset({"dims", "embed", "fields"})
_VECTOR_SCHEMES = ("memory", "chroma")  # dmem URLs that also hold vectors


def _check_ttl_config(ttl: object) -> TTLConfig | None:
    if ttl is None:
        return None
    if not isinstance(ttl, Mapping):
        raise InvalidArgumentError(f"ttl must be a TTLConfig dict, not {type(ttl).__name__}")
    unknown = set(ttl) - _TTL_KEYS
    if unknown:
        raise InvalidArgumentError(f"unknown ttl config keys: {sorted(unknown)}")
    check_ttl(ttl.get("default_ttl"))
    interval = ttl.get("sweep_interval_minutes")
    if interval is not None and (
        isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0
    ):
        raise InvalidArgumentError(f"sweep_interval_minutes must be > 0, got {interval!r}")
    for flag in ("refresh_on_read", "omit_expired"):
        if flag in ttl and not isinstance(ttl[flag], bool):
            raise InvalidArgumentError(f"{flag} must be a bool, got {ttl[flag]!r}")
    return cast(TTLConfig, dict(ttl))


def _vector_url(url: str | None, vector_url: str | None) -> str:
    if vector_url is not None:
        return vector_url
    if url is not None and url.split(":", 1)[0] in _VECTOR_SCHEMES:
        return url
    raise InvalidArgumentError(
        "index= needs a dmem vector URL for the embeddings: pass vector_url= "
        "(for instance 'chroma:///path/to/dir' or 'memory://NAME')"
    )


class DmemStore(BaseStore):
    """LangGraph's long-term memory store over dmem: any dmem key-value URL.

    ``store = DmemStore("redis://localhost:6379/0", namespace="agent")`` (or SQLite,
    PostgreSQL, memory, Chroma ...); ``store.put(("users", "u1"), "prefs", {...})``.
    ``batch`` is synchronous (dmem's loop thread), ``abatch`` natively async on the
    caller's loop. With ``index={"dims": ..., "embed": ..., "fields": [...]}``,
    ``search(query=...)`` ranks by cosine similarity through dmem's vector API at
    ``vector_url`` (the ``url`` itself when it is a memory or Chroma URL).
    ``ttl={"default_ttl": minutes, "refresh_on_read": True}`` expires items with dmem's
    own ttl: exact on every backend, no sweeper needed for the items themselves.
    """

    supports_ttl: bool = True

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str = "langgraph",
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        vector_url: str | None = None,
        **options: Any,
    ) -> None:
        if url is not None and not isinstance(url, str):
            raise InvalidArgumentError(f"url must be a str or None, not {type(url).__name__}")
        if not isinstance(namespace, str):
            raise InvalidArgumentError(f"namespace must be a str, not {type(namespace).__name__}")
        self.ttl_config = _check_ttl_config(ttl)
        self._url = url
        self._namespace = namespace
        self._options = dict(options)
        self.index_config: dict[str, Any] | None = None
        self.embeddings: Embeddings | None = None
        self._vector_url: str | None = None
        if index is not None:
            if not isinstance(index, Mapping) or "embed" not in index:
                raise InvalidArgumentError("index must be a dict with at least 'embed'")
            unknown = set(index) - _INDEX_KEYS
            if unknown:
                raise InvalidArgumentError(f"unknown index config keys: {sorted(unknown)}")
            dims = index.get("dims")
            if dims is not None and (
                isinstance(dims, bool) or not isinstance(dims, int) or dims < 1
            ):
                raise InvalidArgumentError(f"dims must be an int >= 1, got {dims!r}")
            self._vector_url = _vector_url(url, vector_url)
            self.index_config = dict(index)
            self.embeddings = ensure_embeddings(index["embed"])
            fields = index.get("fields") or ["$"]
            self._fields = [(p, tokenize_path(p) if p != "$" else p) for p in fields]
        self._sync_backend: Backend | None = None
        self._async_backend: Backend | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._sweeper: threading.Thread | None = None
        self._sweeper_stop = threading.Event()

    def __repr__(self) -> str:
        where = dmem.redact_url(self._url) if self._url else "default URL"
        return f"<DmemStore {where} namespace={self._namespace!r}>"

    # --- constructors and lifecycle --------------------------------------------------------
    @classmethod
    @contextlib.contextmanager
    def from_conn_string(
        cls,
        conn_string: str,
        *,
        namespace: str = "langgraph",
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        vector_url: str | None = None,
        **options: Any,
    ) -> Iterator[DmemStore]:
        """``with DmemStore.from_conn_string(url) as store:``, closed at the end (sync)."""
        store = cls(
            conn_string, namespace=namespace, index=index, ttl=ttl, vector_url=vector_url, **options
        )
        try:
            store.setup()
            yield store
        finally:
            store.close()

    @classmethod
    @contextlib.asynccontextmanager
    async def afrom_conn_string(
        cls,
        conn_string: str,
        *,
        namespace: str = "langgraph",
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        vector_url: str | None = None,
        **options: Any,
    ) -> AsyncIterator[DmemStore]:
        """``async with DmemStore.afrom_conn_string(url) as store:`` (async)."""
        store = cls(
            conn_string, namespace=namespace, index=index, ttl=ttl, vector_url=vector_url, **options
        )
        try:
            await store.asetup()
            yield store
        finally:
            await store.aclose()

    def setup(self) -> None:
        """Open the connection now (it opens on first use otherwise); dmem needs no migration."""
        self._sync()

    async def asetup(self) -> None:
        await self._async()

    def _check_open(self) -> None:
        if self._closed:
            raise NotInitializedError("DmemStore is closed")

    def _sync(self) -> Backend:
        self._check_open()
        with self._lock:
            if self._sync_backend is None:
                self._sync_backend = dmem.run_sync(
                    Backend.open(self._url, self._namespace, self._options, self._vector_url)
                )
            return self._sync_backend

    async def _async(self) -> Backend:
        # dmem stores are bound to the loop that opened them: one backend per caller loop
        # (a new loop, as each asyncio.run makes, gets its own; the old one is dropped).
        self._check_open()
        loop = asyncio.get_running_loop()
        if self._async_backend is None or self._async_loop is not loop:
            backend = await Backend.open(
                self._url, self._namespace, self._options, self._vector_url
            )
            if self._async_backend is not None and self._async_loop is loop:
                await backend.aclose()  # another task of this loop opened it meanwhile
            else:
                self._async_backend, self._async_loop = backend, loop
        assert self._async_backend is not None
        return self._async_backend

    def close(self) -> None:
        """Close the sync connection (and stop the sweeper). Idempotent."""
        self.stop_ttl_sweeper()
        self._closed = True
        with self._lock:
            backend, self._sync_backend = self._sync_backend, None
        if backend is not None:
            dmem.run_sync(backend.aclose())

    async def aclose(self) -> None:
        """Close every connection of the store (async and sync). Idempotent."""
        backend, self._async_backend = self._async_backend, None
        loop, self._async_loop = self._async_loop, None
        try:
            if backend is not None and loop is asyncio.get_running_loop():
                await backend.aclose()
        finally:
            await asyncio.to_thread(self.close)

    def __enter__(self) -> DmemStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> DmemStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- the batch -------------------------------------------------------------------------
    def _texts(self, puts: Mapping[tuple[tuple[str, ...], str], PutOp]) -> Texts:
        """What to embed for the puts, field by field, as InMemoryStore and Postgres pick it."""
        if self.embeddings is None:
            return []
        texts: Texts = []
        for (namespace, key), op in puts.items():
            if op.value is None or op.index is False:
                continue
            paths = self._fields if op.index is None else [(p, tokenize_path(p)) for p in op.index]
            for path, tokens in paths:
                found = get_text_at_path(op.value, tokens)
                for i, text in enumerate(found):
                    texts.append((namespace, key, f"{path}.{i}" if len(found) > 1 else path, text))
        return texts

    def _plan(self, ops: Iterable[Op]) -> tuple[Plan, Texts, list[str]]:
        checked = check_ops(ops)
        plan = Plan(checked, dedupe_puts(checked))
        queries: list[str] = []
        if self.embeddings is not None:
            queries = list(
                dict.fromkeys(op.query for op in checked if isinstance(op, SearchOp) and op.query)
            )
        return plan, self._texts(plan.puts), queries

    def _check_vectors(self, vectors: list[list[float]], count: int) -> list[list[float]]:
        if len(vectors) != count:
            raise InvalidArgumentError(
                f"the embedder returned {len(vectors)} vectors for {count} texts"
            )
        dims = (self.index_config or {}).get("dims")
        for vector in vectors:
            if dims is not None and len(vector) != dims:
                raise InvalidArgumentError(
                    f"the embedder returned a vector of {len(vector)} dimensions; "
                    f"the index config says dims={dims}"
                )
        return [list(map(float, v)) for v in vectors]

    def _fill(
        self,
        plan: Plan,
        texts: Texts,
        vectors: list[list[float]],
        queries: list[str],
        query_vectors: list[list[float]],
    ) -> None:
        for (namespace, key, path, _), vector in zip(texts, vectors, strict=True):
            plan.put_vectors.setdefault((namespace, key), []).append((path, vector))
        plan.query_vectors = dict(zip(queries, query_vectors, strict=True))

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        plan, texts, queries = self._plan(ops)
        if self.embeddings is not None:
            vectors = self._check_vectors(
                self.embeddings.embed_documents([t[3] for t in texts]) if texts else [],
                len(texts),
            )
            query_vectors = self._check_vectors(
                [self.embeddings.embed_query(q) for q in queries], len(queries)
            )
            self._fill(plan, texts, vectors, queries, query_vectors)
        return dmem.run_sync(self._sync().run(plan))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        plan, texts, queries = self._plan(ops)
        if self.embeddings is not None:
            vectors = self._check_vectors(
                await self.embeddings.aembed_documents([t[3] for t in texts]) if texts else [],
                len(texts),
            )
            query_vectors = self._check_vectors(
                list(await asyncio.gather(*(self.embeddings.aembed_query(q) for q in queries))),
                len(queries),
            )
            self._fill(plan, texts, vectors, queries, query_vectors)
        backend = await self._async()
        return await backend.run(plan)

    # --- TTL sweeping ----------------------------------------------------------------------
    def sweep_ttl(self) -> int:
        """Remove the vectors of expired items; returns how many were removed.

        The items themselves need no sweep: dmem expires them (absent from every call the
        moment their ttl ends, and purged by the backend). Only the vector records of
        ``index`` stores outlive them, hidden from searches until this removes them.
        """
        return dmem.run_sync(self._sync().sweep())

    async def asweep_ttl(self) -> int:
        return await (await self._async()).sweep()

    def start_ttl_sweeper(
        self, sweep_interval_minutes: int | None = None
    ) -> concurrent.futures.Future[None]:
        """Run :meth:`sweep_ttl` every ``sweep_interval_minutes`` (default: the ttl config's,
        else 5) in a daemon thread, as PostgresStore does; the future ends when it stops."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        if self._sweeper is not None and self._sweeper.is_alive():
            future.set_result(None)
            return future
        config = self.ttl_config or {}
        interval = float(sweep_interval_minutes or config.get("sweep_interval_minutes") or 5)
        self._sweeper_stop.clear()

        def loop() -> None:
            try:
                while not self._sweeper_stop.wait(interval * 60):
                    try:
                        removed = self.sweep_ttl()
                        if removed:
                            log.debug("swept %d expired vector records", removed)
                    except Exception as exc:  # noqa: BLE001 - the sweeper keeps going
                        log.warning("store ttl sweep failed: %s", type(exc).__name__)
            finally:
                future.set_result(None)

        self._sweeper = threading.Thread(target=loop, daemon=True, name="dmem-store-sweeper")
        self._sweeper.start()
        return future

    def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        """Stop the sweeper thread; True when it is stopped (or was not running)."""
        thread = self._sweeper
        if thread is None or not thread.is_alive():
            return True
        self._sweeper_stop.set()
        thread.join(timeout)
        stopped = not thread.is_alive()
        if stopped:
            self._sweeper = None
        return stopped
