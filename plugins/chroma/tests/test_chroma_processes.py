"""if_not_exists across processes on a Chroma server: Chroma's add() is the arbiter.

The in-process lock cannot help here: each writer is its own process, as
several application servers sharing one Chroma would be.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid

import dmem

WRITERS = 4
KEYS = 10

_WRITER = """
import asyncio, json, sys, time
import dmem

async def main(url, namespace, start, keys):
    kv = await dmem.open(url, namespace=namespace, timeout=30)
    while time.time() < start:
        await asyncio.sleep(0.001)
    won = [await kv.set(f"race-{i}", sys.argv[5], ttl=60, if_not_exists=True) for i in range(keys)]
    await kv.aclose()
    print(json.dumps(won))

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
"""


def test_if_not_exists_one_winner_across_processes(chroma_server_url: str) -> None:

    namespace = f"nx-proc-{uuid.uuid4().hex[:8]}"
    # Late enough for every writer to import chromadb and connect first.
    start = time.time() + 8
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WRITER,
                chroma_server_url,
                namespace,
                str(start),
                str(KEYS),
                f"w{i}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(WRITERS)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    asyncio.run(_check(chroma_server_url, namespace, results))


async def _check(url: str, namespace: str, results: list[list[bool]]) -> None:
    async with dmem.open(url, namespace=namespace) as kv:
        for i in range(KEYS):
            winners = [f"w{w}" for w in range(WRITERS) if results[w][i]]
            assert len(winners) == 1, (i, results)
            # The stored value is the winner's: the losers changed nothing.
            assert await kv.get(f"race-{i}") == winners[0]
        await kv.clear()
