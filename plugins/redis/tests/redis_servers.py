"""Throwaway redis-server processes for the tests: standalone, TLS, cluster, sentinel.

Each server runs from ``redis-server`` on PATH, on a free loopback port, in its own
temporary directory, without persistence unless a test asks for it. Nothing here
fakes Redis: every test talks to a real server.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from dmem_conformance import testkit
from dmem_conformance.testkit import wait_until as wait_for

__all__ = [
    "PASSWORD",
    "RedisServer",
    "free_port",
    "have_redis",
    "require_redis",
    "start_cluster",
    "wait_for",
]

PASSWORD = "pw-Sekrit-7f3a9"  # asserted absent from every repr, message and health report


def have_redis() -> str | None:
    """None when redis-server and redis-cli are usable, else the reason they are not."""
    for binary in ("redis-server", "redis-cli"):
        if shutil.which(binary) is None:
            return f"{binary} is not on PATH"
    return None


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def require_redis() -> None:
    """Skip (or fail under DMEM_REQUIRE_BACKENDS=1) when redis-server is not installed."""
    from dmem_conformance._env import backend_missing

    reason = have_redis()
    if reason:
        backend_missing(reason)


def free_port(*, cluster: bool = False) -> int:
    """A free loopback port; for a cluster node also its bus port (+10000), so <= 55535."""
    if not cluster:
        return testkit.free_port()
    for _ in range(200):
        port = random.randint(20000, 55535)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisServer(testkit.ServerProcess):
    """One redis-server process that tests may stop and start again on the same port.

    The test kit's ServerProcess starts it (ready when it answers PING), stops it (SIGTERM,
    then SIGKILL after 10 s) and kills it; a server that does not start raises
    ``testkit.ServerFailed`` (a RuntimeError) with the end of its log."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        extra: Sequence[str] = (),
        tls: bool = False,
        password: str | None = None,
    ) -> None:
        super().__init__(
            ["redis-server"],
            port=port,
            ready=lambda server: self.cli("PING", timeout=2.0) == "PONG",
            startup_timeout=10.0,
            workdir=workdir,
        )
        self.extra = list(extra)
        self.tls = tls
        self.password = password
        self.socket_path: Path | None = None
        self.log = self.log_path = workdir / "redis.log"

    def args(self) -> list[str]:
        args = ["redis-server", "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        args += ["--save", "", "--logfile", str(self.log), "--daemonize", "no"]
        if "--appendonly" not in self.extra:
            args += ["--appendonly", "no"]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port)]
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        return args + self.extra

    def cli(self, *command: str, timeout: float = 5.0) -> str:
        args = ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port)]
        if self.tls:
            args += ["--tls", "--cacert", str(self.workdir / "ca.pem")]
        if self.password:
            args += ["--no-auth-warning", "-a", self.password]
        result = subprocess.run(
            [*args, *command], capture_output=True, text=True, timeout=timeout, check=False
        )
        return result.stdout.strip()

    def start(self) -> RedisServer:
        self.argv = self.args()  # read at each start: a test may change them in between
        super().start()
        return self

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        auth = f":{self.password}@" if self.password else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"


def start_cluster(
    workdir: Path, primaries: int = 3, *, persistent: bool = False
) -> list[RedisServer]:
    """Start ``primaries`` cluster-enabled servers and join them into one cluster."""
    aof = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else []
    servers: list[RedisServer] = []
    try:
        for i in range(primaries):
            node_dir = workdir / f"node{i}"
            server = RedisServer(
                node_dir,
                port=free_port(cluster=True),
                extra=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node_dir / "nodes.conf"),
                    "--cluster-node-timeout",
                    "2000",
                    *aof,
                ],
            )
            server.start()
            servers.append(server)
        addresses = [f"127.0.0.1:{s.port}" for s in servers]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )
        wait_for(
            lambda: all("cluster_state:ok" in s.cli("CLUSTER", "INFO") for s in servers),
            30.0,
            "cluster_state:ok",
        )
    except BaseException:
        for server in servers:
            with contextlib.suppress(Exception):
                server.stop()
        raise
    return servers
