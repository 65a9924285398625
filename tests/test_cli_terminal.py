"""``dmem`` as a process: a progress bar on a terminal (a pty), plain lines on a pipe, and
an export whose reader goes away. SQLite files throughout."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
from pathlib import Path

import dmem
import pytest


def fill(url: str, count: int) -> None:
    async def go() -> None:
        async with dmem.open(url) as store:
            await store.set_many({f"key:{i}": {"i": i, "pad": "x" * 100} for i in range(count)})

    asyncio.run(go())


@pytest.fixture
def source(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    fill(url, 3000)
    return url


def on_a_terminal(*args: str) -> tuple[bytes, str]:
    """Run ``dmem ARGS`` with stderr on a pseudo-terminal: (stdout, what the terminal got)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "dmem", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert process.stdout is not None
    out = process.stdout.read()
    assert process.wait(120) == 0, shown
    return out, shown.decode()


def test_copy_and_import_draw_a_bar_on_a_terminal(tmp_path: Path, source: str) -> None:
    out, shown = on_a_terminal("copy", source, f"sqlite:///{tmp_path / 'd.db'}")
    assert out == b"copied 3000 keys\n"
    assert "copying" in shown and "[####" in shown and "100%" in shown and "3000/3000" in shown
    dump = tmp_path / "dump.jsonl"
    dump.write_bytes(
        subprocess.run(
            [sys.executable, "-m", "dmem", "export", source, "-q"],
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout
    )
    out, shown = on_a_terminal("import", f"sqlite:///{tmp_path / 'i.db'}", str(dump))
    assert out == b"imported 3000 keys\n"
    assert "importing" in shown and "[####" in shown and "3000/3000" in shown


def test_progress_on_a_pipe_is_plain_lines(tmp_path: Path, source: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dmem", "copy", source, f"sqlite:///{tmp_path / 'd.db'}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "copied 3000 keys\n"
    assert "\r" not in done.stderr and "[#" not in done.stderr
    # Lines come every PROGRESS_INTERVAL seconds: a quick copy may have none.
    assert all(line.startswith("copying: ") for line in done.stderr.splitlines())


def test_export_into_a_closed_pipe_ends_with_one_line(source: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "dmem", "export", source, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith(b'{"key":"key:')
    process.stdout.close()  # as `| head -1` does; 3,000 lines do not fit in a pipe's buffer
    err = process.stderr.read().decode()
    assert process.wait(120) == 1
    assert err == "error: output closed before the export finished\n"
