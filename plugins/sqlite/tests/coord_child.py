"""Child process of test_coordination_processes.py (run as a script, not collected).

python coord_child.py get_or_set URL GO_FILE CALLS_DIR   wait for GO_FILE, then
    get_or_set("report", factory, lock=True); the factory leaves a file in CALLS_DIR and
    takes 0.3 s; print the JSON of the value returned
python coord_child.py lock URL GO_FILE                   wait for GO_FILE, then take the
    lock "job" 5 times; inside, incr "inside" (must give 1), wait, decr; print the JSON
    list of what incr gave
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

import dmem


def _wait_for(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.001)


async def get_or_set(url: str, go_file: str, calls_dir: str) -> None:
    kv = await dmem.open(url, namespace="coord")
    await asyncio.to_thread(_wait_for, go_file)

    async def factory() -> dict[str, object]:
        mark = Path(calls_dir) / uuid.uuid4().hex
        await asyncio.to_thread(mark.write_text, str(os.getpid()))
        await asyncio.sleep(0.3)
        return {"by": os.getpid()}

    value = await kv.get_or_set("report", factory, lock=True)
    print(json.dumps(value), flush=True)
    await kv.aclose()


async def lock(url: str, go_file: str) -> None:
    kv = await dmem.open(url, namespace="coord")
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
    command, *args = sys.argv[1:]
    asyncio.run(get_or_set(*args) if command == "get_or_set" else lock(*args))
