"""From a dmem Redis URL and its options to a configured redis-py asyncio client.

URL forms (the query string has already been turned into options by ``dmem.open``):

* ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://`` (TLS)
* ``unix://[[user]:password@]/path/to/redis.sock`` (``db`` option)
* ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``
  (``rediss+sentinel://`` for TLS to the sentinels and the primary)
* ``redis+cluster://[[user]:password@]host:port[,host:port...]`` (``rediss+cluster://``)

Parsing does no I/O: connecting is ``initialize()``'s job. The password is kept
out of every repr and message: only :func:`dmem.redact_url` output is shown.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from dmem import InvalidArgumentError, ProviderOptions, redact_url

__all__ = ["SCHEMES", "RedisConfig", "parse_config"]

SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
)

_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}


@dataclass(frozen=True)
class RedisConfig:
    """Everything needed to build the client; ``repr`` never shows a secret."""

    mode: str  # "standalone" | "sentinel" | "cluster"
    url: str  # the URL as given (secret inside): never shown, only used by from_url
    shown_url: str  # redacted, safe for messages
    namespace: str
    hosts: tuple[tuple[str, int], ...] = ()
    service_name: str = ""
    socket_path: str = ""
    db: int = 0
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    timeout: float = 5.0
    connect_timeout: float = 5.0
    retries: int = 1
    retry_backoff: float = 0.05
    retry_backoff_max: float = 0.5
    max_connections: int = 0  # 0: unbounded pool (redis-py's default)
    buckets: int = 64
    ssl_options: dict[str, Any] = field(default_factory=dict, repr=False)
    sentinel_username: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    client_name: str | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in a message (scrubbed from backend errors)."""
        return tuple(s for s in (self.password, self.sentinel_password) if s)

    def __repr__(self) -> str:
        return f"RedisConfig(mode={self.mode!r}, url={self.shown_url!r}, ns={self.namespace!r})"


_MAX_DB = 2**31 - 1  # Redis takes a database index as a C int
_SSL_OPTIONS = (
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
)


def _digits(text: str) -> int | None:
    """``int(text)`` for plain ASCII digits only (``int()`` also takes '+1', ' 1', '1_0')."""
    return int(text) if text.isascii() and text.isdigit() else None


def _url_db(segment: str, shown: str) -> int:
    """The database number of a URL path segment ('' is 0)."""
    if not segment:
        return 0
    db = _digits(segment)
    if db is None:
        raise InvalidArgumentError(
            f"database in Redis URL must be a number, got {segment!r}: {shown}"
        )
    if db > _MAX_DB:
        raise InvalidArgumentError(f"database in Redis URL must be 0 to {_MAX_DB}: {shown}")
    return db


def _db(opts: ProviderOptions, default: int) -> int:
    db = opts.int("db", default, minimum=0)
    if db > _MAX_DB:
        raise InvalidArgumentError(f"redis option 'db' must be 0 to {_MAX_DB}, got {db}")
    return db


def _split_hosts(hostlist: str, default_port: int, shown: str) -> tuple[tuple[str, int], ...]:
    """``host[:port][,host[:port]...]``; messages quote ``shown``, never a raw item that could
    be part of a password."""
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):  # [ipv6]:port
            host, _, rest = item[1:].partition("]")
            if rest and not rest.startswith(":"):
                raise InvalidArgumentError(f"bad host {item!r} in Redis URL {shown}")
            port_text = rest[1:]
        else:
            host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
            if ":" in host:
                raise InvalidArgumentError(
                    f"bad host {item!r} in Redis URL {shown}: IPv6 addresses go in brackets, "
                    "e.g. redis://[::1]:6379"
                )
        if not host:
            # "redis://:secret" (no '@'): what looks like a port may be a password.
            scheme = shown.split("://", 1)[0]
            raise InvalidArgumentError(
                f"Redis URL {scheme}://*** has an empty host name; a password goes before "
                "an '@' (redis://:PASSWORD@host), with '/', '?', '#' and '@' in it "
                "percent-encoded (%2F, %3F, %23, %40)"
            )
        port = _digits(port_text) if port_text else default_port
        if port is None or not 0 < port < 65536:
            raise InvalidArgumentError(
                f"bad port in {item!r} in Redis URL {shown} (a number from 1 to 65535)"
            )
        hosts.append((host, port))
    if not hosts:
        raise InvalidArgumentError(f"Redis URL {shown} names no host")
    return tuple(hosts)


def _userinfo(netloc: str) -> tuple[str | None, str | None, str]:
    if "@" not in netloc:
        return None, None, netloc
    userinfo, _, hostlist = netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if sep else None), hostlist


def _misplaced_at(url: str, scheme: str) -> InvalidArgumentError:
    # Everything before the last '@' may be (part of) a password: show none of it.
    shown = f"{scheme}://***@{redact_url(url.rpartition('@')[2])}"
    return InvalidArgumentError(
        f"Redis URL has an '@' after the host part ({shown}): percent-encode '/', '?', '#' "
        "and '@' in the user name and password (%2F, %3F, %23, %40)"
    )


def parse_config(url: str, options: dict[str, Any]) -> RedisConfig:
    """Validate ``url`` and ``options``; raise InvalidArgumentError naming what is wrong."""
    scheme = url.split("://", 1)[0].lower()
    if any("@" in name for name in options):
        # dmem.open cut the URL at a '?' that was part of the password.
        raise _misplaced_at(url + "?@", scheme)
    shown = redact_url(url)
    if scheme not in SCHEMES:
        raise InvalidArgumentError(f"not a Redis URL: {shown}")
    try:
        parts = urlsplit(url)
    except ValueError:  # its text may quote the password
        raise InvalidArgumentError(
            f"bad Redis URL {scheme}://***: an unbalanced '[' or ']', or a character that "
            "Unicode normalization turns into '/', '?', '#', '@' or ':' (percent-encode it)"
        ) from None
    if "@" in url and "@" not in parts.netloc:
        raise _misplaced_at(url, scheme)
    if "@" in parts.path or "@" in parts.fragment:
        raise _misplaced_at(url, scheme)
    opts = ProviderOptions(options, provider="redis")
    namespace = opts.namespace()
    timeout = opts.float("timeout", 5.0)
    connect_timeout = opts.float("connect_timeout", timeout)
    retries = opts.int("retries", 1, minimum=0)
    retry_backoff = opts.float("retry_backoff", 0.05)
    retry_backoff_max = opts.float("retry_backoff_max", 0.5)
    max_connections = opts.int("max_connections", 0, minimum=0)
    client_name = opts.optional_str("client_name")
    opt_user = opts.optional_str("username")
    opt_password = opts.optional_str("password")
    tls = scheme.startswith("rediss")
    cluster = scheme.endswith("+cluster")
    ssl_given = [name for name in _SSL_OPTIONS if name in options]
    if ssl_given and not tls:
        raise InvalidArgumentError(
            f"ssl_* options need a TLS URL (rediss://, rediss+sentinel:// or rediss+cluster://): "
            f"got {', '.join(ssl_given)} with {shown}"
        )
    ssl_options: dict[str, Any] = {}
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_ca_path"):
        value = opts.optional_str(name)
        if value is not None:
            ssl_options[name] = value
    if cluster and "ssl_ca_path" in ssl_options:
        raise InvalidArgumentError(
            "redis option 'ssl_ca_path' is not supported with rediss+cluster:// (redis-py's "
            "cluster client has no such setting): put the CA certificates in one file and "
            "give it as ssl_ca_certs"
        )
    reqs = opts.str("ssl_cert_reqs", "required").lower()
    if reqs not in _CERT_REQS:
        raise InvalidArgumentError(
            "redis option 'ssl_cert_reqs' must be required, optional or none"
        )
    check_hostname = opts.bool("ssl_check_hostname", reqs == "required")
    if tls:
        ssl_options["ssl_cert_reqs"] = _CERT_REQS[reqs]
        ssl_options["ssl_check_hostname"] = check_hostname

    user, password, hostlist = _userinfo(parts.netloc)
    user = opt_user if opt_user is not None else user
    password = opt_password if opt_password is not None else password
    # Split before decoding, so a %2F inside a Sentinel service name stays in it.
    segments = [unquote(s) for s in parts.path.split("/")[1:]]
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash

    common: dict[str, Any] = {
        "url": url,
        "shown_url": shown,
        "namespace": namespace,
        "username": user,
        "password": password,
        "tls": tls,
        "timeout": timeout,
        "connect_timeout": connect_timeout,
        "retries": retries,
        "retry_backoff": retry_backoff,
        "retry_backoff_max": retry_backoff_max,
        "max_connections": max_connections,
        "ssl_options": ssl_options,
        "client_name": client_name,
    }
    if cluster:
        buckets = opts.int("buckets", 64, minimum=1)
        if segments not in ([], ["0"]):
            raise InvalidArgumentError(f"Redis Cluster has only database 0: {shown}")
        if buckets > 16384:
            raise InvalidArgumentError("redis option 'buckets' must be at most 16384")
        config = RedisConfig(
            mode="cluster",
            hosts=_split_hosts(hostlist, 6379, shown),
            buckets=buckets,
            **common,
        )
    elif scheme.endswith("+sentinel"):
        if len(segments) > 2:
            raise InvalidArgumentError(
                f"Redis Sentinel URLs are redis+sentinel://host:port/SERVICE/db, got {shown}"
            )
        service = opts.optional_str("service_name") or (segments[0] if segments else "")
        if not service:
            raise InvalidArgumentError(
                "Redis Sentinel URL needs a service name: "
                f"redis+sentinel://host:port/SERVICE ({shown})"
            )
        db = _db(opts, _url_db(segments[1], shown) if len(segments) > 1 else 0)
        config = RedisConfig(
            mode="sentinel",
            hosts=_split_hosts(hostlist, 26379, shown),
            service_name=service,
            db=db,
            sentinel_username=opts.optional_str("sentinel_username"),
            sentinel_password=opts.optional_str("sentinel_password"),
            **common,
        )
    elif scheme == "unix":
        path = unquote(parts.path)
        if not path:
            raise InvalidArgumentError(f"unix:// URL needs a socket path: {shown}")
        config = RedisConfig(mode="standalone", socket_path=path, db=_db(opts, 0), **common)
    else:
        db_default = _url_db("/".join(segments), shown)
        hosts = _split_hosts(hostlist or "localhost", 6379, shown)
        if len(hosts) > 1:
            raise InvalidArgumentError(
                f"a {scheme}:// URL takes one host; several hosts are redis+sentinel:// or "
                f"redis+cluster:// URLs: {shown}"
            )
        config = RedisConfig(mode="standalone", hosts=hosts, db=_db(opts, db_default), **common)
    opts.done()
    return config
