"""URL and option parsing for ``sqlite://`` and ``postgresql://``; no I/O happens here.

Options (URL query parameters or keyword arguments of ``dmem.open``):

========================  =========  =======================================================
option                    default    meaning
========================  =========  =======================================================
``namespace``             ``""``     the store's namespace (a column of the primary key)
``table``                 dmem_kv    table name; ``<table>_tags`` and ``<table>_meta`` too
``timeout``               10         PostgreSQL: longest wait of a call; SQLite: of health()
``busy_timeout``          30         SQLite: seconds to wait for another writer's lock
``synchronous``           normal     SQLite: ``normal`` (WAL: safe on crash) or ``full``
``pool_size``             10         PostgreSQL: connections in the asyncpg pool
``command_timeout``       timeout    PostgreSQL: seconds a statement may run
``share_connection``      true       false: this store's own connection (SQLite: thread),
                                     not the one the process's stores on it share
``pipelining``            true       PostgreSQL: reads and plain sets that arrive while
                                     the pool is busy go out together, as one statement
                                     (false: each call its own statement)
========================  =========  =======================================================
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
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
    create: bool = True  # False: a missing file is StoreNotFoundError, not created
    max_value_bytes: int | None = None  # larger encoded values: InvalidValueError
    share_connection: bool = True  # False: a worker thread and connection of its own

    @property
    def display(self) -> str:
        return "sqlite://" if self.path is None else f"sqlite:///{self.path}"


@dataclass(frozen=True)
class PostgresConfig:
    """What ``asyncpg.connect`` is given, as keyword arguments (never a DSN: asyncpg's DSN
    errors quote pieces of the URL, password included). ``repr`` never shows the password.

    ``hosts`` empty: asyncpg's default (``PGHOST``, else its list of socket directories and
    localhost). A ``None`` port: ``PGPORT``, else 5432.
    """

    display: str  # the URL with the password as ***: the only form of it a message shows
    hosts: tuple[str, ...]
    ports: tuple[int | None, ...]
    user: str | None
    password: str | None = field(repr=False)
    database: str | None
    namespace: str
    table: str
    timeout: float
    command_timeout: float
    pool_size: int
    max_value_bytes: int | None = None  # larger encoded values: InvalidValueError
    share_connection: bool = True  # False: a pool of its own
    pipelining: bool = True  # False: no coalesced reads or sets (_pgbatch), each call alone

    def connect_kwargs(self) -> dict[str, Any]:
        """host/port/user/password/database for ``asyncpg.connect`` (None: asyncpg's default)."""
        host: str | list[str] | None = None
        port: int | list[int] | None = None
        if len(self.hosts) == 1:
            host, port = self.hosts[0], self.ports[0]
        elif self.hosts:
            host = list(self.hosts)
            if any(p is not None for p in self.ports):
                # asyncpg takes one port for all hosts or one per host: fill in the default
                # the way it does for a host without one in a DSN (a PGPORT list of another
                # length gives a shorter list, which asyncpg refuses as it always did).
                default = _default_ports(len(self.hosts))
                port = [d if p is None else p for p, d in zip(self.ports, default, strict=False)]
        return {
            "host": host,
            "port": port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
        }


def _default_ports(count: int) -> list[int]:
    """asyncpg's port for hosts listed without one: ``PGPORT`` (one, or one per host), else
    5432."""
    spec = os.environ.get("PGPORT")
    if not spec:
        return [5432] * count
    ports = [int(p) for p in spec.split(",")]
    return ports * count if len(ports) == 1 else ports


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
        create=opts.bool("create", True),
        max_value_bytes=opts.max_value_bytes(),
        share_connection=opts.bool("share_connection", True),
    )
    opts.done()
    return config


_PG_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
_ENCODE_HINT = (
    "percent-encode '/', '?', '#' and '@' in the user name and password (%2F, %3F, %23, %40)"
)
# [ipv6] or [ipv6]:port, the port possibly empty (asyncpg's default then).
_BRACKETED = re.compile(r"\[([^\[\]]+)\](?::([^:]*))?")


def _misplaced_at(scheme: str, after: str) -> InvalidArgumentError:
    # Everything before the last '@' may be (part of) a password: show none of it.
    return InvalidArgumentError(
        f"PostgreSQL URL {scheme}://***@{after} has an '@' after its host part: "
        f"{_ENCODE_HINT}, and an '@' in the database name (%40)"
    )


def _text(value: str, what: str, where: str) -> str:
    """``value`` if it can go into the startup message: no NUL, encodable as UTF-8. The
    message never shows it: in a mangled URL it may be a piece of the password."""
    if "\x00" in value or (not value.isascii() and not _utf8(value)):
        raise InvalidArgumentError(
            f"the {what} in PostgreSQL URL {where} holds NUL or a lone surrogate"
        )
    return value


def _utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _hosts(hostlist: str, where: str) -> tuple[tuple[str, ...], tuple[int | None, ...]]:
    """``host[:port][,host[:port]...]`` as asyncpg reads it (hosts and ports percent-decoded,
    ``[ipv6]``, a percent-encoded socket directory such as ``%2Ftmp``); stricter about ports
    (digits, 1 to 65535) and junk after ``]``. Messages quote only ``where``."""
    if not hostlist:
        return (), ()
    hosts: list[str] = []
    ports: list[int | None] = []
    for item in hostlist.split(","):
        if item.startswith("["):
            match = _BRACKETED.fullmatch(item)
            if match is None:
                raise InvalidArgumentError(
                    f"bad IPv6 host in PostgreSQL URL {where}: use [address] or [address]:port"
                )
            host, port_text = match.group(1), match.group(2) or ""
        else:
            host, _, port_text = item.partition(":")
            if ":" in port_text:
                raise InvalidArgumentError(
                    f"bad host in PostgreSQL URL {where}: IPv6 addresses go in brackets, "
                    "e.g. postgresql://[::1]:5432/db"
                )
        if not host:
            raise InvalidArgumentError(f"PostgreSQL URL {where} has an empty host name")
        port: int | None = None
        if port_text:
            digits = unquote(port_text)
            port = int(digits) if digits.isascii() and digits.isdigit() else 0
            if not 0 < port < 65536:
                raise InvalidArgumentError(
                    f"bad port in PostgreSQL URL {where}: a number from 1 to 65535 after "
                    f"the host's ':'; {_ENCODE_HINT}"
                )
        hosts.append(_text(unquote(host), "host", where))
        ports.append(port)
    return tuple(hosts), tuple(ports)


def parse_postgres(url: str, options: dict[str, Any]) -> PostgresConfig:
    """``postgresql://[user[:password]@][host[:port][,...]][/database]`` (also ``postgres://``,
    ``postgresql+asyncpg://``) into asyncpg's keyword arguments.

    The URL is parsed here, not by asyncpg, so that no message quotes a piece of the
    password: an unencoded '/', '?', '#' or '@' in it moves the parts around (a '?' even
    moves its rest into ``options``, cut off by ``dmem.open``), and every such shape is
    refused naming only ``scheme://***`` and what follows the last '@'.
    """
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme not in _PG_SCHEMES:
        raise InvalidArgumentError(f"not a PostgreSQL URL: {scheme}://***")
    # dmem.open cut the URL at a '?' of the password: the '@' that ends the password is in
    # an option. No option name has one, nor a valid value of any but the namespace.
    for name, value in options.items():
        if "@" in name or (name != "namespace" and isinstance(value, str) and "@" in value):
            raise _misplaced_at(scheme, "...")
    # A namespace with an '@' is a valid one (an e-mail address), or the cut-off rest of such
    # a password: then a bad option or URL must not be quoted, so say only where to look.
    doubtful = "@" in str(options.get("namespace", ""))
    config = None
    try:
        config = _parse_postgres(scheme, rest, options)
    except InvalidArgumentError:
        if not doubtful:
            raise
    if config is None:  # raised here, outside the except: no __context__ quoting the URL
        raise InvalidArgumentError(
            f"bad PostgreSQL URL {scheme}://*** or option (the namespace has an '@': if the "
            f"password has a '?', {_ENCODE_HINT})"
        )
    return config


def _parse_postgres(scheme: str, rest: str, options: dict[str, Any]) -> PostgresConfig:
    hidden = f"{scheme}://***"
    if any(c in rest for c in "\t\r\n"):
        # urllib drops these wherever they are, so dmem.redact_url would see another URL
        # than this one and could miss its password (and asyncpg, which dropped them too,
        # never used them): they must be percent-encoded.
        raise InvalidArgumentError(
            f"PostgreSQL URL {hidden} holds a tab or line break: percent-encode it (%09, %0D, %0A)"
        )
    # The host part ends at the first '/' or '#'; an '@' after it means that one of them
    # was inside the password (or user name).
    end = min((i for i in (rest.find("/"), rest.find("#")) if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in tail:
        raise _misplaced_at(scheme, tail.rpartition("@")[2])
    path = tail.partition("#")[0]  # a fragment means nothing to PostgreSQL (asyncpg ignored it)
    userinfo, at, hostlist = authority.rpartition("@")
    # Without an '@' the host part may be "user:password" with the host left out: then a
    # message shows none of it.
    where = f"{hidden}@{hostlist}{path}" if at else hidden
    user_text, colon, password_text = userinfo.partition(":")
    hosts, ports = _hosts(hostlist, where)
    user = _text(unquote(user_text), "user name", where) if user_text else None
    password = _text(unquote(password_text), "password", where) if password_text else None
    database = _text(unquote(path[1:]), "database name", where) if path else None
    shown_user = f"{user_text}{':***' if colon else ''}@" if at else ""
    opts = ProviderOptions(options, provider="postgresql")
    timeout = opts.float("timeout", 10.0)
    config = PostgresConfig(
        display=f"postgresql://{shown_user}{hostlist}{path}",
        hosts=hosts,
        ports=ports,
        user=user,
        password=password,
        database=database,
        namespace=opts.namespace(),
        table=valid_table(opts.str("table", "dmem_kv")),
        timeout=timeout,
        # The statement's own limit: by default the same as every other wait, so that a
        # server that stops answering fails every call within `timeout`; an override for
        # statements that run long on purpose (very large batches).
        command_timeout=opts.float("command_timeout", timeout),
        pool_size=opts.int("pool_size", 10, minimum=1),
        max_value_bytes=opts.max_value_bytes(),
        share_connection=opts.bool("share_connection", True),
        pipelining=opts.bool("pipelining", True),
    )
    opts.done()
    return config
