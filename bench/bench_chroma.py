"""dmem-chroma against the raw chromadb client, same mode, one process.

    python bench/bench_chroma.py [--check] [--quick] [--mode embedded|server|both]

Rows: KV ``get`` and ``set`` (a ~200-byte JSON value, two tags) and vector
``query`` (k=10 over 10,000 records of dimension 128, metadata and document
returned). The reference does the same work with the raw client on a
collection laid out the same way, called directly (its natural use: chromadb's
client is synchronous). dmem adds validation, the worker thread that keeps the
event loop free, its timeout and error mapping, and for ``set`` one metadata field
more (``T``, the key's tags as JSON: what reads trust, since Chroma's upsert merges
metadata and can leave an old ``t:`` field behind). The reference collections get the
same Chroma settings as dmem's (see ``_dmem_settings``). The server mode starts its own
``chroma run`` on a free loopback port and stops it at the end.
Target (issue 6): every row >= 0.8x the raw client.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import chromadb
import dmem
from chromadb.config import Settings
from dmem import VectorRecord

from bench._harness import Bench

TARGET = 0.8
RECORDS = 10_000
DIMENSION = 128
VALUE = {"user": "123", "text": "remember the milk " * 8, "n": 42}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_server(path: Path) -> tuple[subprocess.Popen[bytes], int]:
    cli = Path(sys.executable).with_name("chroma")
    port = _free_port()
    proc = subprocess.Popen(
        [str(cli), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("chroma run did not start")


def _raw_client(url: str) -> Any:
    settings = Settings(anonymized_telemetry=False)
    if url.startswith("chroma+http://"):
        host, port = url.removeprefix("chroma+http://").split(":")
        return chromadb.HttpClient(host=host, port=int(port), settings=settings)
    return chromadb.PersistentClient(path=url.removeprefix("chroma:///"), settings=settings)


def _dmem_settings(raw: Any, kind: str, namespace: str) -> dict[str, Any]:
    """The Chroma settings (``hnsw:*``) of dmem's ``kind`` collection for ``namespace``.

    The reference collection gets the same ones, so the ratio measures what dmem adds, not
    the settings it chose (a sync every 200 writes alone makes a one-record KV upsert 1.7-1.9x
    faster than Chroma's defaults in collections of 2,000-50,000 records:
    docs/backends/chroma.md).
    """
    for collection in raw.list_collections():
        meta = collection.metadata or {}
        if meta.get("dmem:kind") == kind and meta.get("dmem:namespace") == namespace:
            return {k: v for k, v in meta.items() if k.startswith("hnsw:")}
    raise RuntimeError(f"dmem's {kind} collection for namespace {namespace!r} not found")


async def bench_mode(title: str, url: str, quick: bool) -> Bench:
    bench = Bench(
        f"dmem-chroma vs raw chromadb ({title})",
        rounds=2 if quick else 7,
        min_seconds=0 if quick else 3.0,
    )
    rng = random.Random(1)
    ops = 100 if quick else 300

    kv = await dmem.open(url, namespace="bench-kv")
    raw = _raw_client(url)
    raw_kv = raw.get_or_create_collection(
        "bench-raw-kv", embedding_function=None, metadata=_dmem_settings(raw, "kv", "bench-kv")
    )
    encoded = dmem.encode(VALUE).decode()
    tags = {"userId": "123", "team": "research"}
    await kv.set("hot", VALUE, tags=tags)
    raw_kv.upsert(
        ids=["hot"],
        embeddings=[[0.0]],
        metadatas=[{"v": encoded, "x": 2**62, "t:userId": "123", "t:team": "research"}],
    )

    async def dmem_get() -> None:
        await kv.get("hot")

    async def raw_get() -> None:
        got = raw_kv.get(ids=["hot"], include=["metadatas"])
        dmem.decode(got["metadatas"][0]["v"].encode())

    await bench.compare(
        "kv get", dmem_get, raw_get, reference="collection.get", ops=ops, target=TARGET
    )

    counter = iter(range(10**9))

    async def dmem_set() -> None:
        await kv.set(f"k{next(counter) % 500}", VALUE, tags=tags)

    async def raw_set() -> None:
        raw_kv.upsert(
            ids=[f"k{next(counter) % 500}"],
            embeddings=[[0.0]],
            metadatas=[
                {
                    "v": dmem.encode(VALUE).decode(),
                    "x": 2**62,
                    "t:userId": "123",
                    "t:team": "research",
                }
            ],
        )

    await bench.compare(
        "kv set", dmem_set, raw_set, reference="collection.upsert", ops=ops // 3, target=TARGET
    )
    await kv.clear()
    await kv.aclose()
    raw.delete_collection("bench-raw-kv")

    vs = await dmem.open_vector(url, namespace="bench-vec")
    raw_vec = raw.get_or_create_collection(
        "bench-raw-vec", embedding_function=None, metadata=_dmem_settings(raw, "vec", "bench-vec")
    )
    vectors = [[rng.gauss(0, 1) for _ in range(DIMENSION)] for _ in range(RECORDS)]
    await vs.upsert(
        [VectorRecord(f"r{i}", tuple(v), {"i": i}, f"doc {i}") for i, v in enumerate(vectors)]
    )
    for start in range(0, RECORDS, 1000):
        raw_vec.upsert(
            ids=[f"r{i}" for i in range(start, start + 1000)],
            embeddings=vectors[start : start + 1000],
            metadatas=[{"m:i": i, "d": True} for i in range(start, start + 1000)],
            documents=[f"doc {i}" for i in range(start, start + 1000)],
        )
    queries = [[rng.gauss(0, 1) for _ in range(DIMENSION)] for _ in range(50)]
    qi = iter(range(10**9))

    async def dmem_query() -> None:
        await vs.query(queries[next(qi) % 50], k=10)

    async def raw_query() -> None:
        raw_vec.query(
            query_embeddings=[queries[next(qi) % 50]],
            n_results=10,
            include=["metadatas", "documents", "distances"],
        )

    await bench.compare(
        "vector query k=10 / 10k",
        dmem_query,
        raw_query,
        reference="collection.query",
        ops=ops // 2,
        target=TARGET,
    )
    await vs.clear()
    await vs.aclose()
    raw.delete_collection("bench-raw-vec")
    raw.close()
    return bench


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--quick", action="store_true", help="fewer ops, for a smoke run")
    parser.add_argument("--mode", choices=["embedded", "server", "both"], default="both")
    args = parser.parse_args()
    ok = True
    tmp = Path(tempfile.mkdtemp(prefix="dmem-bench-chroma-"))
    try:
        if args.mode in ("embedded", "both"):
            bench = await bench_mode("embedded", f"chroma:///{tmp / 'embedded'}", args.quick)
            ok = bench.report() and ok
        if args.mode in ("server", "both"):
            proc, port = _start_server(tmp / "server")
            try:
                bench = await bench_mode("server", f"chroma+http://127.0.0.1:{port}", args.quick)
                ok = bench.report() and ok
            finally:
                proc.terminate()
                proc.wait(timeout=15)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
