"""Fixtures: real redis-server processes on free loopback ports (or DMEM_TEST_REDIS_URL).

* ``redis_url``: a password-protected standalone server (session), or DMEM_TEST_REDIS_URL;
* ``redis_unix_url``: the same server through its unix socket;
* ``restartable_redis``: a server of the test's own that it may kill and restart (AOF on,
  so data survives the restart and the test can check what the crash left);
* ``redis_tls``: a TLS-only server with a CA and certificate made by trustme in the test;
* ``redis_cluster_url``: a 3-primary Redis Cluster bootstrapped with ``redis-cli --cluster``;
* ``redis_sentinel_url``: a primary watched by one ``redis-server --sentinel``;
* ``redis_sentinel_set``: a primary, a replica and three sentinels (session; slow to think
  the primary down, so it is never failed over by accident);
* ``failover_sentinel_set``: the same set-up of the test's own, quick to fail over (the
  primary is thought down after 1 s), for tests that kill the primary or fail it over.

A backend that cannot be started skips the test, or fails it under DMEM_REQUIRE_BACKENDS=1.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dmem_conformance._env import backend_missing

sys.path.insert(0, str(Path(__file__).parent))

from redis_servers import (
    PASSWORD,
    RedisServer,
    SentinelSet,
    free_port,
    require_redis,
    start_cluster,
    wait_for,
)


def _started(server: RedisServer) -> RedisServer:
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        backend_missing(f"cannot start redis-server: {exc}")
    return server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer | None]:
    """The session's standalone server (None when DMEM_TEST_REDIS_URL is used)."""
    if os.environ.get("DMEM_TEST_REDIS_URL"):
        yield None
        return
    require_redis()
    workdir = tmp_path_factory.mktemp("redis")
    # Unix socket paths are limited to ~100 bytes; keep it short.
    sock = Path("/tmp") / f"dmem-redis-{os.getpid()}-{free_port()}.sock"
    server = _started(
        RedisServer(
            workdir,
            password=PASSWORD,
            extra=["--unixsocket", str(sock), "--unixsocketperm", "700"],
        )
    )
    server.socket_path = sock
    yield server
    server.stop()
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer | None) -> str:
    if redis_server is None:
        return os.environ["DMEM_TEST_REDIS_URL"]
    url: str = redis_server.url
    return url


@pytest.fixture(scope="session")
def redis_unix_url(redis_server: RedisServer | None) -> str:
    if redis_server is None:
        pytest.skip("unix socket test needs the fixture's own server")
    return f"unix://:{PASSWORD}@{redis_server.socket_path}"


@pytest.fixture
def restartable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server this test owns: kill() and start() it at will (same port, AOF kept)."""
    require_redis()
    server = _started(
        RedisServer(
            tmp_path / "restartable",
            extra=["--appendonly", "yes", "--appendfsync", "always"],
        )
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    """(url, options) of a TLS-only server whose certificates are generated here."""
    require_redis()
    trustme = pytest.importorskip("trustme")
    workdir = tmp_path_factory.mktemp("redis-tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    cert.private_key_pem.write_to_path(str(workdir / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(workdir / "cert.pem"))
    server = _started(
        RedisServer(
            workdir,
            tls=True,
            extra=[
                "--tls-cert-file",
                str(workdir / "cert.pem"),
                "--tls-key-file",
                str(workdir / "key.pem"),
                "--tls-ca-cert-file",
                str(workdir / "ca.pem"),
                "--tls-auth-clients",
                "no",
            ],
        )
    )
    yield server.url, {"ssl_ca_certs": str(workdir / "ca.pem")}
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("DMEM_TEST_REDIS_CLUSTER_URL"):
        yield os.environ["DMEM_TEST_REDIS_CLUSTER_URL"]
        return
    require_redis()
    try:
        servers = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    except Exception as exc:  # noqa: BLE001 - any bootstrap failure means "no cluster here"
        backend_missing(f"cannot bootstrap a Redis Cluster: {exc}")
    yield "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in servers[:2])
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def redis_sentinel_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_redis()
    workdir = tmp_path_factory.mktemp("redis-sentinel")
    primary = _started(RedisServer(workdir / "primary", password=PASSWORD))
    port = free_port()
    conf = workdir / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor dmemsvc 127.0.0.1 {primary.port} 1\n"
        f"sentinel auth-pass dmemsvc {PASSWORD}\n"
        "sentinel down-after-milliseconds dmemsvc 5000\n"
    )
    sentinel = RedisServer(workdir / "sentinel", port=port)
    sentinel.args = lambda: ["redis-server", str(conf), "--sentinel"]  # type: ignore[method-assign]
    _started(sentinel)
    wait_for(
        lambda: str(primary.port) in sentinel.cli("SENTINEL", "get-master-addr-by-name", "dmemsvc"),
        10.0,
        "sentinel to know the primary",
    )
    yield f"redis+sentinel://:{PASSWORD}@127.0.0.1:{port}/dmemsvc/0"
    sentinel.stop()
    primary.stop()


def _sentinel_set(workdir: Path, *, down_after_ms: int) -> SentinelSet:
    require_redis()
    setup = SentinelSet(workdir, down_after_ms=down_after_ms)
    try:
        setup.start()
    except (RuntimeError, OSError) as exc:  # ServerFailed, TimeoutError of a wait
        backend_missing(f"cannot start a Redis Sentinel set-up: {exc}")
    return setup


@pytest.fixture(scope="session")
def redis_sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """One primary, one replica, three sentinels for the session; ``.url`` names them all.
    The sentinels wait 10 s before they think the primary down: a busy machine must not
    set off a failover under the tests that use this set-up."""
    setup = _sentinel_set(tmp_path_factory.mktemp("redis-sentinel-set"), down_after_ms=10_000)
    yield setup
    setup.stop()


@pytest.fixture
def failover_sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    """A set-up of this test's own (down-after-milliseconds 1000, failover-timeout 5000):
    the test may kill its primary or fail it over."""
    setup = _sentinel_set(tmp_path / "sentinel-set", down_after_ms=1000)
    yield setup
    setup.stop()
