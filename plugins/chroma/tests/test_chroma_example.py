"""examples/quickstart_system.py runs end to end (SQLite KV + embedded Chroma vectors)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "quickstart_system.py"


async def test_quickstart_system(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("quickstart_system", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = await module.main(tmp_path / "data")
    assert result == {
        "by_tag": ["session:abc", "user:123"],
        "name": "Ada",
        "top": "note-2",
        "health": {"kv": "healthy", "vector": "healthy"},
    }
    out = capsys.readouterr().out
    assert "Ada is allergic to peanuts" in out
    # The example cleans up after itself, so a second run gives the same answers.
    assert await module.main(tmp_path / "data") == result
