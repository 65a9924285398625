"""Every ```python block of the documentation runs as written, or is marked as a fragment.

The documents: ``README.md``, ``docs/**/*.md``, ``plugins/*/README.md`` and
``integrations/*/README.md``. Each ```python block is one test case, named by file and line
(``docs/middleware.md:5``).

**Runnable blocks** (the default) run as a script: ``sys.executable block.py`` in a fresh
temporary working directory, with ``HOME`` and ``XDG_DATA_HOME`` pointed into it and no
``DMEM_*`` variable set (so no ``DMEM_URL``: ``dmem.open()`` with no URL uses the embedded
default under the temporary home). A block passes when it exits 0 and writes nothing to
stderr but the warnings in ``KNOWN_STDERR``. What it prints is not compared with its
``# comments``.

**Fragments.** A block that cannot be a whole program without hurting the reader (an
excerpt of a longer file, a one-line illustration) is marked by an HTML comment, invisible
when rendered, on the line right before its opening fence::

    <!-- fragment -->
    <!-- fragment: an excerpt of examples/dmem-shelf/src/dmem_shelf/provider.py -->

(the text after ``fragment:`` says why, for the next reader). A fragment is only parsed:
it must be valid Python syntax. Prefer a runnable block; a marker that is not right before
a ```python fence fails ``test_fragment_markers_sit_on_python_blocks``.

**Servers.** A block runs against throwaway backends: embedded ones (``memory://``,
``sqlite:///relative.db``, ``chroma:///relative-dir``) in its working directory, and the
server URLs listed in ``SERVER_URLS``, replaced in the block's text by a throwaway server's
URL: a redis-server this test starts on a free loopback port (or ``DMEM_TEST_REDIS_URL``),
a PostgreSQL server started with initdb/pg_ctl (or ``DMEM_TEST_POSTGRES_URL``). A block
that names any other server URL, or an absolute ``sqlite:////`` or ``chroma:////`` path
(which would write outside its directory), fails loudly: add the URL to ``SERVER_URLS`` or
change the example. A server that cannot be started skips the block, or fails it under
``DMEM_REQUIRE_BACKENDS=1`` (CI).
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dmem_conformance._env import backend_missing

ROOT = Path(__file__).resolve().parent.parent

FRAGMENT = re.compile(r"<!-- fragment(?:: [^>]*[^ >])? -->")
"""The marker, alone on the line right before a block's opening fence."""

SERVER_URLS = {
    "redis://localhost:6379/0": "redis",
    "postgresql://app:secret@db.internal:5432/appdb": "postgresql",
}
"""Server URLs the documents may name, and the throwaway server each one is replaced by."""

EMBEDDED_SCHEMES = frozenset({"memory", "sqlite", "chroma"})
"""Schemes whose URLs need no server: the block's working directory holds their data."""

KNOWN_STDERR: tuple[re.Pattern[str], ...] = ()
"""Lines a passing block may write to stderr (third-party warnings dmem cannot silence)."""

BLOCK_TIMEOUT = 120.0

_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*)://[^\s\"'`)<>]*")
_OPEN_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})\s*([^\s`]*)")
_PYTHON = frozenset({"python", "py", "python3"})


@dataclass(frozen=True)
class Block:
    path: str  # relative to the checkout
    line: int  # of the opening fence, 1-based
    code: str
    fragment: bool

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def documents() -> list[Path]:
    found = [ROOT / "README.md"]
    found += sorted((ROOT / "docs").rglob("*.md"))
    found += sorted((ROOT / "plugins").glob("*/README.md"))
    found += sorted((ROOT / "integrations").glob("*/README.md"))
    return found


def _fences(lines: list[str], where: str) -> Iterator[tuple[int, str, str]]:
    """(index of the opening fence's line, info word, text) of every fenced block."""
    i = 0
    while i < len(lines):
        opening = _OPEN_FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence, info = opening.groups()
        closing = re.compile(rf" {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*")
        end = i + 1
        while end < len(lines) and not closing.fullmatch(lines[end]):
            end += 1
        if end == len(lines):
            raise AssertionError(f"{where}:{i + 1}: unclosed code fence")
        body = [line.removeprefix(indent) for line in lines[i + 1 : end]]
        yield i, info.lower(), "\n".join(body) + "\n"
        i = end + 1


def python_blocks() -> list[Block]:
    blocks: list[Block] = []
    for path in documents():
        where = str(path.relative_to(ROOT))
        lines = path.read_text(encoding="utf-8").splitlines()
        for index, info, code in _fences(lines, where):
            if info in _PYTHON:
                marked = index > 0 and FRAGMENT.fullmatch(lines[index - 1].strip()) is not None
                blocks.append(Block(where, index + 1, code, marked))
    return blocks


BLOCKS = python_blocks()


def test_documents_have_python_blocks() -> None:
    """The extraction finds blocks (a broken fence parser would pass every case vacuously)."""
    assert len(BLOCKS) >= 20, [b.id for b in BLOCKS]
    assert any(b.path == "README.md" and not b.fragment for b in BLOCKS)


def test_fragment_markers_sit_on_python_blocks() -> None:
    """A fragment marker anywhere but right before a ```python fence is a mistake."""
    marked = {(b.path, b.line - 1) for b in BLOCKS if b.fragment}
    stray = []
    for path in documents():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "<!-- fragment" in line and (str(path.relative_to(ROOT)), number) not in marked:
                stray.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not stray, "fragment markers not right before a ```python fence:\n" + "\n".join(stray)


def server_kinds(block: Block) -> set[str]:
    """The throwaway servers ``block`` needs; fails on a URL this test cannot provide."""
    kinds: set[str] = set()
    for match in _URL.finditer(block.code):
        url, scheme = match.group(0), match.group(1).lower()
        if scheme in EMBEDDED_SCHEMES:
            if re.match(r"(sqlite|chroma):////", url, re.IGNORECASE):
                pytest.fail(
                    f"{block.id}: {url!r} is an absolute path outside the block's working "
                    "directory; use a relative one (three slashes)"
                )
            continue
        if url not in SERVER_URLS:
            pytest.fail(
                f"{block.id}: names the server URL {url!r}, which tests/test_docs.py does not "
                f"replace (it knows {sorted(SERVER_URLS)}): add it to SERVER_URLS, or use one "
                "of those in the example"
            )
        kinds.add(SERVER_URLS[url])
    return kinds


# --- throwaway servers ---------------------------------------------------------------------


def _fixture_module(directory: str, name: str) -> Any:
    """A helper module of a plugin's tests (they start real servers; nothing is mocked)."""
    path = str(ROOT / directory)
    if path not in sys.path:
        sys.path.insert(0, path)
    return importlib.import_module(name)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("DMEM_TEST_REDIS_URL")
    if url:
        yield url
        return
    servers = _fixture_module("plugins/redis/tests", "redis_servers")
    servers.require_redis()
    server = servers.RedisServer(tmp_path_factory.mktemp("docs-redis"))
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        backend_missing(f"cannot start redis-server: {exc}")
    try:
        yield str(server.url)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    url = os.environ.get("DMEM_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    pgserver = _fixture_module("plugins/sqlite/tests", "pgserver")
    try:
        server = pgserver.PostgresServer.start()
    except (pgserver.PostgresUnavailable, OSError) as exc:
        backend_missing(f"cannot start a throwaway PostgreSQL: {exc}")
    try:
        yield str(server.url)
    finally:
        server.stop()


# --- the blocks -----------------------------------------------------------------------------


def _environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMEM_")}
    env["HOME"] = str(home)
    env["XDG_DATA_HOME"] = str(home / ".local" / "share")
    env["XDG_CACHE_HOME"] = str(home / ".cache")
    env["XDG_CONFIG_HOME"] = str(home / ".config")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _unexpected_stderr(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not any(p.search(line) for p in KNOWN_STDERR)
    ]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_python_block(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if block.fragment:
        try:
            ast.parse(block.code, filename=block.id)
        except SyntaxError as exc:
            pytest.fail(f"{block.id}: fragment is not valid Python: {exc}")
        return
    code = block.code
    fixture_for: dict[str, Callable[[], str]] = {
        "redis": lambda: str(request.getfixturevalue("redis_url")),
        "postgresql": lambda: str(request.getfixturevalue("postgres_url")),
    }
    kinds = server_kinds(block)
    for example, kind in SERVER_URLS.items():
        if kind in kinds:
            code = code.replace(example, fixture_for[kind]())
    work, home, scripts = tmp_path / "work", tmp_path / "home", tmp_path / "scripts"
    for directory in (work, home, scripts):
        directory.mkdir()
    script = scripts / f"{Path(block.path).stem}_{block.line}.py"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=work,
        env=_environment(home),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )
    report = f"{block.id} (ran as {script})\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, f"exit code {result.returncode}: {report}"
    assert not _unexpected_stderr(result.stderr), f"unexpected stderr: {report}"
