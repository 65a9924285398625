"""A throwaway PostgreSQL server for tests and benchmarks: initdb + pg_ctl on a free port.

``initdb`` refuses to run as root, so as root the cluster is created and run as the
``postgres`` user (or ``nobody``) through ``runuser``, in a temp dir owned by it.
fsync is off: the data is thrown away.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresServer", "PostgresUnavailable", "free_port"]


class PostgresUnavailable(RuntimeError):
    """initdb/pg_ctl are missing or the server did not start."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    # Debian/Ubuntu keep the server binaries off PATH.
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if candidates:
        return candidates[-1]
    raise PostgresUnavailable(f"{name} not found on PATH (install the PostgreSQL server)")


@dataclass
class PostgresServer:
    root: Path
    port: int
    pg_ctl: str
    prefix: list[str]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @classmethod
    def start(cls) -> PostgresServer:
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        root = Path(tempfile.mkdtemp(prefix="dmem-pg-"))
        prefix: list[str] = []
        if os.geteuid() == 0:
            user = _unprivileged_user()
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
            prefix = ["runuser", "-u", user, "--"]
        server = cls(root, free_port(), pg_ctl, prefix)
        try:
            server._run(
                initdb,
                "-D",
                str(server.datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            )
            server.launch()
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return server

    def _run(self, *argv: str) -> None:
        result = subprocess.run(
            [*self.prefix, *argv], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"{Path(argv[0]).name} failed ({result.returncode}): {result.stderr[-2000:]}"
            )

    def launch(self) -> None:
        """Start (or restart after :meth:`halt`) the server on the same port and data."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            self.pg_ctl, "-D", str(self.datadir), "-o", options,
            "-l", str(self.root / "log"), "-w", "-t", "60", "start",
        )  # fmt: skip

    def halt(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data (to test a restart). ``fast`` flushes the WAL
        (commits are asynchronous here); ``immediate`` is a crash."""
        self._run(self.pg_ctl, "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def stop(self) -> None:
        with contextlib.suppress(PostgresUnavailable, OSError, subprocess.SubprocessError):
            self.halt("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresUnavailable("running as root and no 'postgres' or 'nobody' user for initdb")
