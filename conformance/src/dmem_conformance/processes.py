"""Contract v1.1 across processes: ``get_or_set(lock=True)`` and ``Store.lock``.

A plugin's test module subclasses :class:`ProcessCoordinationTests` and gives a ``url``
fixture (a store every process of the machine can reach)::

    from dmem_conformance.processes import ProcessCoordinationTests

    class TestFooProcesses(ProcessCoordinationTests):
        @pytest.fixture
        def url(self, foo_server):
            return foo_server.url

Four real processes (this module run as ``python -m dmem_conformance.processes``, with the
test's interpreter) start together on a go-file:

* ``get_or_set URL GO_FILE CALLS_DIR``: ``get_or_set("report", factory, lock=True)``, where the
  factory leaves a file in CALLS_DIR and takes 0.3 s; prints the JSON of the value returned.
  The factory must run in one process only, and every process must get the same value.
* ``lock URL GO_FILE``: takes the lock ``job`` 5 times; inside, ``incr("inside")`` must give
  1 (nobody else inside), then waits 20 ms and ``decr``; prints the JSON list of what incr gave.

Both use the namespace ``coord``, cleared before and after.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dmem
import pytest

__all__ = ["PROCESSES", "ProcessCoordinationTests", "run_children"]

PROCESSES = 4
NAMESPACE = "coord"


async def _clear(url: str) -> None:
    async with dmem.open(url, namespace=NAMESPACE) as kv:
        await kv.clear()


def run_children(url: str, workdir: Path, command: str, *extra: str) -> list[str]:
    """Start :data:`PROCESSES` children on ``command`` together; the last line each printed."""
    asyncio.run(_clear(url))
    go = workdir / f"go-{command}"
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "dmem_conformance.processes", command, url, str(go), *extra],
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


class ProcessCoordinationTests:
    """The cross-process tests; subclass it and give a ``url`` fixture."""

    @pytest.fixture
    def url(self) -> str:
        raise NotImplementedError("give the subclass a url fixture")

    def test_get_or_set_with_lock_calls_the_factory_once(self, url: str, tmp_path: Path) -> None:
        calls = tmp_path / "calls"
        calls.mkdir()
        lines = run_children(url, tmp_path, "get_or_set", str(calls))
        values = [json.loads(line) for line in lines]
        assert len(list(calls.iterdir())) == 1, "the factory ran in more than one process"
        assert all(value == values[0] for value in values), "processes got different values"

    def test_lock_has_one_holder_at_a_time(self, url: str, tmp_path: Path) -> None:
        seen = [json.loads(line) for line in run_children(url, tmp_path, "lock")]
        assert [len(s) for s in seen] == [5] * PROCESSES
        assert {n for s in seen for n in s} == {1}, f"two holders at once: {seen}"


# --- the child process ------------------------------------------------------------------------
def _wait_for(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.001)


async def _get_or_set(url: str, go_file: str, calls_dir: str) -> None:
    kv = await dmem.open(url, namespace=NAMESPACE)
    await asyncio.to_thread(_wait_for, go_file)

    async def factory() -> dict[str, object]:
        mark = Path(calls_dir) / uuid.uuid4().hex
        await asyncio.to_thread(mark.write_text, str(os.getpid()))
        await asyncio.sleep(0.3)
        return {"by": os.getpid()}

    value = await kv.get_or_set("report", factory, lock=True)
    print(json.dumps(value), flush=True)
    await kv.aclose()


async def _lock(url: str, go_file: str) -> None:
    kv = await dmem.open(url, namespace=NAMESPACE)
    await asyncio.to_thread(_wait_for, go_file)
    seen = []
    for _ in range(5):
        async with kv.lock("job", ttl=10, wait=60):
            seen.append(await kv.incr("inside"))
            await asyncio.sleep(0.02)
            await kv.decr("inside")
    print(json.dumps(seen), flush=True)
    await kv.aclose()


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    asyncio.run(_get_or_set(*arguments) if command == "get_or_set" else _lock(*arguments))
