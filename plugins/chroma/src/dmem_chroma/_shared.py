"""One Chroma client per place as the stores of one process share it.

Stores opened on the same Chroma (``dmem.open`` or ``dmem.open_vector`` twice, or
``Store.with_namespace``), whatever their namespace, take a lease on one
:class:`SharedClient` (``dmem.sharing``): one ``HttpClient`` per server, tenant, database
and token, one ``PersistentClient`` per directory, one ``EphemeralClient``. Chroma's clients
are synchronous and run in dmem's worker threads, so one serves every event loop. It is
made by the first store that opens (in a worker thread, under the client's lock) and closed
with the last store. Each store still opens its namespace's collection on it: one call,
nothing more. ``share_connection=false`` gives a store a client of its own.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from dmem.sharing import Lease, SharedConnections

if TYPE_CHECKING:
    from ._client import ChromaConfig

__all__ = ["SharedClient", "connection_key", "lease_client"]

_CLIENTS: SharedConnections[SharedClient] = SharedConnections("chroma")


def connection_key(config: ChromaConfig, path: str) -> Hashable | None:
    """What makes two stores' clients the same one (None: a client of its own); ``path``:
    the persistent directory, absolute. The token is part of it, never shown."""
    if not config.share_connection:
        return None
    place: Hashable
    if config.mode == "http":
        headers = tuple(sorted(config.headers.items()))
        place = (config.host, config.port, config.ssl, headers, config.timeout)
    elif config.mode == "persistent":
        place = path
    else:
        place = None
    return (config.mode, place, config.tenant, config.database)


def lease_client(config: ChromaConfig, path: str, close: Any) -> Lease[SharedClient]:
    """A lease on the client for ``config`` (made later, by :meth:`SharedClient.get`)."""
    return _CLIENTS.acquire(connection_key(config, path), lambda: SharedClient(config, path), close)


class _Making:
    """One attempt at making the client, that other stores opening meanwhile wait for."""

    __slots__ = ("client", "done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.client: Any = None
        self.error: BaseException | None = None


class SharedClient:
    """A Chroma client, made on first use in a worker thread."""

    def __init__(self, config: ChromaConfig, path: str) -> None:
        self.config = config
        self.path = path
        self._lock = threading.Lock()
        self._client: Any = None
        self._making: _Making | None = None

    def get(self) -> Any:
        """The client, made now if it is not yet (worker thread: it may wait for I/O).

        One thread makes it; stores opening meanwhile wait for that attempt, at most
        ``timeout``, and share its outcome, a failure too: against a server that does not
        answer, twenty opens at once must not try one after another, each holding a worker
        thread for its ``timeout`` (the HTTP threads serve every server of the process).
        """
        with self._lock:
            if self._client is not None:
                return self._client
            making = self._making
            mine = making is None
            if making is None:
                making = self._making = _Making()
        if not mine:
            if not making.done.wait(self.config.timeout):
                raise TimeoutError(
                    f"{self.config.where}: the client being made by another store did not "
                    f"connect within {self.config.timeout:g} s"
                )
            if making.error is not None:
                raise _again(making.error)
            return making.client
        try:
            making.client = _make_client(self.config, self.path)
        except BaseException as exc:
            making.error = exc
            raise
        finally:
            with self._lock:
                self._making = None
                if making.client is not None:
                    self._client = making.client
            making.done.set()
        return making.client

    def close(self) -> None:
        """Close the client (worker thread); the next :meth:`get` would make another."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _again(error: BaseException) -> BaseException:
    """``error`` for another thread to raise: a copy (one exception object raised in two
    threads would share, and garble, one traceback), the original where it cannot copy."""
    try:
        again = copy.copy(error)
    except Exception:  # noqa: BLE001 - an exception that cannot be copied: the original
        return error
    again.__cause__ = error.__cause__
    return again


def _make_client(config: ChromaConfig, path: str) -> Any:
    import chromadb
    from chromadb.config import Settings

    # No telemetry: dmem never phones home, and there may be no network at all.
    settings = Settings(anonymized_telemetry=False)
    if config.mode == "http":
        _wait_for_an_answer(config)
        client = chromadb.HttpClient(
            host=config.host,
            port=config.port,
            ssl=config.ssl,
            headers=dict(config.headers),
            settings=settings,
            tenant=config.tenant,
            database=config.database,
        )
        _bound_http_timeout(client, config.timeout)
        return client
    if config.mode == "persistent":
        _make_private_dirs(path)
        return chromadb.PersistentClient(
            path=path, settings=settings, tenant=config.tenant, database=config.database
        )
    return chromadb.EphemeralClient(
        settings=settings, tenant=config.tenant, database=config.database
    )


def _make_private_dirs(directory: str) -> None:
    """Create ``directory`` and its missing parents, each 0700; existing ones are left alone.

    Agent memory holds secrets. Chroma would create the directory with the umask's mode
    (0755 under umask 022), so dmem creates it first, with an explicit mode (the umask only
    takes bits away, the owner's too under 277). Chroma's own files inside keep Chroma's
    modes: the 0700 directory keeps everyone else out of them. 0700 is also what the XDG
    Base Directory spec asks of the data directories an application creates. A directory
    made meanwhile by someone else (``FileExistsError``) is theirs. Runs once, at open.
    """
    missing: list[str] = []
    while not os.path.lexists(directory) and os.path.dirname(directory) != directory:
        missing.append(directory)
        directory = os.path.dirname(directory)
    for made in reversed(missing):
        try:
            os.mkdir(made, 0o700)
        except FileExistsError:
            continue
        os.chmod(made, 0o700)  # mkdir's mode went through the umask


def _wait_for_an_answer(config: ChromaConfig) -> None:
    """One request to the server that waits at most ``timeout`` for any answer.

    chromadb's ``HttpClient`` makes its first requests (identity, tenant, database) inside
    its constructor, on a session it made without a timeout, before dmem can give it one.
    Against a server that accepts connections but never answers (hung, or stopped with
    SIGSTOP) the constructor waits until the server answers: ``run`` fails the open in
    time, but its worker thread stays blocked, and 16 such opens blocked every HTTP worker,
    so every ``chroma+http`` call of the process timed out, to any server (measured). This
    request times out by itself, freeing the thread; it costs ~1 ms an open over plain HTTP
    (any answer will do, even an error status; the token is not sent). A server that hangs
    between this request and the constructor's still holds a thread until it answers.
    """
    import httpx

    host = f"[{config.host}]" if ":" in config.host else config.host  # an IPv6 address
    scheme = "https" if config.ssl else "http"
    # Plain HTTP needs no TLS context (building one costs ~40 ms).
    with httpx.Client(timeout=config.timeout, verify=config.ssl) as client:
        client.get(f"{scheme}://{host}:{config.port}/api/v2/heartbeat")


def _bound_http_timeout(client: Any, timeout: float) -> None:
    """Give the HTTP session a timeout: chromadb creates it with none (it would wait forever).

    ``run`` bounds every call anyway; this also frees the worker thread.
    """
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(timeout)
