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


def _split_hosts(hostlist: str, default_port: int, shown: str) -> tuple[tuple[str, int], ...]:
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):  # [ipv6]:port
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise InvalidArgumentError(f"bad port in Redis URL {shown}") from None
        if not host or not 0 < port < 65536:
            raise InvalidArgumentError(f"bad host:port {item!r} in Redis URL {shown}")
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


def parse_config(url: str, options: dict[str, Any]) -> RedisConfig:
    """Validate ``url`` and ``options``; raise InvalidArgumentError naming what is wrong."""
    shown = redact_url(url)
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise InvalidArgumentError(f"not a Redis URL: {shown}")
    opts = ProviderOptions(options, provider="redis")
    namespace = opts.str("namespace", "")
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
    ssl_options: dict[str, Any] = {}
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_ca_path"):
        value = opts.optional_str(name)
        if value is not None:
            ssl_options[name] = value
    reqs = opts.str("ssl_cert_reqs", "required").lower()
    if reqs not in _CERT_REQS:
        raise InvalidArgumentError(
            "redis option 'ssl_cert_reqs' must be required, optional or none"
        )
    check_hostname = opts.bool("ssl_check_hostname", reqs == "required")
    if ssl_options and not tls:
        raise InvalidArgumentError(f"ssl_* options need a TLS URL (rediss://...), got {shown}")
    if tls:
        ssl_options["ssl_cert_reqs"] = _CERT_REQS[reqs]
        ssl_options["ssl_check_hostname"] = check_hostname

    parts = urlsplit(url)
    user, password, hostlist = _userinfo(parts.netloc)
    user = opt_user if opt_user is not None else user
    password = opt_password if opt_password is not None else password
    path = unquote(parts.path)

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
    if scheme.endswith("+cluster"):
        buckets = opts.int("buckets", 64, minimum=1)
        if path.strip("/") not in ("", "0"):
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
        segments = [s for s in path.split("/") if s]
        service = opts.optional_str("service_name") or (segments[0] if segments else "")
        if not service:
            raise InvalidArgumentError(
                "Redis Sentinel URL needs a service name: "
                f"redis+sentinel://host:port/SERVICE ({shown})"
            )
        db = opts.int("db", int(segments[1]) if len(segments) > 1 else 0, minimum=0)
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
        if not path:
            raise InvalidArgumentError(f"unix:// URL needs a socket path: {shown}")
        config = RedisConfig(
            mode="standalone", socket_path=path, db=opts.int("db", 0, minimum=0), **common
        )
    else:
        segment = path.strip("/")
        try:
            db_default = int(segment) if segment else 0
        except ValueError:
            raise InvalidArgumentError(f"database in Redis URL must be a number: {shown}") from None
        db = opts.int("db", db_default, minimum=0)
        config = RedisConfig(
            mode="standalone",
            hosts=_split_hosts(hostlist or "localhost", 6379, shown),
            db=db,
            **common,
        )
    opts.done()
    return config
