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
import time
from collections.abc import Callable, Sequence
from pathlib import Path

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
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for _ in range(200):
        port = random.randint(20000, 55535)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """One redis-server process that tests may stop and start again on the same port."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        extra: Sequence[str] = (),
        tls: bool = False,
        password: str | None = None,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra = list(extra)
        self.tls = tls
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None
        self.socket_path: Path | None = None
        self.log = workdir / "redis.log"

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

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_for(self._ready, 10.0, f"redis-server on port {self.port}")
        except RuntimeError:
            self.stop()
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"redis-server did not start:\n{log[-2000:]}") from None

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.process.returncode}")
        return self.cli("PING", timeout=2.0) == "PONG"

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-request, like a crashed host."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None

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
