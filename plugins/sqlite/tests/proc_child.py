"""Child process for the multi-process tests (run as a script, not collected by pytest).

python proc_child.py set_many URL N      print "started", then set_many of N keys, then
                                         "done", then wait to be killed
python proc_child.py race URL GO_FILE    wait for GO_FILE, then set(if_not_exists) on
                                         200 keys; print the JSON list of keys won
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import dmem


async def set_many(url: str, count: int) -> None:
    kv = await dmem.open(url, namespace="crash")
    items = {f"key:{i:05d}": "v" * 1000 for i in range(count)}
    print("started", flush=True)
    await kv.set_many(items)
    print("done", flush=True)
    await kv.aclose()
    # Wait for the test's SIGKILL: on a fast server the batch can beat a "late" kill, and
    # the test must still find a killed process (whose batch is then all there).
    await asyncio.sleep(60)


def _wait_for(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.001)


async def race(url: str, go_file: str) -> None:
    kv = await dmem.open(url, namespace="race")
    # Both processes are connected; they start together when the go file appears.
    await asyncio.to_thread(_wait_for, go_file)
    won = []
    for i in range(200):
        if await kv.set(f"key:{i:03d}", os.getpid(), if_not_exists=True):
            won.append(f"key:{i:03d}")
    print(json.dumps(won), flush=True)
    await kv.aclose()


if __name__ == "__main__":
    mode, url, arg = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "set_many":
        asyncio.run(set_many(url, int(arg)))
    else:
        asyncio.run(race(url, arg))
