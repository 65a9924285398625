"""URL and option parsing for ``sqlite://`` and ``postgresql://``; no I/O happens here.

Options (URL query parameters or keyword arguments of ``dmem.open``):

========================  =========  =======================================================
option                    default    meaning
========================  =========  =======================================================
``namespace``             ``""``     the store's namespace (a column of the primary key)
``table``                 dmem_kv    table name; ``<table>_tags`` and ``<table>_meta`` too
``timeout``               10         seconds to connect / acquire (ProviderUnavailableError)
``busy_timeout``          30         SQLite: seconds to wait for another writer's lock
``synchronous``           normal     SQLite: ``normal`` (WAL: safe on crash) or ``full``
``pool_size``             10         PostgreSQL: connections in the asyncpg pool
``command_timeout``       60         PostgreSQL: seconds a statement may run
========================  =========  =======================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from dmem import InvalidArgumentError, ProviderOptions, redact_url

__all__ = ["PostgresConfig", "SQLiteConfig", "parse_postgres", "parse_sqlite", "valid_table"]

# A plain SQL identifier, short enough that "<table>_tags_by_value" stays under PostgreSQL's
# 63-byte limit; table names are interpolated into DDL, so nothing else is accepted.
_TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


def valid_table(name: str) -> str:
    """Return ``name`` if it is an acceptable table name; else InvalidArgumentError."""
    if not isinstance(name, str) or _TABLE_RE.fullmatch(name) is None:
        raise InvalidArgumentError(
            f"table must match [A-Za-z_][A-Za-z0-9_]{{0,39}} (a plain SQL identifier), got {name!r}"
        )
    return name


@dataclass(frozen=True)
class SQLiteConfig:
    path: Path | None  # None: a private in-memory database
    namespace: str
    table: str
    timeout: float
    busy_timeout: float
    synchronous: str

    @property
    def display(self) -> str:
        return "sqlite://" if self.path is None else f"sqlite:///{self.path}"


@dataclass(frozen=True)
class PostgresConfig:
    dsn: str
    namespace: str
    table: str
    timeout: float
    command_timeout: float
    pool_size: int

    @property
    def display(self) -> str:
        return redact_url(self.dsn)


def parse_sqlite(url: str, options: dict[str, Any]) -> SQLiteConfig:
    """``sqlite://`` (in memory), ``sqlite:///relative.db``, ``sqlite:////abs/path.db``."""
    rest = url.split("://", 1)[1]
    if rest and not rest.startswith("/"):
        raise InvalidArgumentError(
            f"SQLite URLs have no host: use sqlite:///relative/path.db or sqlite:////abs/path.db, "
            f"got {redact_url(url)!r}"
        )
    raw = unquote(rest[1:]) if rest else ""
    path = None if raw in ("", ":memory:") else Path(raw).expanduser()
    opts = ProviderOptions(options, provider="sqlite")
    synchronous = opts.str("synchronous", "normal").lower()
    if synchronous not in ("full", "normal"):
        raise InvalidArgumentError(
            f"sqlite option 'synchronous' must be full or normal, got {synchronous!r}"
        )
    config = SQLiteConfig(
        path=path,
        namespace=opts.namespace(),
        table=valid_table(opts.str("table", "dmem_kv")),
        timeout=opts.float("timeout", 10.0),
        busy_timeout=opts.float("busy_timeout", 30.0),
        synchronous=synchronous,
    )
    opts.done()
    return config


def parse_postgres(url: str, options: dict[str, Any]) -> PostgresConfig:
    """``postgresql://user:password@host:port/db`` (also ``postgres://``, ``postgresql+asyncpg://``)."""
    scheme, rest = url.split("://", 1)
    if scheme.lower() not in ("postgresql", "postgres", "postgresql+asyncpg"):
        raise InvalidArgumentError(f"not a PostgreSQL URL: {redact_url(url)!r}")
    opts = ProviderOptions(options, provider="postgresql")
    config = PostgresConfig(
        dsn=f"postgresql://{rest}",
        namespace=opts.namespace(),
        table=valid_table(opts.str("table", "dmem_kv")),
        timeout=opts.float("timeout", 10.0),
        command_timeout=opts.float("command_timeout", 60.0),
        pool_size=opts.int("pool_size", 10, minimum=1),
    )
    opts.done()
    return config
