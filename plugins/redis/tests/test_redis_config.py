"""Redis URL and option parsing: every bad input is InvalidArgumentError before any I/O.

No server is needed: ``dmem.create_provider`` only parses (connecting is ``initialize()``'s
job), and every host here is unreachable anyway.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import dmem
import pytest
from dmem_redis._config import RedisConfig, backoff_total, parse_config
from hypothesis import given, settings
from hypothesis import strategies as st

SECRET = "s3cr3t-pw"


def _reject(url: str, options: dict[str, Any] | None = None) -> dmem.InvalidArgumentError:
    with pytest.raises(dmem.InvalidArgumentError) as info:
        dmem.create_provider(url, dict(options or {}))
    assert SECRET not in str(info.value), info.value
    return info.value


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # Sentinel's /SERVICE/db: the db must be a number in range, nothing may follow it.
        ("redis+sentinel://h:26379/svc/abc", "database in Redis URL must be a number"),
        ("redis+sentinel://h:26379/svc/-1", "database in Redis URL must be a number"),
        ("redis+sentinel://h:26379/svc/1_0", "database in Redis URL must be a number"),
        ("redis+sentinel://h:26379/svc/2147483648", "0 to 2147483647"),
        ("redis+sentinel://h:26379/svc/0/extra", "redis+sentinel://host:port/SERVICE/db"),
        # Standalone /db.
        ("redis://h/abc", "database in Redis URL must be a number"),
        ("redis://h/-1", "database in Redis URL must be a number"),
        ("redis://h/+1", "database in Redis URL must be a number"),
        ("redis://h/ 1", "database in Redis URL must be a number"),
        ("redis://h/1_0", "database in Redis URL must be a number"),
        ("redis://h/\u0663", "database in Redis URL must be a number"),  # Arabic-Indic 3
        ("redis://h/99999999999999999999", "0 to 2147483647"),
        ("redis://h/0/1", "database in Redis URL must be a number"),
        ("redis+cluster://h:7000/abc", "database 0"),
        # Ports: ASCII digits only, 1 to 65535.
        ("redis://h:notaport", "bad port"),
        ("redis://h:6_379", "bad port"),
        ("redis://h:+6379", "bad port"),
        ("redis://h: 6379", "bad port"),
        ("redis://h:\u0666\u0663\u0667\u0669", "bad port"),
        ("redis://h:0", "bad port"),
        ("redis://h:65536", "bad port"),
        ("redis+cluster://a:7000,b:x", "bad port"),
        ("redis+sentinel://a:26379,b:-1/svc", "bad port"),
        # Hosts.
        ("redis://[::1", "Redis URL"),
        ("redis://::1]:6379", "Redis URL"),
        ("redis://[::1]x:6379", "bad host"),
        ("redis://::1", "IPv6"),
        ("redis://h\uff03x/0", "Redis URL"),  # urlsplit's NFKC check
        ("redis://a,b/0", "one host"),
        ("redis+cluster://", "names no host"),
    ],
)
def test_bad_redis_urls(url: str, message: str) -> None:
    error = _reject(url)
    assert re.search(re.escape(message), str(error)), str(error)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"db": "-1"}, "redis option 'db'"),
        ({"db": "2147483648"}, "0 to 2147483647"),
        ({"db": 2**40}, "0 to 2147483647"),
        ({"db": "x"}, "redis option 'db'"),
    ],
)
@pytest.mark.parametrize("url", ["redis://h", "unix:///run/redis.sock", "redis+sentinel://h/svc"])
def test_bad_db_option(url: str, options: dict[str, Any], message: str) -> None:
    assert message in str(_reject(url, options))


def test_good_urls_still_parse() -> None:
    config = parse_config("redis+sentinel://a:1,[::1]:2/my%2Fsvc/7", {})
    assert (config.hosts, config.service_name, config.db) == (
        (("a", 1), ("::1", 2)),
        "my/svc",
        7,
    )
    assert parse_config("redis+sentinel://a/svc/", {}).db == 0
    assert parse_config("redis://h/2147483647", {}).db == 2147483647
    assert parse_config("redis://[::1]:6380/2", {}).hosts == (("::1", 6380),)
    assert parse_config("redis://", {}).hosts == (("localhost", 6379),)
    assert parse_config("redis://h/", {}).db == 0
    assert parse_config("redis+cluster://a:7000,b:7001/0", {}).hosts == (("a", 7000), ("b", 7001))
    assert parse_config("unix:///run/redis.sock", {"db": "3"}).db == 3
    assert parse_config("redis://h/1", {"db": 4}).db == 4  # the option overrides the URL


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@h:bad/0",
        f"redis://:{SECRET}@h/notadb",
        f"redis+sentinel://:{SECRET}@h/svc/abc",
        f"redis+cluster://:{SECRET}@a:7000/3",
        # An unencoded '/', '#' or '?' in the password ends the host part early: the URL's
        # shape is wrong, and its message must not show any part of the password.
        f"redis://:ab/{SECRET}@h/0",
        f"redis://:ab#{SECRET}@h/0",
        f"redis://:ab?{SECRET}@h/0",
        f"redis://:ab?x={SECRET}@h/0",
        f"redis://u:a@b/{SECRET}@h/0",
        f"redis+sentinel://:ab/{SECRET}@h/svc",
        f"redis://:{SECRET}\uff03@h/0",  # urlsplit's own error quotes the whole netloc
        f"redis://:{SECRET}@[::1/0",
        # An unencoded '?' in the password: the rest becomes query options, the '@' that
        # ended the user part with them (in an unknown option, a number option, or a text
        # option's value, when what is left of the host part is malformed).
        f"redis://u:{SECRET}?x=1@h/0",
        f"redis://u:ab?{SECRET}=1@h/0",
        f"redis://u:ab?x=1&{SECRET}=2&password=zz@h/0",
        f"redis://u:ab?timeout={SECRET}@h/0",
        f"redis://u:ab?db=1{SECRET}@h/0",
        f"redis://u:{SECRET}?password=zz@h/0",
        f"redis+sentinel://h/{SECRET}/{SECRET}?password=zz@h",
        f"redis+cluster://h/{SECRET}?namespace=zz@h",
        f"redis://u:a@b?{SECRET}=1@h/0",  # an '@' in the password before its '?'
    ],
)
def test_messages_never_show_the_password(url: str) -> None:
    error = _reject(url)  # asserts the password is not in the message
    # Nor in an exception behind it (`raise ... from None` only hides one from tracebacks).
    assert error.__context__ is None and error.__cause__ is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # The URL ends at '?': netloc ":ab<secret>", and option x holds "<secret>@h/0".
        (f"redis://:ab{SECRET}?x={SECRET}@h/0", "cut short at a '?'"),
        (f"redis://:{SECRET}", "empty host"),
        (f"redis+cluster://a:1,:{SECRET}", "empty host"),
        (f"redis+sentinel://:{SECRET}/svc", "empty host"),
    ],
)
def test_a_password_without_its_at_is_not_shown(url: str, message: str) -> None:
    assert message in str(_reject(url))


def test_unencoded_password_characters_are_explained() -> None:
    error = _reject(f"redis://:ab/{SECRET}@h/0")
    assert "percent-encode" in str(error)
    assert "'@'" in str(error)


@pytest.mark.parametrize("namespace", ["a\ud800", "\udfff", "a\x00b", 5])
def test_bad_namespace(namespace: object) -> None:
    # Was: a plain UnicodeEncodeError when the store was created.
    assert "namespace" in str(_reject("redis://h/0", {"namespace": namespace}))


def test_namespace_accepted() -> None:
    assert parse_config("redis://h/0", {"namespace": "é:x y/z"}).namespace == "é:x y/z"


_MODES = ["redis://h/0", "rediss://h/0", "unix:///run/redis.sock", "redis+sentinel://h/svc"]
_MODES += ["redis+cluster://h:7000"]


@pytest.mark.parametrize(
    "value", ["abc", "", "1.5", 1.5, "-1", "0", "4194303", 4194303, True, "5 MiB", [5242880]]
)
@pytest.mark.parametrize("url", _MODES)
def test_bad_max_value_bytes(url: str, value: object) -> None:
    # An int of at least 4 MiB (the contract's promise on every backend), in every mode.
    assert "max_value_bytes" in str(_reject(url, {"max_value_bytes": value}))


@pytest.mark.parametrize("url", _MODES)
def test_max_value_bytes_option(url: str) -> None:
    assert parse_config(url, {}).max_value_bytes is None  # the server's, read at open
    assert parse_config(url, {"max_value_bytes": None}).max_value_bytes is None
    assert parse_config(url, {"max_value_bytes": "5242880"}).max_value_bytes == 5242880
    assert parse_config(url, {"max_value_bytes": 4 * 1024 * 1024}).max_value_bytes == 4194304
    provider = dmem.create_provider(url + "?max_value_bytes=5242880", {})
    assert provider.max_value_bytes == 5242880
    assert provider.atomic_batches is (not url.startswith("redis+cluster"))


@pytest.mark.parametrize(
    "options",
    [
        {"ssl_cert_reqs": "none"},
        {"ssl_cert_reqs": "required"},
        {"ssl_check_hostname": "false"},
        {"ssl_check_hostname": True},
        {"ssl_ca_certs": "/x.pem"},
        {"ssl_ca_path": "/etc/ssl/certs"},
        {"ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem"},
    ],
)
@pytest.mark.parametrize(
    "url", ["redis://h/0", "unix:///run/redis.sock", "redis+sentinel://h/svc", "redis+cluster://h"]
)
def test_ssl_options_need_tls(url: str, options: dict[str, Any]) -> None:
    error = _reject(url, options)
    assert "ssl_* options need a TLS URL" in str(error)
    assert all(name in str(error) for name in options)


def test_ssl_options_with_tls() -> None:
    config = parse_config(
        "rediss://h/0", {"ssl_cert_reqs": "optional", "ssl_check_hostname": "yes"}
    )
    assert config.tls
    assert config.ssl_options["ssl_check_hostname"] is True
    config = parse_config("rediss+sentinel://h/svc", {"ssl_ca_path": "/etc/ssl/certs"})
    assert config.ssl_options["ssl_ca_path"] == "/etc/ssl/certs"
    config = parse_config("rediss+cluster://h:7000", {"ssl_ca_certs": "/ca.pem"})
    assert config.ssl_options["ssl_ca_certs"] == "/ca.pem"


def test_ssl_ca_path_rejected_for_cluster() -> None:
    # redis-py's asyncio RedisCluster has no ssl_ca_path: it used to fail at open with a
    # ProviderError wrapping a TypeError.
    error = _reject("rediss+cluster://h:7000", {"ssl_ca_path": "/etc/ssl/certs"})
    assert "ssl_ca_path" in str(error) and "ssl_ca_certs" in str(error)
    assert "rediss+cluster://" in str(error)


# --- timeout: one budget for the whole call -----------------------------------------------------
def _worst_case(config: RedisConfig) -> float:
    """The longest a call can wait on an unresponsive server with these settings: the sleeps
    between attempts, the wait for a free pooled connection, and per attempt one connect and
    one reply wait (with Sentinel also one of each per sentinel asked first)."""
    sentinels = len(config.hosts) if config.mode == "sentinel" else 0
    per_attempt = (
        config.connect_timeout + config.socket_timeout + sentinels * 2 * config.sentinel_timeout
    )
    sleeps = backoff_total(config.retries, config.retry_backoff, config.retry_backoff_max)
    return sleeps + config.pool_timeout + (config.retries + 1) * per_attempt


def test_default_timeout_is_ten_seconds_for_the_whole_call() -> None:
    config = parse_config("redis://h/0", {})
    assert config.timeout == 10.0
    # Two attempts (retries=1) and one 0.1 s backoff: 4.95 s an attempt, half to connect.
    assert config.connect_timeout == pytest.approx(2.475)
    assert config.socket_timeout == pytest.approx(2.475)
    assert _worst_case(config) == pytest.approx(10.0)
    pooled = parse_config("redis://h/0", {"max_connections": 4})
    assert pooled.pool_timeout == pytest.approx(3.3)
    assert _worst_case(pooled) == pytest.approx(10.0)
    sentinel = parse_config("redis+sentinel://a,b/svc", {})
    assert sentinel.socket_timeout == pytest.approx(4.95 / 4)
    assert sentinel.sentinel_timeout == pytest.approx(4.95 / 8)
    assert _worst_case(sentinel) == pytest.approx(10.0)


def test_backoff_total_matches_redis_py() -> None:
    from redis.backoff import ExponentialBackoff

    for retries, base, cap in [(0, 0.05, 0.5), (1, 0.05, 0.5), (5, 0.05, 0.5), (3, 0.3, 0.2)]:
        backoff = ExponentialBackoff(cap=cap, base=base)
        expected = sum(backoff.compute(n) for n in range(1, retries + 1))
        assert backoff_total(retries, base, cap) == pytest.approx(expected)
    assert backoff_total(10**9, 0.05, 0.5) == pytest.approx(0.1 + 0.2 + 0.4 + 0.5 * (10**9 - 3))


_URLS = ["redis://h/0", "unix:///r.sock", "redis+cluster://a,b", "redis+sentinel://a,b,c/svc"]


@settings(max_examples=300, deadline=None)
@given(
    url=st.sampled_from(_URLS),
    timeout=st.floats(0.01, 120),
    retries=st.integers(0, 12),
    backoff=st.floats(0.001, 2),
    backoff_max=st.floats(0.001, 5),
    connect_timeout=st.none() | st.floats(0.001, 60),
    max_connections=st.sampled_from([0, 0, 3]),
)
def test_every_accepted_combination_fits_in_timeout(
    url: str,
    timeout: float,
    retries: int,
    backoff: float,
    backoff_max: float,
    connect_timeout: float | None,
    max_connections: int,
) -> None:
    options: dict[str, Any] = {
        "timeout": timeout,
        "retries": retries,
        "retry_backoff": backoff,
        "retry_backoff_max": backoff_max,
        "max_connections": max_connections,
    }
    if connect_timeout is not None:
        options["connect_timeout"] = connect_timeout
    try:
        config = parse_config(url, options)
    except dmem.InvalidArgumentError as exc:
        error = str(exc)
    else:
        error = ""
    if error:  # rejected: it says which setting does not fit
        assert "timeout" in error
        return
    assert config.socket_timeout > 0 and config.connect_timeout > 0
    if connect_timeout is not None:
        assert config.connect_timeout == connect_timeout
    assert _worst_case(config) <= timeout * (1 + 1e-9)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        # Two attempts share 10 - 0.1 s: 4.95 s each, so connecting may take less than that.
        ({"connect_timeout": 4.95}, "connect_timeout"),
        ({"connect_timeout": 60}, "leaves no time to wait for a reply"),
        ({"timeout": 1, "connect_timeout": 1}, "connect_timeout"),
        # The sleeps alone (0.1 + 0.2 + 0.4 + 0.5 * 7 = 4.2 s) exceed the whole budget.
        ({"timeout": 4, "retries": 10}, "sleeps between its retries"),
        ({"timeout": 0.05, "retry_backoff": 0.05}, "retry_backoff=0.05"),
    ],
)
def test_timeouts_that_cannot_fit_are_rejected(options: dict[str, Any], message: str) -> None:
    assert message in str(_reject("redis://h/0", options))


def test_connect_timeout_override_leaves_the_rest_to_the_reply() -> None:
    config = parse_config("redis://h/0", {"timeout": 6, "connect_timeout": 1})
    assert config.connect_timeout == 1
    assert config.socket_timeout == pytest.approx(2.95 - 1)


async def test_retry_loops_do_not_nest() -> None:
    """An inner retry loop (redis-py reconnecting inside a command's attempt) makes one
    attempt; the outer one does the retrying, so ``retries + 1`` attempts in all."""
    from dmem_redis._client import _retry
    from redis.exceptions import ConnectionError as RedisConnectionError

    retry = _retry(parse_config("redis://h/0", {"retries": 2, "retry_backoff": 0.001}))
    attempts = 0

    async def connect() -> None:
        nonlocal attempts
        attempts += 1
        raise RedisConnectionError("refused")

    async def command() -> None:
        await retry.call_with_retry(connect, lambda error: asyncio.sleep(0))

    with pytest.raises(RedisConnectionError):
        await retry.call_with_retry(command, lambda error: asyncio.sleep(0))
    assert attempts == 3  # redis-py's own Retry: 3 x 3
    attempts = 0
    with pytest.raises(RedisConnectionError):
        await retry.call_with_retry(connect, lambda error: asyncio.sleep(0))
    assert attempts == 3  # alone, a loop still retries
