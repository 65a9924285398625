"""Store factories: how the suite gets stores from a backend.

A backend's test module provides a ``store_factory`` fixture returning a
:data:`StoreFactory`: an async callable ``await factory(namespace, middleware=...)``
that returns an *initialized* :class:`dmem.Store` on the backend. Each call may
(and for the multi-connection clauses should) open a new connection; every
connection must be created inside the call, because the suite awaits it on its
own event loop and connections are bound to the loop that created them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import dmem

__all__ = ["StoreFactory", "secrets_of", "url_factory"]

_SECRET_OPTIONS = ("password", "passwd", "pwd", "token", "secret", "api_key", "apikey")


class StoreFactory(Protocol):
    """``await factory(namespace, middleware=())`` -> an initialized :class:`dmem.Store`."""

    def __call__(
        self, namespace: str, *, middleware: Sequence[Any] = ()
    ) -> Awaitable[dmem.Store]: ...


class _UrlFactory:
    """Opens ``dmem.open(url, namespace=..., middleware=..., **options)`` per call.

    Stores of one process on one backend share its connection by default (``dmem.sharing``),
    but the multi-connection clauses (``nx.connections``, ``nx.batch-connections``,
    ``namespaces.isolation``) need independent ones. So every other store is opened with
    ``share_connection=false`` (every URL takes it): each suite test runs on the shared path
    users get, and each multi-connection clause has two or more independent connections.
    Not when the URL or the options choose ``share_connection`` themselves.
    """

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self.url = url
        self.options = options
        self.secrets = secrets_of(url, options)
        query = url.partition("?")[2]
        chosen = "share_connection" in options or any(
            name == "share_connection" for name, _ in parse_qsl(query, keep_blank_values=True)
        )
        self._own = None if chosen else {**options, "share_connection": False}
        self.calls = 0

    async def __call__(self, namespace: str, *, middleware: Sequence[Any] = ()) -> dmem.Store:
        self.calls += 1
        options = self.options if self._own is None or self.calls % 2 else self._own
        return await dmem.open(self.url, namespace=namespace, middleware=middleware, **options)

    def __repr__(self) -> str:
        # Never show a password, even in pytest's fixture dumps.
        return f"url_factory({dmem.redact_url(self.url)!r})"


def url_factory(url: str, **options: Any) -> StoreFactory:
    """A :data:`StoreFactory` opening ``url`` with ``options`` in each test's namespace."""
    return _UrlFactory(url, options)


def secrets_of(url: str, options: dict[str, Any] | None = None) -> tuple[str, ...]:
    """Passwords and tokens in ``url`` and ``options``: the suite checks none ever shows."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            found.append(unquote(parts.password))
        for name, value in parse_qsl(parts.query):
            if name.lower() in _SECRET_OPTIONS and value:
                found.append(value)
    except ValueError:
        pass
    for name, value in (options or {}).items():
        if name.lower() in _SECRET_OPTIONS and isinstance(value, str) and value:
            found.append(value)
    # Very short "secrets" would match by accident anywhere.
    return tuple(s for s in found if len(s) >= 4)
