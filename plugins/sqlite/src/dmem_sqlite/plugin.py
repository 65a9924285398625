"""Entry point module of dmem-sqlite: registers the ``sqlite`` and ``postgresql`` providers.

The hook does no I/O and imports no driver: the factories parse the URL and options
(raising ``InvalidArgumentError`` early) and the driver is imported when a store is built.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dmem import PluginNotFoundError, ProviderSpec, hookimpl

__all__ = [
    "create_postgres_provider",
    "create_sqlite_provider",
    "dmem_register_providers",
    "unreachable_postgres",
    "unreachable_sqlite",
]


def create_sqlite_provider(url: str, options: dict[str, Any]) -> Any:
    """``sqlite:///path.db`` (created with its parent directories) or ``sqlite://`` (memory)."""
    from ._config import parse_sqlite
    from ._sqlite import SQLiteProvider

    return SQLiteProvider(parse_sqlite(url, options))


def create_postgres_provider(url: str, options: dict[str, Any]) -> Any:
    """``postgresql://user:password@host:port/db`` through asyncpg."""
    from ._config import parse_postgres

    config = parse_postgres(url, options)
    try:
        import asyncpg  # noqa: F401 - only checking that the extra is installed
    except ImportError as exc:
        raise PluginNotFoundError(
            "PostgreSQL support needs asyncpg: pip install 'dmem[postgresql]' "
            "(or 'dmem-sqlite[postgresql]')"
        ) from exc
    from ._postgres import PostgresProvider

    return PostgresProvider(config)


def unreachable_postgres(url: str) -> str | None:
    """The same kind of PostgreSQL URL, with its options, on a port where nothing listens
    (127.0.0.1:1: a connection is refused at once). For the conformance suite."""
    scheme, _, rest = url.partition("://")
    query = rest.partition("?")[2]
    return f"{scheme}://dmem@127.0.0.1:1/dmem" + (f"?{query}" if query else "")


def unreachable_sqlite(url: str) -> str | None:
    """A SQLite URL with the same options whose file cannot be opened: its parent "directory"
    is the null device, so opening fails at once (the file backend's analogue of a server
    that is down). For the conformance suite's down-backend clauses."""
    from urllib.parse import parse_qsl, urlencode

    query = url.partition("?")[2]
    # create=false would turn "cannot open" into "does not exist": not what is tested.
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "create"]
    path = Path(os.devnull) / "dmem-unreachable.db"
    return f"sqlite:///{path.as_posix()}" + (f"?{urlencode(kept)}" if kept else "")


@hookimpl
def dmem_register_providers(register: Callable[[ProviderSpec], None]) -> None:
    register(
        ProviderSpec(
            name="sqlite",
            schemes=("sqlite",),
            kind="kv",
            factory=create_sqlite_provider,
            unreachable_url=unreachable_sqlite,
            description="SQLite file (WAL, durable commits), the embedded default",
            creates_storage=True,
            shares_connections=True,
        )
    )
    register(
        ProviderSpec(
            name="postgresql",
            schemes=("postgresql", "postgres", "postgresql+asyncpg"),
            kind="kv",
            factory=create_postgres_provider,
            unreachable_url=unreachable_postgres,
            description="PostgreSQL server through asyncpg (extra: postgresql)",
            shares_connections=True,
        )
    )
