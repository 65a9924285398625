"""``dmem.open(url)``: from a URL to an initialized :class:`Store`.

The URL's scheme picks the provider registered by a plugin; its query
parameters become options, merged with keyword arguments (giving one option
both ways is an error). Without a URL, ``DMEM_URL`` is used, and without that
the embedded default: a SQLite file in the user's data directory
(``default_url()``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from ._health import SECRET_OPTION_NAMES
from ._options import ProviderOptions
from ._registry import EXTRA_FOR_SCHEME, ProviderKind, Registry, registry
from ._store import Store
from ._validation import check_namespace
from .errors import InvalidArgumentError, PluginNotFoundError

__all__ = ["create_provider", "default_url", "open", "resolve_middleware", "split_url"]


def default_url() -> str:
    """The embedded default store: ``sqlite:///<user data dir>/dmem/default.db``.

    The directory is ``platformdirs.user_data_dir("dmem")`` (on Linux
    ``$XDG_DATA_HOME/dmem``, by default ``~/.local/share/dmem``); the SQLite provider creates
    it when the store is first opened, private to the user: the directories it creates 0700,
    the database file (and SQLite's ``-wal``/``-shm`` beside it) 0600, whatever the umask.
    """
    import platformdirs

    return f"sqlite:///{Path(platformdirs.user_data_dir('dmem')) / 'default.db'}"


def split_url(url: str) -> tuple[str, str, dict[str, str]]:
    """``(scheme, url without query, query options)``; raises InvalidArgumentError."""
    if not isinstance(url, str) or "://" not in url:
        # Without '://' nothing marks where a password would start: show the text only
        # when it has no '@' (no user part) and is a str at all.
        shown = repr(url) if isinstance(url, str) and "@" not in url else "(not shown)"
        raise InvalidArgumentError(
            f"not a dmem URL: {shown} (expected scheme://..., e.g. memory:// or sqlite:///path.db)"
        )
    scheme = url.split("://", 1)[0].lower()
    base, _, query = url.partition("?")
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in options:
            # A secret typed into a URL unencoded splits it: a '?' in a password makes the
            # rest of the URL (up to the '@' that ends the user info) the query, a '&' in a
            # token starts another option. The repeated name may then be a piece of it.
            if "@" in query or _SECRET_OPTION.search(query):
                raise InvalidArgumentError(
                    "a URL option is given twice (not named: the query holds an '@' or a "
                    "secret, so the name may be part of one; percent-encode secrets)"
                )
            raise InvalidArgumentError(f"URL option {name!r} is given twice")
        options[name] = value
    return scheme, base, options


# The option names whose values redact_url hides.
_SECRET_OPTION = re.compile(rf"(?i){SECRET_OPTION_NAMES}")


def create_provider(
    url: str,
    options: dict[str, Any],
    *,
    kind: ProviderKind = "kv",
    reg: Registry | None = None,
) -> Any:
    """Build (not initialize) the provider of ``kind`` for ``url``."""
    scheme, base, query_options = split_url(url)
    for name in query_options.keys() & options.keys():
        raise InvalidArgumentError(f"option {name!r} is given both in the URL and as an argument")
    merged: dict[str, Any] = {**query_options, **options}
    if "namespace" in merged:  # one rule for every plugin, checked before any is called
        check_namespace(merged["namespace"])
    # Read like any provider's bool option (true/false, 1/0, yes/no, on/off in a URL).
    common = ProviderOptions(
        {
            "create": merged.pop("create", True),
            "share_connection": merged.pop("share_connection", True),
        },
        provider="dmem",
    )
    create = common.bool("create", True)
    share = common.bool("share_connection", True)
    reg = reg or registry()
    spec = reg.provider_for(kind, scheme)
    if spec is None:
        raise PluginNotFoundError(_missing_plugin_message(reg, kind, scheme))
    if spec.creates_storage:
        merged["create"] = create
    if spec.shares_connections:
        merged["share_connection"] = share
    return spec.factory(base, merged)


def _missing_plugin_message(reg: Registry, kind: ProviderKind, scheme: str) -> str:
    extra = EXTRA_FOR_SCHEME.get(scheme)
    message = f"no installed dmem plugin provides {kind} URLs of scheme '{scheme}://'"
    if extra:
        message += f"; install it with: pip install 'dmem[{extra}]'"
    known = sorted(s for (k, s) in reg.providers if k == kind)
    message += f" (installed {kind} schemes: {', '.join(known) or 'none'})"
    failed = reg.failed_plugins()
    if failed:
        message += "; plugins that failed to load: " + ", ".join(
            f"{p.name} ({p.error})" for p in failed
        )
    return message


def resolve_middleware(middleware: Sequence[Any]) -> list[Any]:
    """Middleware specs from instances (``Cache(ttl=5)``) or registered names (``"cache"``)."""
    if isinstance(middleware, (str, bytes)) or not isinstance(middleware, (list, tuple)):
        raise InvalidArgumentError(
            f"middleware must be a list of middleware, not {type(middleware).__name__}"
        )
    resolved: list[Any] = []
    for item in middleware:
        if isinstance(item, str):
            spec = registry().middleware.get(item)
            if spec is None:
                known = ", ".join(sorted(registry().middleware))
                raise PluginNotFoundError(f"no middleware named {item!r} (installed: {known})")
            item = spec.factory()
        if not callable(getattr(item, "wrap", None)):
            raise InvalidArgumentError(f"{item!r} is not a middleware (it has no wrap(inner))")
        resolved.append(item)
    return resolved


class _Opening:
    """What ``dmem.open`` returns: await it, or use it with ``async with``."""

    def __init__(self, url: str | None, middleware: Sequence[Any], options: dict[str, Any]) -> None:
        self._url = url
        self._middleware = middleware
        self._options = options
        self._store: Store | None = None

    async def _open(self) -> Store:
        url = self._url or os.environ.get("DMEM_URL") or default_url()
        provider = create_provider(url, dict(self._options))
        store = Store(provider, middleware=resolve_middleware(self._middleware), url=url)
        await store.initialize()
        return store

    def __await__(self) -> Generator[Any, None, Store]:
        return self._open().__await__()

    async def __aenter__(self) -> Store:
        self._store = await self._open()
        return self._store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await self._store.aclose()


def open(  # noqa: A001 - dmem.open is the public name, like io.open
    url: str | None = None,
    /,
    *,
    middleware: Sequence[Any] = (),
    **options: Any,
) -> _Opening:
    """Open an initialized key-value :class:`Store`.

    ``kv = await dmem.open("redis://localhost/0", namespace="app")`` or
    ``async with dmem.open("memory://") as kv: ...``. ``middleware`` is a list,
    outermost first, of instances (``Cache(ttl=60)``) or registered names.

    ``create=False`` (every provider takes it) opens only what exists: where opening would
    create local storage (a SQLite file, a Chroma directory), :class:`StoreNotFoundError`
    is raised instead and nothing is made. Read-only tools use it, so that a typo in a
    path does not leave an empty database behind.

    Stores of one process opened on the same backend share its connection (client, pool,
    worker thread), reference-counted and closed with the last of them; every provider
    takes ``share_connection=False`` for a connection of the store's own. For another
    namespace over an open store's connection, see :meth:`Store.with_namespace`.
    """
    return _Opening(url, middleware, options)
