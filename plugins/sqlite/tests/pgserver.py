"""A throwaway PostgreSQL server for tests and benchmarks: initdb + pg_ctl on a free port.

``initdb`` refuses to run as root, so as root the cluster is created and run as the
``postgres`` user (or ``nobody``) through ``runuser``, in a temp dir owned by it.
fsync is off: the data is thrown away. ``start(password=...)`` makes TCP connections
authenticate with SCRAM (the superuser ``postgres`` has that password); the server's own
unix socket stays trusted. ``pause()``/``resume()`` stop and continue every process of the
cluster (SIGSTOP/SIGCONT), ``crash()`` SIGKILLs them all.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from dmem_conformance.testkit import free_port

__all__ = ["PostgresServer", "PostgresUnavailable", "free_port", "throwaway"]


class PostgresUnavailable(RuntimeError):
    """initdb/pg_ctl are missing or the server did not start."""


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
    password: str | None = None

    @property
    def url(self) -> str:
        secret = f":{quote(self.password, safe='')}" if self.password else ""
        return f"postgresql://postgres{secret}@127.0.0.1:{self.port}/postgres"

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @classmethod
    def start(cls, password: str | None = None) -> PostgresServer:
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        root = Path(tempfile.mkdtemp(prefix="dmem-pg-"))
        prefix: list[str] = []
        owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            owner = pwd.getpwnam(_unprivileged_user())
            os.chown(root, owner.pw_uid, owner.pw_gid)
            prefix = ["runuser", "-u", owner.pw_name, "--"]
        server = cls(root, free_port(), pg_ctl, prefix, password)
        auth = ["--auth=trust"]
        if password is not None:
            pwfile = root / "pwfile"
            pwfile.write_text(password + "\n", encoding="utf-8")
            if owner is not None:
                os.chown(pwfile, owner.pw_uid, owner.pw_gid)
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        try:
            server._run(
                initdb,
                "-D",
                str(server.datadir),
                "-U",
                "postgres",
                *auth,
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

    def postmaster_pid(self) -> int:
        """The running postmaster's pid (first line of ``postmaster.pid``)."""
        return int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])

    def processes(self) -> list[int]:
        """The postmaster and every process under it (backends, checkpointer, ...)."""
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue  # exited meanwhile
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            ppid = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        found, todo = [], [self.postmaster_pid()]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to every process of the cluster (its group, and each one found)."""
        pids = self.processes()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            # pg_ctl starts the postmaster in its own session, so its group holds the
            # backends too, including ones forked after the list above was read.
            if os.getpgid(pids[0]) == pids[0]:
                os.killpg(pids[0], signum)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def pause(self) -> None:
        """SIGSTOP the postmaster and all its backends: an unresponsive server (connections
        are still accepted into the listen backlog by the kernel, nothing answers)."""
        self.signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal_all(signal.SIGCONT)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def crash(self) -> None:
        """SIGKILL the postmaster and its backends (data kept; :meth:`launch` restarts)."""
        postmaster = self.postmaster_pid()
        self.signal_all(signal.SIGKILL)
        deadline = time.monotonic() + 10  # init reaps it: the postmaster is not our child
        while not _gone(postmaster) and time.monotonic() < deadline:
            time.sleep(0.01)


def _gone(pid: int) -> bool:
    """Exited and reaped: a new postmaster takes a zombie's pid in postmaster.pid for a live
    server and refuses to start."""
    return not Path(f"/proc/{pid}").exists()


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresUnavailable("running as root and no 'postgres' or 'nobody' user for initdb")


@contextlib.contextmanager
def throwaway() -> Iterator[PostgresServer]:
    """A server of the caller's own, which it may pause, crash or restart; resumed (if
    paused) and removed at the end. When none can start, the test skips (fails under
    ``DMEM_REQUIRE_BACKENDS=1``)."""
    try:
        started = PostgresServer.start()
    except (PostgresUnavailable, OSError) as exc:
        from dmem_conformance._env import backend_missing

        backend_missing(f"cannot start a throwaway PostgreSQL: {exc}")
    try:
        yield started
    finally:
        with contextlib.suppress(Exception):  # never leave a stopped cluster behind
            started.resume()  # (after a crash there is nothing to resume)
        started.stop()
