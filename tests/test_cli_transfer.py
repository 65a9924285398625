"""``dmem export``, ``dmem import`` and ``dmem copy`` on every backend, exactly.

Backends: the in-process memory store (read in this process: the CLI runs here through
click's CliRunner), SQLite files, PostgreSQL (``DMEM_TEST_POSTGRES_URL``, else the server
on 127.0.0.1:5432, database ``test``), a redis-server of this module's own on a free
loopback port (or ``DMEM_TEST_REDIS_URL``), and embedded Chroma in a temporary directory.
Each test works in namespaces of its own and clears them.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dmem
import pytest
from click.testing import CliRunner, Result
from dmem.cli import main
from dmem_conformance._env import backend_missing


def _redis_servers() -> Any:
    """plugins/redis/tests/redis_servers.py: throwaway redis-server processes."""
    folder = str(Path(__file__).resolve().parent.parent / "plugins" / "redis" / "tests")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("redis_servers")


Entry = tuple[Any, dict[str, str], "float | None"]  # value, tags, ttl


def invoke(*args: str, input: bytes | None = None) -> Result:  # noqa: A002 - click's name
    return CliRunner().invoke(main, list(args), input=input)


def ok(*args: str, input: bytes | None = None) -> Result:  # noqa: A002
    result = invoke(*args, input=input)
    assert result.exit_code == 0, result.output[-3000:]
    return result


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("DMEM_TEST_REDIS_URL")
    if given:
        yield given
        return
    servers = _redis_servers()
    servers.require_redis()
    server = servers.RedisServer(tmp_path_factory.mktemp("cli-redis"))
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        backend_missing(f"cannot start redis-server: {exc}")
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def postgres_url() -> str:
    url = os.environ.get("DMEM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

    async def check() -> None:
        async with dmem.open(url) as store:
            await store.count()

    try:
        asyncio.run(check())
    except dmem.DmemError as exc:
        backend_missing(f"PostgreSQL at {dmem.redact_url(url)}: {exc}")
    return url


@pytest.fixture
def namespace() -> Iterator[str]:
    """A namespace for this test; the server backends it touched are cleared after it."""
    name = f"cli-{uuid.uuid4().hex[:12]}"
    yield name
    for url in _touched:
        asyncio.run(_clear(url, name))
    _touched.clear()


_touched: list[str] = []


async def _clear(url: str, namespace: str) -> None:
    async with dmem.open(url, namespace=namespace) as store:
        await store.clear()


def server(url: str) -> str:
    _touched.append(url)
    return url


# --- data and comparison -------------------------------------------------------------------
def typed(value: Any) -> Any:
    """``value`` with every type spelled out: 1 != 1.0 != True, -0.0 != 0.0, b"" != ""."""
    if isinstance(value, dict):
        return ("dict", sorted((k, typed(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


VALUES: list[Any] = [
    "123",
    b"\x00\xff\x00B",
    7,
    1.0,
    -0.0,
    {"a": [1, 1.0, "1", None, True, {"b": []}], "é": {"x": 2**63 - 1, "y": -(2**63)}},
    "",
    b"",
    None,
    False,
    '日本\n"quoted"\t\\',
    1e16,
    5e-324,
    [[[[]]], {}],
    b"\x00Z not compressed",
    '{"looks": "like json"}',
]


def dataset(count: int) -> dict[str, Entry]:
    data: dict[str, Entry] = {}
    for i in range(count):
        key = (f"k:{i}", f"ключ {i}", f"line\nbreak:{i}", f"*?[{i}]")[i % 4 if i < 40 else 0]
        value = VALUES[i % len(VALUES)]
        if isinstance(value, bytes) and i % 2:
            value = value + i.to_bytes(4, "big")
        tags = ({}, {"g": str(i % 5)}, {"g": str(i % 5), "colon": "a:b", "empty": ""})[i % 3]
        ttl = (None, 3600.0, 1800.0, 7200.0)[i % 4]
        data[key] = (value, tags, ttl)
    return data


async def fill(url: str, namespace: str, data: dict[str, Entry]) -> None:
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for key, (value, tags, ttl) in data.items():
        groups.setdefault((ttl, tuple(sorted(tags.items()))), {})[key] = value
    async with dmem.open(url, namespace=namespace) as store:
        for (ttl, tags), items in groups.items():
            await store.set_many(items, ttl=ttl, tags=dict(tags) or None)


def read_export(text: bytes) -> dict[str, Entry]:
    """The entries of an export file; also checks each line's exact shape."""
    found: dict[str, Entry] = {}
    for line in text.splitlines():
        record = json.loads(line)
        assert list(record) in (["key", "value", "tags", "ttl"], ["key", "bytes", "tags", "ttl"])
        value = base64.b64decode(record["bytes"]) if "bytes" in record else record["value"]
        assert record["key"] not in found
        found[record["key"]] = (value, record["tags"], record["ttl"])
    return found


def assert_same(found: dict[str, Entry], data: dict[str, Entry], elapsed: float) -> None:
    """Values and tags exact; ttls no shorter than ``elapsed`` allows, at most 5 s longer."""
    assert sorted(found) == sorted(data)
    for key, (value, tags, ttl) in data.items():
        got_value, got_tags, got_ttl = found[key]
        assert typed(got_value) == typed(value), key
        assert got_tags == tags, key
        if ttl is None:
            assert got_ttl is None, key
        else:
            assert got_ttl is not None and ttl - elapsed - 1 <= got_ttl <= ttl + 5, (key, got_ttl)


def export(url: str, namespace: str, *extra: str) -> bytes:
    result = ok("export", url, "-n", namespace, *extra)
    assert result.stderr.endswith("keys\n")  # the summary; progress and data never mix
    return result.stdout_bytes


# --- export / import round trips -----------------------------------------------------------
def test_export_format_is_exact(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'f.db'}"
    asyncio.run(fill(db, "ns", {"b": (b"\x00\x01", {}, None), "v": ([1, 1.0], {"t": "x"}, None)}))
    lines = export(db, "ns").decode().splitlines()
    assert sorted(lines) == [
        '{"key":"b","bytes":"AAE=","tags":{},"ttl":null}',
        '{"key":"v","value":[1,1.0],"tags":{"t":"x"},"ttl":null}',
    ]


def test_round_trip_through_every_backend(
    tmp_path: Path, redis_url: str, postgres_url: str, namespace: str
) -> None:
    """memory -> SQLite -> Redis -> PostgreSQL -> Chroma, each hop through an export file."""
    data = dataset(240)
    start = time.monotonic()
    source = f"memory://cli-round-trip-{namespace}"
    asyncio.run(fill(source, namespace, data))
    chain = [
        f"sqlite:///{tmp_path / 'rt.db'}",
        server(redis_url),
        server(postgres_url),
        f"chroma:///{tmp_path / 'chroma'}",
    ]
    text = export(source, namespace)
    assert_same(read_export(text), data, time.monotonic() - start)
    for number, url in enumerate(chain):
        path = tmp_path / f"hop{number}.jsonl"
        path.write_bytes(text)
        assert ok("import", url, str(path), "-n", namespace).stdout == "imported 240 keys\n"
        text = export(url, namespace)
        assert_same(read_export(text), data, time.monotonic() - start)
    # and one pattern through the last backend
    assert sorted(read_export(export(chain[-1], namespace, "k:1*"))) == sorted(
        key for key in data if key.startswith("k:1")
    )


def test_ten_thousand_keys_memory_sqlite_redis(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    data = dataset(10_000)
    start = time.monotonic()
    source = f"memory://cli-10k-{namespace}"
    asyncio.run(fill(source, namespace, data))
    db, redis = f"sqlite:///{tmp_path / '10k.db'}", server(redis_url)
    times: dict[str, float] = {}

    def timed(name: str, *args: str) -> Result:
        began = time.perf_counter()
        result = ok(*args)
        times[name] = time.perf_counter() - began
        return result

    (tmp_path / "a.jsonl").write_bytes(
        timed("export memory", "export", source, "-n", namespace).stdout_bytes
    )
    timed("import sqlite", "import", db, str(tmp_path / "a.jsonl"), "-n", namespace)
    (tmp_path / "b.jsonl").write_bytes(
        timed("export sqlite", "export", db, "-n", namespace).stdout_bytes
    )
    timed("import redis", "import", redis, str(tmp_path / "b.jsonl"), "-n", namespace)
    final = timed("export redis", "export", redis, "-n", namespace).stdout_bytes
    assert_same(read_export(final), data, time.monotonic() - start)
    print("\n10,000 keys: " + ", ".join(f"{name} {secs:.2f} s" for name, secs in times.items()))

    async def direct() -> None:
        # Read back through the API too, not only through export's own reads.
        async with dmem.open(redis, namespace=namespace) as store:
            got = await store.get_many(data)
            assert {k: typed(v) for k, v in got.items()} == {
                k: typed(v) for k, (v, _, _) in data.items()
            }
            for key in list(data)[::97]:
                assert await store.get_tags(key) == data[key][1]
                ttl, left = data[key][2], await store.ttl(key)
                assert (left is None) == (ttl is None)

    asyncio.run(direct())


# --- import: checks, stdin, duplicates -----------------------------------------------------
GOOD = b'{"key":"a","value":1,"tags":{},"ttl":null}\n{"key":"b","bytes":"AAE=","ttl":60}\n'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object but list"),
        (b'{"key": "c", "value": 1, "extra": 2}', "unknown field(s) extra"),
        (b'{"value": 1}', 'no "key"'),
        (b'{"key": "", "value": 1}', "InvalidKeyError"),
        (b'{"key": "c"}', 'exactly one of "value" and "bytes"'),
        (b'{"key": "c", "value": 1, "bytes": "AA=="}', 'exactly one of "value" and "bytes"'),
        (b'{"key": "c", "bytes": "not base64!"}', '"bytes" is not base64'),
        (b'{"key": "c", "bytes": 5}', '"bytes" must be a base64 str'),
        (b'{"key": "c", "value": 1, "ttl": 0}', "InvalidArgumentError: ttl"),
        (b'{"key": "c", "value": 1, "ttl": true}', "InvalidArgumentError: ttl"),
        (b'{"key": "c", "value": 1, "tags": {"t": 1}}', "InvalidArgumentError"),
        (b'{"key": "c", "value": NaN}', "InvalidValueError"),
        (b'{"key": "c", "value": 18446744073709551616}', "InvalidValueError"),
        (b'{"key": "c", "value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested deeper"),
        (b'{"key": "c", "value": "\\ud800"}', "InvalidValueError"),
        (b'{"key": "c", "value": "\xff"}', "not UTF-8"),
    ],
    ids=lambda item: item.decode("utf-8", "replace")[:30] if isinstance(item, bytes) else None,
)
def test_a_bad_line_stops_the_import_before_any_write(
    tmp_path: Path, line: bytes, message: str
) -> None:
    db = f"sqlite:///{tmp_path / 'bad.db'}"
    path = tmp_path / "bad.jsonl"
    path.write_bytes(GOOD + b"\n" + line + b"\n" + GOOD)
    result = invoke("import", db, str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {path} line 4: ")
    assert message in result.stderr and "nothing was written" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    # Every line is checked before the store is even opened: not a byte was written.
    assert not (tmp_path / "bad.db").exists()


def test_import_from_stdin_blank_lines_and_later_lines_win(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'stdin.db'}"
    text = GOOD + b"\n   \n" + b'{"key":"a","value":"second","tags":{"t":"2"},"ttl":100}\n'
    assert ok("import", db, "-", "--batch", "1", input=text).stdout == "imported 3 keys\n"
    assert ok("get", db, "a").stdout == '"second"\n'
    assert ok("tags", db, "a").stdout == '{"t": "2"}\n'
    # A ttl may grow by its expiry bucket (0.1%), never shrink but by the time it took.
    assert 98 < float(ok("ttl", db, "a").stdout) <= 100.1
    assert 58 < float(ok("ttl", db, "b").stdout) <= 60.06
    bad = invoke("import", db, "-", input=b'{"key":"z","value":1}\nnope\n')
    assert bad.exit_code == 1 and bad.stderr.startswith("error: stdin line 2: not JSON")
    assert invoke("get", db, "z").exit_code == 1
    missing = invoke("import", db, str(tmp_path / "missing.jsonl"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr


# --- copy ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "destination"),
    [("sqlite", "redis"), ("redis", "postgresql"), ("postgresql", "chroma"), ("chroma", "sqlite")],
)
def test_copy_between_backends(
    tmp_path: Path,
    redis_url: str,
    postgres_url: str,
    namespace: str,
    source: str,
    destination: str,
) -> None:
    urls = {
        "sqlite": f"sqlite:///{tmp_path / 'copy.db'}",
        "redis": server(redis_url),
        "postgresql": server(postgres_url),
        "chroma": f"chroma:///{tmp_path / 'chroma'}",
    }
    data = dataset(150)
    start = time.monotonic()
    asyncio.run(fill(urls[source], namespace, data))
    result = ok("copy", urls[source], urls[destination], "-n", namespace, "--batch", "40")
    assert result.stdout == "copied 150 keys\n"
    assert_same(read_export(export(urls[destination], namespace)), data, time.monotonic() - start)


def test_copy_onto_itself_is_refused(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'self.db'}"
    ok("set", db, "k", "1", "-n", "a")
    for args in (
        (db, db),
        (db, db, "-n", "a"),
        (f"{db}?namespace=a", db, "--to-namespace", "a"),
    ):
        result = invoke("copy", *args)
        assert result.exit_code == 2, result.output
        assert "is both the source and the destination" in result.stderr
    assert ok("copy", db, db, "-n", "a", "--to-namespace", "b").stdout == "copied 1 keys\n"
    assert ok("get", db, "k", "-n", "b").stdout == "1\n"


def test_progress_lines_when_stderr_is_not_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dmem._cli_common

    monkeypatch.setattr(dmem._cli_common, "PROGRESS_INTERVAL", 0.0)
    src, dst = f"sqlite:///{tmp_path / 'p1.db'}", f"sqlite:///{tmp_path / 'p2.db'}"
    asyncio.run(fill(src, "", {f"k{i}": (i, {}, None) for i in range(50)}))
    result = ok("copy", src, dst, "--batch", "10")
    lines = result.stderr.splitlines()
    assert lines[0].startswith("copying: 10/50 keys (20%)") and lines[-1].startswith(
        "copying: 50/50 keys (100%)"
    )
    assert "\r" not in result.stderr and result.stdout == "copied 50 keys\n"
    exported = ok("export", src, "--batch", "25")
    assert [line.split(",")[0] for line in exported.stderr.splitlines()] == [
        "exporting: 25/50 keys (50%)",
        "exporting: 50/50 keys (100%)",
        "exported 50 keys",
    ]
    assert len(exported.stdout.splitlines()) == 50
    quiet = ok("export", src, "--quiet")
    assert quiet.stderr == "" and len(quiet.stdout.splitlines()) == 50


def test_copy_groups_keys_into_few_set_many_calls(tmp_path: Path) -> None:
    """What copy does per batch, counted at the provider: one set_many per group."""
    from dmem._cli_transfer import Writer, read_batches

    calls: list[int] = []

    class Count:
        def wrap(self, inner: dmem.KVProvider) -> dmem.KVProvider:
            class Counting(dmem.Wrapper):
                async def set_many(self, items: Any, **options: Any) -> int:
                    calls.append(len(items))
                    return await self.inner.set_many(items, **options)

            return Counting(inner)

    src, dst = f"sqlite:///{tmp_path / 'g1.db'}", f"sqlite:///{tmp_path / 'g2.db'}"
    # 10 tag groups, each written by its own set_many with a ttl: expiries within ms.
    data: dict[str, Entry] = {f"k{i}": (i, {"batch": str(i % 10)}, 3600.0) for i in range(5000)}
    asyncio.run(fill(src, "", data))

    async def copy() -> None:
        async with dmem.open(src) as source, dmem.open(dst, middleware=[Count()]) as target:
            writer = Writer(target, 500)
            async for records, _ in read_batches(source, "*", 500):
                await writer.add(records)
            await writer.flush()
            assert writer.written == 5000

    asyncio.run(copy())
    # 10 groups, each split at most once more by an expiry-bucket boundary.
    assert sum(calls) == 5000 and len(calls) <= 30, calls


def test_copy_redis_to_chroma_close_to_chromas_own_set_many(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    """5,000 keys in 10 tag groups with a ttl: the copy against set_many of the same keys.

    Measured on 2 busy cores: set_many 1.5-1.8 s, copy 1.7-1.9x that (each key still costs
    two reads at the source: its tags and its ttl). The bound leaves room for a busier
    machine; the copy took 69 s before it batched.
    """
    data: dict[str, Entry] = {
        f"user:{i}": ({"id": i, "name": f"user {i}", "blob": "x" * 80}, {"g": str(i % 10)}, 3600.0)
        for i in range(5000)
    }
    redis = server(redis_url)
    start = time.monotonic()
    asyncio.run(fill(redis, namespace, data))
    began = time.perf_counter()
    asyncio.run(fill(f"chroma:///{tmp_path / 'own'}", namespace, data))
    own = time.perf_counter() - began
    began = time.perf_counter()
    target = f"chroma:///{tmp_path / 'copy'}"
    result = ok("copy", redis, target, "-n", namespace, "--quiet")
    copied = time.perf_counter() - began
    print(f"\nRedis -> Chroma, 5,000 keys: set_many {own:.2f} s, copy {copied:.2f} s")
    assert result.stdout == "copied 5000 keys\n"
    assert copied <= 3 * own + 2, (copied, own)
    sample = {key: data[key] for key in list(data)[::250]}
    found = read_export(export(target, namespace))
    assert_same({key: found[key] for key in sample}, sample, time.monotonic() - start)
