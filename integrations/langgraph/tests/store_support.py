"""Helpers of the DmemStore tests: one store URL per backend, a deterministic embedder, a loop.

``store_target`` is parametrized over memory, SQLite (a file), PostgreSQL and Redis (real
servers from ``conftest.py``); each test gets a fresh dmem namespace, so tests sharing a
server never see each other's items. ``embed`` is a hash-based embedding (character
trigrams hashed into 64 dimensions): deterministic, offline, and texts sharing words score
higher, which is all semantic-search tests need. ``LoopThread`` is a caller's event loop
in a thread of its own, so a synchronous test (Hypothesis rules) can drive ``abatch``
natively on a loop that is not dmem's.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

__all__ = ["DIMS", "BackendTarget", "LoopThread", "aembed", "embed", "store_target"]

T = TypeVar("T")
DIMS = 64


def _one(text: str) -> list[float]:
    vector = [0.0] * DIMS
    padded = f"  {text.lower()}  "
    for i in range(len(padded) - 2):
        digest = hashlib.blake2b(padded[i : i + 3].encode(), digest_size=4).digest()
        vector[int.from_bytes(digest, "big") % DIMS] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def embed(texts: list[str]) -> list[list[float]]:
    return [_one(text) for text in texts]


async def aembed(texts: list[str]) -> list[list[float]]:
    return embed(texts)


@dataclass(frozen=True)
class BackendTarget:
    name: str
    url: str
    namespace: str


@pytest.fixture(params=["memory", "sqlite", "postgresql", "redis"])
def store_target(request: pytest.FixtureRequest) -> BackendTarget:
    name: str = request.param
    tag = uuid.uuid4().hex[:12]
    if name == "memory":
        url = f"memory://lg-{tag}"
    elif name == "sqlite":
        url = str(request.getfixturevalue("sqlite_url"))
    elif name == "postgresql":
        url = str(request.getfixturevalue("postgres_url"))
    else:
        url = str(request.getfixturevalue("redis_url"))
    return BackendTarget(name, url, f"lg-{tag}")


class LoopThread:
    """An asyncio loop running in a daemon thread; ``run(coro)`` blocks for the result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()
