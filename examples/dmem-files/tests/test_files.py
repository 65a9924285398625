"""What the suite cannot see from one process: the layout on disk, atomic writes, and
``if_not_exists`` raced by processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import dmem
import pytest


def test_the_entry_point_registers_the_scheme_and_its_down_twin() -> None:
    spec = dmem.registry().provider_for("kv", "files")
    assert spec is not None and spec.creates_storage and spec.unreachable_url is not None
    twin = spec.unreachable_url("files:///srv/kv?fsync=false&create=false")
    assert twin == "files:///dev/null/dmem-unreachable?fsync=false"

    async def go() -> None:
        with pytest.raises(dmem.ProviderUnavailableError):
            await dmem.open(twin)

    asyncio.run(go())


@pytest.mark.parametrize(
    "url", ["files://", "files:///", "files:///tmp/x?sweep=1", "files:///tmp/x?fsync=maybe"]
)
def test_a_bad_url_is_refused_before_any_io(url: str) -> None:
    with pytest.raises(dmem.InvalidArgumentError):
        dmem.create_provider(url, {})


def test_one_file_per_key_holding_the_key_its_tags_and_the_value(tmp_path: Path) -> None:
    async def go() -> None:
        async with dmem.open(f"files://{tmp_path}", namespace="app") as kv:
            await kv.set("user/1:ä", {"name": "Ada"}, ttl=60, tags={"team": "x"})

    asyncio.run(go())
    (space,) = tmp_path.iterdir()
    files = sorted(p.name for p in space.iterdir())
    assert files == [".lock", files[1]] and len(files[1]) == 64  # no temporary file left
    header, value = (space / files[1]).read_bytes().split(b"\n", 1)
    record = json.loads(header)
    assert (record["key"], record["tags"]) == ("user/1:ä", {"team": "x"})
    assert value == dmem.encode({"name": "Ada"})


def test_create_false_opens_only_an_existing_directory(tmp_path: Path) -> None:
    async def go() -> None:
        with pytest.raises(dmem.StoreNotFoundError):
            await dmem.open(f"files://{tmp_path / 'missing'}", create=False)
        assert not (tmp_path / "missing").exists()

    asyncio.run(go())


def test_a_directory_out_of_reach_is_unavailable_and_unhealthy(tmp_path: Path) -> None:
    async def go() -> None:
        kv = await dmem.open(f"files://{tmp_path / 'kv'}")
        try:
            await kv.set("k", 1)
            (tmp_path / "kv").rename(tmp_path / "gone")  # the directory goes away
            with pytest.raises(dmem.ProviderUnavailableError):
                await kv.set("k", 2)
            assert (await kv.health()).status == "unhealthy"
        finally:
            await kv.aclose()

    asyncio.run(go())


_RACER = textwrap.dedent(
    """
    import asyncio, sys, time
    import dmem

    async def main(url, me, start):
        async with dmem.open(url, namespace="race") as kv:
            while time.time() < start:
                await asyncio.sleep(0.001)
            keys = [f"k{i}" for i in range(40)]
            if me % 2:
                keys.reverse()
            won = [k for k in keys if await kv.set(k, me, ttl=60, if_not_exists=True)]
            print(" ".join(won))

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
    """
)


def test_if_not_exists_has_one_winner_per_key_across_processes(tmp_path: Path) -> None:
    url = f"files://{tmp_path / 'kv'}"
    start = __import__("time").time() + 1.5  # every racer imports dmem first, then starts
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, url, str(me), str(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for me in range(4)
    ]
    won = [racer.communicate(timeout=60)[0].split() for racer in racers]
    assert all(racer.returncode == 0 for racer in racers)
    everything = [key for keys in won for key in keys]
    assert sorted(everything) == sorted(f"k{i}" for i in range(40))  # each key won once

    async def holders() -> None:
        async with dmem.open(url, namespace="race") as kv:
            for me, keys in enumerate(won):
                assert await kv.get_many(keys) == {key: me for key in keys}

    asyncio.run(holders())
