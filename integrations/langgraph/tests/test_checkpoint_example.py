"""examples/langgraph_agent.py, run twice as a program: the second run resumes the thread
the first one checkpointed and reads the memory it stored, from the same SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "langgraph_agent.py"


def _run(db: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMEM_")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), str(db)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_second_run_resumes_thread_and_memory(tmp_path: Path) -> None:
    db = tmp_path / "agent.db"
    first = _run(db)
    assert first.splitlines()[:2] == ["new thread", "memory: None"]
    assert "assistant: Nice to meet you, Ada! I'll remember your name." in first
    assert "thread now has 2 messages" in first
    second = _run(db)
    lines = second.splitlines()
    assert lines[0] == "resumed thread with 2 earlier messages; the last one was:"
    assert lines[1] == "  ai: Nice to meet you, Ada! I'll remember your name."
    assert lines[2] == "memory: {'name': 'Ada'}"
    assert "assistant: Of course: you are Ada. Welcome back!" in second
    assert "thread now has 4 messages" in second


def test_another_file_starts_afresh(tmp_path: Path) -> None:
    _run(tmp_path / "one.db")
    assert _run(tmp_path / "two.db").splitlines()[:2] == ["new thread", "memory: None"]
