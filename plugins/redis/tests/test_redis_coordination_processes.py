"""get_or_set(lock=True) and Store.lock across processes on one Redis (standalone and Cluster).

Four real processes start together, each running the SQLite plugin's child script
(``plugins/sqlite/tests/coord_child.py``, which only talks to ``dmem.open(URL)``): one
factory call among them, one lock holder at a time.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import dmem
import pytest

CHILD = Path(__file__).resolve().parents[2] / "sqlite" / "tests" / "coord_child.py"
PROCESSES = 4


@pytest.fixture(params=["standalone", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "standalone":
        base: str = request.getfixturevalue("redis_url")
    else:
        base = request.getfixturevalue("redis_cluster_url")
    return base


async def _clear(url: str) -> None:
    async with dmem.open(url, namespace="coord") as kv:
        await kv.clear()


def _run_children(url: str, tmp_path: Path, command: str, *extra: str) -> list[str]:
    assert CHILD.exists(), f"the child script moved: {CHILD}"
    asyncio.run(_clear(url))
    go = tmp_path / f"go-{command}"
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILD), command, url, str(go), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    go.touch()
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        outputs.append(out.strip().splitlines()[-1])
    asyncio.run(_clear(url))
    return outputs


def test_get_or_set_with_lock_calls_the_factory_once(url: str, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    values = [json.loads(line) for line in _run_children(url, tmp_path, "get_or_set", str(calls))]
    assert len(list(calls.iterdir())) == 1, "the factory ran in more than one process"
    assert all(value == values[0] for value in values), "processes got different values"


def test_lock_has_one_holder_at_a_time(url: str, tmp_path: Path) -> None:
    seen = [json.loads(line) for line in _run_children(url, tmp_path, "lock")]
    assert [len(s) for s in seen] == [5] * PROCESSES
    assert {n for s in seen for n in s} == {1}, f"two holders at once: {seen}"
