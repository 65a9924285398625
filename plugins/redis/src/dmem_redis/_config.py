"""From a dmem Redis URL and its options to a configured redis-py asyncio client.

URL forms (the query string has already been turned into options by ``dmem.open``):

* ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://`` (TLS)
* ``unix://[[user]:password@]/path/to/redis.sock`` (``db`` option)
* ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``
  (``rediss+sentinel://`` for TLS to the sentinels and the primary)
* ``redis+cluster://[[user]:password@]host:port[,host:port...]`` (``rediss+cluster://``)

Parsing does no I/O: connecting is ``initialize()``'s job. The password is kept
out of every repr and message: only :func:`dmem.redact_url` output is shown.

``timeout`` (seconds, default 10) is the longest any call waits on an unresponsive server,
connecting and redis-py's retries included, before it raises ProviderUnavailableError. It
is a budget that :func:`split_timeout` divides into the static timeouts redis-py applies
(so no call pays for a timer of its own): the backoff sleeps between attempts come off
first, the rest is shared equally by the ``retries + 1`` attempts (``retries + 2`` shares
with ``max_connections``: one is the longest wait for a free connection), and each
attempt's share is split between connecting (``connect_timeout``, by default half of it)
and waiting for the reply (the rest). With Sentinel, half of each attempt goes to asking
the sentinels, in equal parts. A combination that leaves no time for a reply is an
InvalidArgumentError.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from dmem import InvalidArgumentError, ProviderOptions, redact_url

__all__ = ["DEFAULT_TIMEOUT", "SCHEMES", "RedisConfig", "Timeouts", "parse_config", "split_timeout"]

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
    timeout: float = 10.0  # the whole call's budget; the fields below are its parts
    connect_timeout: float = 2.475  # one connection attempt (socket connect)
    socket_timeout: float = 2.475  # waiting for one reply
    pool_timeout: float = 0.0  # waiting for a free connection (max_connections, standalone)
    sentinel_timeout: float = 0.0  # connect and reply timeout of each sentinel
    retries: int = 1
    retry_backoff: float = 0.05
    retry_backoff_max: float = 0.5
    max_connections: int = 0  # 0: unbounded pool (redis-py's default)
    buckets: int = 64
    ssl_options: dict[str, Any] = field(default_factory=dict, repr=False)
    sentinel_username: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    client_name: str | None = None
    max_value_bytes: int | None = None  # the option; None: the server's proto-max-bulk-len
    share_connection: bool = True  # False: a client (and pool) of the store's own
    pipelining: bool = True  # concurrent callers' commands batched while busy (_pipelining)

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


DEFAULT_TIMEOUT = 10.0
_MIN_REPLY_WAIT = 0.001  # below a millisecond no reply can arrive: a setting error


@dataclass(frozen=True)
class Timeouts:
    """The parts of ``timeout`` that redis-py applies (seconds; 0.0 where not used)."""

    connect: float  # socket_connect_timeout: one connection attempt
    reply: float  # socket_timeout: waiting for one reply (or for one send to be taken)
    pool: float  # a blocking pool's wait for a free connection
    sentinel: float  # connect and reply timeout of each sentinel


def backoff_total(retries: int, base: float, cap: float) -> float:
    """The sleeps between ``retries + 1`` attempts: redis-py's ExponentialBackoff sleeps
    ``min(cap, base * 2**n)`` after failure ``n``, and not after the last one."""
    total, step = 0.0, base
    for done in range(retries):
        step *= 2
        if step >= cap:  # every later sleep is the cap too (and 2**n may overflow a float)
            return total + cap * (retries - done)
        total += step
    return total


def split_timeout(
    timeout: float,
    *,
    retries: int,
    backoff: float,
    backoff_max: float,
    connect_timeout: float | None = None,
    pool_wait: bool = False,
    sentinels: int = 0,
) -> Timeouts:
    """Divide the call budget ``timeout`` into redis-py's static timeouts.

    Against an unresponsive server a call makes at most ``retries + 1`` attempts (the
    client's retry loops are not nested, see ``_client._Retry``), with the backoff sleeps
    between them. An attempt waits at most once to connect and once for a reply: a server
    that does not answer fails the attempt at the first wait. So the sleeps plus
    ``retries + 1`` times (connect + reply), plus the pool wait when there is one, is at
    most ``timeout``. Sentinel: an attempt that connects first asks the sentinels for the
    primary, one after another, each with its own connect and reply wait; they get half of
    the attempt, the primary the other half.
    """
    sleeps = backoff_total(retries, backoff, backoff_max)
    if sleeps >= timeout:
        raise InvalidArgumentError(
            f"redis option 'timeout' ({timeout:g} s) bounds a whole call, the sleeps between "
            f"its retries included, and those alone take {sleeps:g} s (retries={retries}, "
            f"retry_backoff={backoff:g}, retry_backoff_max={backoff_max:g}): raise timeout "
            "or lower the others"
        )
    shares = retries + 1 + (1 if pool_wait else 0)
    attempt = (timeout - sleeps) / shares
    primary = attempt / 2 if sentinels else attempt
    sentinel = attempt / 4 / sentinels if sentinels else 0.0
    connect = primary / 2 if connect_timeout is None else connect_timeout
    reply = primary - connect
    if reply < _MIN_REPLY_WAIT:
        raise InvalidArgumentError(
            f"redis option 'connect_timeout' ({connect:g} s) leaves no time to wait for a "
            f"reply: 'timeout' ({timeout:g} s) gives each of the {retries + 1} attempts "
            f"{primary:g} s to connect and get the reply; lower connect_timeout or raise "
            "timeout"
        )
    return Timeouts(
        connect=connect, reply=reply, pool=attempt if pool_wait else 0.0, sentinel=sentinel
    )


def _digits(text: str) -> int | None:
    """``int(text)`` for plain ASCII digits only (``int()`` also takes '+1', ' 1', '1_0')."""
    return int(text) if text.isascii() and text.isdigit() else None


def _url_db(segment: str, shown: str, *, opaque: bool = False) -> int:
    """The database number of a URL path segment ('' is 0)."""
    if not segment:
        return 0
    db = _digits(segment)
    if db is None:
        got = "***" if opaque else repr(segment)
        raise InvalidArgumentError(f"database in Redis URL must be a number, got {got}: {shown}")
    if db > _MAX_DB:
        raise InvalidArgumentError(f"database in Redis URL must be 0 to {_MAX_DB}: {shown}")
    return db


def _db(opts: ProviderOptions, default: int) -> int:
    db = opts.int("db", default, minimum=0)
    if db > _MAX_DB:
        raise InvalidArgumentError(f"redis option 'db' must be 0 to {_MAX_DB}, got {db}")
    return db


def _split_hosts(
    hostlist: str, default_port: int, shown: str, *, opaque: bool = False
) -> tuple[tuple[str, int], ...]:
    """``host[:port][,host[:port]...]``; messages quote ``shown``, and an item only where it
    cannot be part of a password (not ``opaque``)."""
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        item = item.strip()
        if not item:
            continue
        quoted = "***" if opaque else repr(item)
        if item.startswith("["):  # [ipv6]:port
            host, _, rest = item[1:].partition("]")
            if rest and not rest.startswith(":"):
                raise InvalidArgumentError(f"bad host {quoted} in Redis URL {shown}")
            port_text = rest[1:]
        else:
            host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
            if ":" in host:
                raise InvalidArgumentError(
                    f"bad host {quoted} in Redis URL {shown}: IPv6 addresses go in brackets, "
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
                f"bad port in {quoted} in Redis URL {shown} (a number from 1 to 65535)"
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


# Options whose value is any text, so an '@' in it may be legitimate ("p@ss", "me@corp").
_TEXT_OPTIONS = frozenset(
    {
        "namespace",
        "client_name",
        "username",
        "password",
        "service_name",
        "sentinel_username",
        "sentinel_password",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
    }
)
_OPTIONS = _TEXT_OPTIONS | {
    "timeout",
    "connect_timeout",
    "retries",
    "retry_backoff",
    "retry_backoff_max",
    "max_connections",
    "buckets",
    "db",
    "ssl_cert_reqs",
    "ssl_check_hostname",
    "max_value_bytes",
    "share_connection",
    "pipelining",
}


def _cut_at_query(options: dict[str, Any], scheme: str) -> InvalidArgumentError | None:
    """The error for options that an unencoded '?' in the user name or password made.

    dmem.open splits the URL at its first '?'; with one in the password, the rest of the
    password, its '@' and the host part become query options, and the message of any check
    on them (an unknown option's name, a number option's value) would quote the password.
    The '@' that ended the user part then sits in an option's name or value. Where that
    option could not be valid anyway (an unknown one, or one that takes no free text), or
    another option is unknown, the error names none of them.
    """
    hint = (
        "if the user name or password holds a '/', '?', '#' or '@', percent-encode it "
        "(%2F, %3F, %23, %40)"
    )
    has_at = False
    for name, value in options.items():
        in_value = isinstance(value, str) and "@" in value
        if "@" in name or (in_value and name not in _TEXT_OPTIONS):
            return InvalidArgumentError(
                f"Redis URL {scheme}://*** has an '@' in its query options, so the URL was "
                f"probably cut short at a '?' in the user name or password: {hint}"
            )
        has_at = has_at or in_value
    unknown = [name for name in options if name not in _OPTIONS]
    if unknown and has_at:
        return InvalidArgumentError(
            f"unknown redis option(s) in {scheme}://*** (not named: with an '@' in an option "
            f"value they may be a piece of a password that a '?' cut out of the URL); {hint}"
        )
    return None


def _shown_url(url: str) -> str:
    """``redact_url(url)``, also where that misses the password: urlsplit drops tabs and
    newlines from a URL, and redact_url then cannot find the user part it parsed in the text
    as written. Here the user part is cut from the text itself (up to the last '@' before
    the first '/', '?' or '#')."""
    scheme, sep, rest = url.partition("://")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    userinfo, at, hostport = rest[:end].rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return redact_url(url)
    user = userinfo.split(":", 1)[0]
    return redact_url(f"{scheme}://{user}:***@{hostport}{rest[end:]}")


def _urlsplit(url: str) -> SplitResult | None:
    """``urlsplit(url)``, or None where it fails. Its ValueError quotes the netloc, password
    and all, so it must not even be the ``__context__`` of the error raised instead (``from
    None`` only hides the context from tracebacks; it stays on the exception)."""
    try:
        return urlsplit(url)
    except ValueError:
        return None


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
    cut = _cut_at_query(options, scheme)
    if cut is not None:
        raise cut
    shown = _shown_url(url)
    if scheme not in SCHEMES:
        raise InvalidArgumentError(f"not a Redis URL: {shown}")
    parts = _urlsplit(url)
    if parts is None:
        raise InvalidArgumentError(
            f"bad Redis URL {scheme}://***: an unbalanced '[' or ']', or a character that "
            "Unicode normalization turns into '/', '?', '#', '@' or ':' (percent-encode it)"
        )
    if "@" in url and "@" not in parts.netloc:
        raise _misplaced_at(url, scheme)
    if "@" in parts.path or "@" in parts.fragment:
        raise _misplaced_at(url, scheme)
    # No '@' in the host part while a text option's value holds one ("p@ss", or a password
    # cut at '?' whose rest starts with a text option's name, "?password=..."): if the host
    # part or the path is malformed, it may be pieces of a password, so the errors about
    # them show none of it. A well-formed one is shown as usual.
    opaque = "@" not in parts.netloc and any(
        isinstance(value, str) and "@" in value for value in options.values()
    )
    errors_shown = f"{scheme}://***" if opaque else shown
    opts = ProviderOptions(options, provider="redis")
    namespace = opts.namespace()
    timeout = opts.float("timeout", DEFAULT_TIMEOUT)
    connect_timeout: float | None = None
    if "connect_timeout" in options:
        connect_timeout = opts.float("connect_timeout", 0.0)
    retries = opts.int("retries", 1, minimum=0)
    retry_backoff = opts.float("retry_backoff", 0.05)
    retry_backoff_max = opts.float("retry_backoff_max", 0.5)
    max_connections = opts.int("max_connections", 0, minimum=0)
    max_value_bytes = opts.max_value_bytes()
    share_connection = opts.bool("share_connection", True)
    pipelining = opts.bool("pipelining", True)

    def timeouts(*, pool_wait: bool = False, sentinels: int = 0) -> dict[str, Any]:
        parts = split_timeout(
            timeout,
            retries=retries,
            backoff=retry_backoff,
            backoff_max=retry_backoff_max,
            connect_timeout=connect_timeout,
            pool_wait=pool_wait,
            sentinels=sentinels,
        )
        return {
            "connect_timeout": parts.connect,
            "socket_timeout": parts.reply,
            "pool_timeout": parts.pool,
            "sentinel_timeout": parts.sentinel,
        }

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
        "retries": retries,
        "retry_backoff": retry_backoff,
        "retry_backoff_max": retry_backoff_max,
        "max_connections": max_connections,
        "ssl_options": ssl_options,
        "client_name": client_name,
        "max_value_bytes": max_value_bytes,
        "share_connection": share_connection,
        "pipelining": pipelining,
    }
    if cluster:
        buckets = opts.int("buckets", 64, minimum=1)
        if segments not in ([], ["0"]):
            raise InvalidArgumentError(f"Redis Cluster has only database 0: {errors_shown}")
        if buckets > 16384:
            raise InvalidArgumentError("redis option 'buckets' must be at most 16384")
        config = RedisConfig(
            mode="cluster",
            hosts=_split_hosts(hostlist, 6379, errors_shown, opaque=opaque),
            buckets=buckets,
            **timeouts(),
            **common,
        )
    elif scheme.endswith("+sentinel"):
        if len(segments) > 2:
            raise InvalidArgumentError(
                f"Redis Sentinel URLs are redis+sentinel://host:port/SERVICE/db, got {errors_shown}"
            )
        service = opts.optional_str("service_name") or (segments[0] if segments else "")
        if not service:
            raise InvalidArgumentError(
                "Redis Sentinel URL needs a service name: "
                f"redis+sentinel://host:port/SERVICE ({errors_shown})"
            )
        db = _db(
            opts, _url_db(segments[1], errors_shown, opaque=opaque) if len(segments) > 1 else 0
        )
        sentinel_hosts = _split_hosts(hostlist, 26379, errors_shown, opaque=opaque)
        config = RedisConfig(
            mode="sentinel",
            hosts=sentinel_hosts,
            service_name=service,
            db=db,
            sentinel_username=opts.optional_str("sentinel_username"),
            sentinel_password=opts.optional_str("sentinel_password"),
            **timeouts(sentinels=len(sentinel_hosts)),
            **common,
        )
    elif scheme == "unix":
        path = unquote(parts.path)
        if not path:
            raise InvalidArgumentError(f"unix:// URL needs a socket path: {errors_shown}")
        config = RedisConfig(
            mode="standalone",
            socket_path=path,
            db=_db(opts, 0),
            **timeouts(pool_wait=max_connections > 0),
            **common,
        )
    else:
        db_default = _url_db("/".join(segments), errors_shown, opaque=opaque)
        hosts = _split_hosts(hostlist or "localhost", 6379, errors_shown, opaque=opaque)
        if len(hosts) > 1:
            raise InvalidArgumentError(
                f"a {scheme}:// URL takes one host; several hosts are redis+sentinel:// or "
                f"redis+cluster:// URLs: {errors_shown}"
            )
        config = RedisConfig(
            mode="standalone",
            hosts=hosts,
            db=_db(opts, db_default),
            **timeouts(pool_wait=max_connections > 0),
            **common,
        )
    opts.done()
    return config
