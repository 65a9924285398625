"""Throwaway redis-server processes for the tests: standalone, TLS, cluster, sentinel.

Each server runs from ``redis-server`` on PATH, on a free loopback port, in its own
temporary directory, without persistence unless a test asks for it. Nothing here
fakes Redis: every test talks to a real server.

:class:`SentinelSet` is a whole Sentinel set-up: a primary, a replica and three
``redis-server --sentinel`` processes (quorum 2) that can fail the primary over.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from dmem_conformance import testkit
from dmem_conformance.testkit import wait_until as wait_for

__all__ = [
    "PASSWORD",
    "RedisServer",
    "SERVICE",
    "SentinelServer",
    "SentinelSet",
    "free_port",
    "have_redis",
    "require_redis",
    "start_cluster",
    "wait_for",
]

PASSWORD = "pw-Sekrit-7f3a9"  # asserted absent from every repr, message and health report
SERVICE = "mymaster"  # the service name SentinelSet's sentinels monitor


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
    workdir: Path, primaries: int = 3, *, persistent: bool = False, extra: Sequence[str] = ()
) -> list[RedisServer]:
    """Start ``primaries`` cluster-enabled servers and join them into one cluster;
    ``extra``: more redis-server arguments for every node."""
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
                    *extra,
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


class SentinelServer(RedisServer):
    """One ``redis-server CONF --sentinel`` process; its config file is its own (a sentinel
    rewrites it as it learns the set-up), made from ``config`` lines at every start."""

    def __init__(self, workdir: Path, config: Sequence[str]) -> None:
        super().__init__(workdir)
        self.config = list(config)
        self.conf_path = workdir / "sentinel.conf"

    def args(self) -> list[str]:
        if not self.conf_path.exists():
            head = [f"port {self.port}", "bind 127.0.0.1", f"dir {self.workdir}"]
            head.append(f"logfile {self.log}")
            self.conf_path.write_text("\n".join([*head, *self.config]) + "\n")
        return ["redis-server", str(self.conf_path), "--sentinel"]

    def master(self, service: str) -> dict[str, str]:
        """``SENTINEL MASTER service`` as a dict ({} when the sentinel does not answer)."""
        lines = self.cli("SENTINEL", "MASTER", service, timeout=2.0).splitlines()
        return dict(zip(lines[::2], lines[1::2], strict=False))

    def primary_port(self, service: str) -> int | None:
        """The port this sentinel gives for the primary of ``service`` (None: no answer)."""
        reply = self.cli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", service, timeout=2.0).split()
        return int(reply[1]) if len(reply) == 2 and reply[1].isdigit() else None


def _role(port: int) -> str:
    """``ROLE`` of the data node on ``port``: "master", "slave", or "" (no answer)."""
    args = ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--no-auth-warning"]
    with contextlib.suppress(subprocess.TimeoutExpired):
        result = subprocess.run(
            [*args, "-a", PASSWORD, "ROLE"], capture_output=True, text=True, timeout=2.0
        )
        return result.stdout.split("\n", 1)[0].strip()
    return ""


class SentinelSet:
    """A primary, a replica of it and ``sentinels`` sentinels (quorum 2), on free loopback
    ports, each process in its own directory under ``workdir``.

    Both data nodes take :data:`PASSWORD` (``requirepass`` and ``masterauth``, so either may
    replicate from the other after a failover); the sentinels take none. ``down_after_ms``
    is how long the primary must not answer before a sentinel thinks it down (failover
    tests: 1000; a set-up that must never fail over by accident: longer).
    ``failover_timeout_ms`` bounds one failover attempt (5000 keeps a retry quick).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        sentinels: int = 3,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        service: str = SERVICE,
    ) -> None:
        self.workdir = workdir
        self.service = service
        # A replica's full sync starts at once (Redis waits 5 s by default for more replicas).
        auth = ["--masterauth", PASSWORD, "--repl-diskless-sync-delay", "0"]
        self.primary = RedisServer(workdir / "node-a", password=PASSWORD, extra=auth)
        self.replica = RedisServer(
            workdir / "node-b",
            password=PASSWORD,
            extra=[*auth, "--replicaof", "127.0.0.1", str(self.primary.port)],
        )
        self.nodes = [self.primary, self.replica]
        config = [
            f"sentinel monitor {service} 127.0.0.1 {self.primary.port} {quorum}",
            f"sentinel auth-pass {service} {PASSWORD}",
            f"sentinel down-after-milliseconds {service} {down_after_ms}",
            f"sentinel failover-timeout {service} {failover_timeout_ms}",
            f"sentinel parallel-syncs {service} 1",
        ]
        self.sentinels = [
            SentinelServer(workdir / f"sentinel-{i}", config) for i in range(sentinels)
        ]

    @property
    def url(self) -> str:
        """``redis+sentinel://`` URL of the set-up: every sentinel, the service, db 0."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://:{PASSWORD}@{hosts}/{self.service}/0"

    def start(self, timeout: float = 30.0) -> SentinelSet:
        """Start every process and wait until each sentinel knows the primary, the replica
        and the other sentinels (a failover needs all of that); stop all on failure."""
        try:
            self.primary.start()
            self.replica.start()
            wait_for(
                lambda: "master_link_status:up" in self.replica.cli("INFO", "replication"),
                timeout,
                "the replica to sync with the primary",
            )
            for sentinel in self.sentinels:
                sentinel.start()
            wait_for(self.ready, timeout, "every sentinel to know the whole set-up")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in [*self.sentinels, *self.nodes]:
            with contextlib.suppress(Exception):
                server.stop()

    def ready(self) -> bool:
        """Every sentinel sees the primary up, the replica, and all other sentinels."""
        others = str(len(self.sentinels) - 1)
        for sentinel in self.sentinels:
            state = sentinel.master(self.service)
            if state.get("flags") != "master" or state.get("num-slaves") != "1":
                return False
            if state.get("num-other-sentinels") != others:
                return False
        return True

    def node(self, port: int) -> RedisServer:
        """The data node listening on ``port``."""
        for node in self.nodes:
            if node.port == port:
                return node
        raise LookupError(f"no data node on port {port}")

    def primary_port(self) -> int | None:
        """The primary's port as the majority of the sentinels gives it (None: no majority)."""
        ports = [s.primary_port(self.service) for s in self.sentinels]
        for port in set(ports):
            if port is not None and ports.count(port) * 2 > len(ports):
                return port
        return None

    def replica_port(self) -> int | None:
        """The port of the data node that is not the primary the sentinels give."""
        primary = self.primary_port()
        for node in self.nodes:
            if node.port != primary:
                return node.port
        return None

    def current_primary(self) -> RedisServer:
        port = self.primary_port()
        if port is None:
            raise LookupError("the sentinels agree on no primary")
        return self.node(port)

    def kill_primary(self) -> RedisServer:
        """SIGKILL the current primary (no shutdown, no save): the crashed host."""
        primary = self.current_primary()
        primary.kill()
        return primary

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> float:
        """Wait until every sentinel gives a primary other than ``old_port`` and that node
        answers ``ROLE`` as a master; returns the time.monotonic() it was first seen so."""

        def promoted() -> bool:
            ports = {s.primary_port(self.service) for s in self.sentinels}
            if len(ports) != 1:
                return False
            port = ports.pop()
            return port is not None and port != old_port and _role(port) == "master"

        wait_for(promoted, timeout, f"the sentinels to promote a new primary of {self.service}")
        return time.monotonic()
