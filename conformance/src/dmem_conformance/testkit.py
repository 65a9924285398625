"""A small test kit for plugin authors: ports, throwaway servers, the down twin of a URL.

What the project's own fixtures use for redis-server, PostgreSQL and Chroma, public::

    from dmem_conformance import testkit

    # conftest.py: a redis-server per session on a free loopback port, waited for, stopped
    redis_server = testkit.server_fixture(
        ["redis-server", "--port", "{port}", "--bind", "127.0.0.1", "--save", ""],
        name="redis_server",
    )

    class TestFoo(dmem_conformance.KVSuite):
        @pytest.fixture
        def store_factory(self, redis_server):
            return dmem_conformance.url_factory(f"foo://127.0.0.1:{redis_server.port}")

        @pytest.fixture
        def unreachable_store_factory(self, redis_server):
            # the twin your plugin declares (ProviderSpec.unreachable_url), which
            # ``dmem conformance URL`` uses too
            return testkit.unreachable_factory(f"foo://127.0.0.1:{redis_server.port}")

* :func:`free_port`, :func:`closed_port`, :func:`port_accepts`, :func:`wait_until`: loopback
  ports and polling. The pytest plugin also gives the fixtures ``dmem_free_port`` and
  ``dmem_closed_port``.
* :class:`ServerProcess`: start a command (``{port}`` in its arguments is replaced by its
  port), wait until the port accepts connections or a readiness probe passes, and on
  teardown terminate it and wait (kill after a grace period). A server that exits or never
  gets ready raises :class:`ServerFailed` with the tail of its output.
* :func:`server_fixture`: a pytest fixture of a started :class:`ServerProcess`; a server
  that cannot be started (binary missing, never ready) skips the tests, or fails them
  under ``DMEM_REQUIRE_BACKENDS=1`` (:func:`dmem_conformance.backend_missing`).
* :func:`unreachable_url`, :func:`unreachable_factory`: the URL of the same backend that
  is down, as the URL's plugin declares it (``ProviderSpec(unreachable_url=...)``), for the
  suite's ``unreachable_store_factory`` fixture.
* :func:`exception_texts`, :func:`secret_pieces`, :func:`assert_secret_hidden`,
  :class:`TcpRelay`: for tests that hunt for a leaked password (what clause
  ``health.secrets`` checks, taken further: every message and chained exception, a server
  that goes away mid-test).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import pytest

from ._env import backend_missing
from ._factory import StoreFactory, url_factory

__all__ = [
    "ServerFailed",
    "ServerProcess",
    "TcpRelay",
    "alternating_factory",
    "assert_secret_hidden",
    "closed_port",
    "exception_texts",
    "free_port",
    "lasting_port",
    "port_accepts",
    "scrub_noise",
    "secret_pieces",
    "server_fixture",
    "unreachable_factory",
    "unreachable_url",
    "wait_until",
]

LOOPBACK = "127.0.0.1"


# --- ports ----------------------------------------------------------------------------------
def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ephemeral_ports() -> tuple[int, int]:
    """The range the kernel picks outgoing connections' local ports from."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def lasting_port(host: str = LOOPBACK) -> int:
    """A free TCP port on ``host`` outside the kernel's ephemeral range, for a test that
    binds one port again and again over minutes: a port :func:`free_port` gives may be taken
    meanwhile as the local port of any outgoing connection ("address already in use")."""
    low, high = _ephemeral_ports()
    candidates = [port for port in range(10_000, 30_000) if not low <= port <= high]
    random.shuffle(candidates)
    for port in candidates[:200]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    return free_port(host)  # every candidate taken: the OS's pick


@contextlib.contextmanager
def closed_port(host: str = LOOPBACK) -> Iterator[int]:
    """A port that refuses connections for as long as the block runs: bound, never
    listening, so no other process can start listening on it meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        yield int(sock.getsockname()[1])


def port_accepts(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True when a TCP connection to ``host:port`` is accepted."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` every 50 ms until it is true; ``TimeoutError`` naming ``what`` after
    ``timeout`` seconds. An exception from ``check`` stops the wait (it propagates)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


# --- throwaway servers ----------------------------------------------------------------------
class ServerFailed(RuntimeError):
    """A server process could not be started: its binary is missing, it exited, or it did
    not get ready in time. The message ends with the tail of its output."""


class ServerProcess:
    """One server process on a loopback port, started and stopped by the tests.

    ``argv``: the command; every ``{port}`` in it becomes :attr:`port` (a free one unless
    given). ``ready``: a probe called until it returns true (default: the port accepts a
    TCP connection); it may raise :class:`ServerFailed` to give up at once. The process's
    stdout and stderr go to :attr:`log_path` (in :attr:`workdir`, a temporary directory
    unless given), whose tail is in every :class:`ServerFailed` message.

    ``start()`` may be called again after ``stop()`` (same port, same workdir: a restart).
    As a context manager it starts and stops.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        port: int | None = None,
        host: str = LOOPBACK,
        ready: Callable[[ServerProcess], bool] | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        workdir: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not argv:
            raise ValueError("ServerProcess needs a command")
        self.host = host
        self.port = free_port(host) if port is None else port
        self.argv = [str(arg).replace("{port}", str(self.port)) for arg in argv]
        self.ready = ready
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="dmem-server-")) if workdir is None else workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "server.log"
        self.env = None if env is None else {**os.environ, **env}
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ServerProcess {Path(self.argv[0]).name} {self.host}:{self.port} {state}>"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def output(self, limit: int = 4000) -> str:
        """The last ``limit`` characters the process wrote (stdout and stderr)."""
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def start(self) -> ServerProcess:
        """Start the process and wait until it is ready; :class:`ServerFailed` otherwise."""
        if self.running:
            return self
        if shutil.which(self.argv[0]) is None:
            raise ServerFailed(f"{self.argv[0]} is not installed (not found on PATH)")
        with self.log_path.open("ab") as log:
            try:
                self.process = subprocess.Popen(
                    self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env
                )
            except OSError as exc:
                raise ServerFailed(f"cannot start {self.argv[0]}: {exc}") from exc
        try:
            wait_until(self._is_ready, self.startup_timeout, f"{self!r} to get ready")
        except (TimeoutError, ServerFailed) as exc:
            self.stop()
            raise ServerFailed(f"{exc}; its output ends with:\n{self.output()}") from None
        return self

    def _is_ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise ServerFailed(f"{self.argv[0]} exited with {self.process.returncode}")
        if self.ready is not None:
            return self.ready(self)
        return port_accepts(self.port, self.host)

    def stop(self) -> None:
        """SIGTERM, wait up to ``stop_timeout`` seconds, then SIGKILL. Idempotent."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(self.stop_timeout)

    def kill(self) -> None:
        """SIGKILL at once: the server vanishes mid-request, like a crashed host."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(self.stop_timeout)

    def cleanup(self) -> None:
        """:meth:`stop`, and remove the workdir if this object made it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()


def server_fixture(
    argv: Sequence[str],
    *,
    name: str | None = None,
    scope: Literal["session", "package", "module", "class", "function"] = "session",
    ready: Callable[[ServerProcess], bool] | None = None,
    startup_timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
) -> Any:
    """A pytest fixture: a :class:`ServerProcess` of ``argv``, started, stopped at teardown.

    Assign it in a conftest.py or test module; ``name`` is the fixture's name (default:
    the variable's)::

        redis_server = testkit.server_fixture(["redis-server", "--port", "{port}"])

    When the server cannot be started, the tests that use it are skipped, or fail under
    ``DMEM_REQUIRE_BACKENDS=1`` (CI), with the reason and the server's output.
    """
    command = list(argv)

    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
        workdir = tmp_path_factory.mktemp(name or Path(command[0]).name)
        server = ServerProcess(
            command, ready=ready, startup_timeout=startup_timeout, workdir=workdir, env=env
        )
        try:
            server.start()
        except ServerFailed as exc:
            backend_missing(f"cannot start {command[0]}: {exc}")
        try:
            yield server
        finally:
            server.cleanup()

    return pytest.fixture(scope=scope, name=name)(fixture)


# --- the down twin of a URL ------------------------------------------------------------------
def unreachable_url(url: str) -> str:
    """The URL of the same backend that is down, as ``url``'s plugin declares it.

    A plugin declares the twin once, in its ``ProviderSpec(unreachable_url=...)`` (a
    function from a URL it serves to the same kind of URL on a closed port); ``dmem
    conformance URL`` uses it for the down-backend clause, and so do tests through this
    function. ``LookupError`` when the plugin declares none: then write the URL yourself
    (e.g. with a port from :func:`closed_port`), or declare ``lacks={"unreachable": why}``.
    """
    from .runner import down_twin

    twin = down_twin(url)
    if twin is None:
        import dmem

        raise LookupError(
            f"the plugin serving {dmem.redact_url(url)} declares no unreachable twin "
            "(ProviderSpec(unreachable_url=...)): give the suite a URL of the same backend "
            "that is down yourself, or declare lacks={'unreachable': why}"
        )
    return twin


def unreachable_factory(url: str, **options: Any) -> StoreFactory:
    """A :data:`StoreFactory` on :func:`unreachable_url` of ``url``, for the suite's
    ``unreachable_store_factory`` fixture (``options`` as for :func:`url_factory`)."""
    return url_factory(unreachable_url(url), **options)


# --- shared and independent connections -----------------------------------------------------
def alternating_factory(url: str, **options: Any) -> StoreFactory:
    """``url_factory(url, **options)``, which opens every other store with
    ``share_connection=false`` (shared and independent connections in one run)."""
    return url_factory(url, **options)


# --- hunting for a leaked secret --------------------------------------------------------------
def exception_texts(exc: BaseException | None) -> list[str]:
    """``str`` and ``repr`` of ``exc`` and of every exception chained to it (``__cause__``,
    ``__context__``), each once."""
    texts: list[str] = []
    seen: set[int] = set()
    todo = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        texts += [str(item), repr(item)]
        todo += [item.__cause__, item.__context__]
    return texts


def secret_pieces(text: str, size: int = 4) -> set[str]:
    """Every run of ``size`` characters of ``text``: a leak shows at least one of them."""
    return {text[i : i + size] for i in range(len(text) - size + 1)}


_NOISE = re.compile(
    r"\(\d+(?:\.\d+)? ms\)"  # a measured latency in a message: "(12.5 ms)"
    r"|\blatency_ms['\"]?(?::|=) ?[0-9.e+-]+"  # ... in a report: 'latency_ms': 0.1, latency_ms=2
    r"|\bat 0x[0-9a-f]+"  # an object address in a repr
)


def scrub_noise(text: str) -> str:
    """``text`` without measured latencies and object addresses: digits that vary from run
    to run and come from no input, so a password's digits cannot match them by chance."""
    return _NOISE.sub("<noise>", text)


def assert_secret_hidden(
    secret: str,
    texts: Iterable[str],
    *,
    fixed: Collection[str] = (),
    size: int = 4,
    percent_encoded: bool = True,
) -> None:
    """Fail when any piece (:func:`secret_pieces`) of ``secret`` shows in any of ``texts``.

    Also the pieces of its percent-encoded form (as it sits in a URL) unless
    ``percent_encoded=False``. ``fixed``: pieces that are not a leak when they show (text
    that a message holds anyway: the URL's other parts, the sources' words). Each text is
    :func:`scrub_noise`-d first.
    """
    pieces = secret_pieces(secret, size)
    if percent_encoded:
        pieces |= secret_pieces(quote(secret, safe=""), size)
    pieces -= set(fixed)
    for raw in texts:
        text = scrub_noise(raw)
        shown = sorted(piece for piece in pieces if piece in text)
        assert not shown, f"{shown[0]!r} of the secret {secret!r} shows in {text!r}"


class TcpRelay:
    """A loopback TCP relay to ``127.0.0.1:target`` that can be cut: point a store at
    :attr:`port`, then :meth:`cut` makes its server go away mid-session (every connection
    aborted, no new ones accepted). Runs on the event loop that calls :meth:`start`.

    ``port``: the port to listen on (default: one the OS picks, set by :meth:`start`).
    """

    def __init__(self, target: int, port: int = 0) -> None:
        self.target = target
        self.port = port
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, LOOPBACK, self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self.target)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        for task in (pipe(reader, up_writer), pipe(up_reader, writer)):
            self._tasks.add(asyncio.get_running_loop().create_task(task))

    async def cut(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
