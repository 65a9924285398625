"""``dmem rekey`` through click's runner on SQLite files: rotation in place, ttls and tags
kept, idempotent, keys only from the environment or files, problems reported (exit 1), and
a concurrent write never overwritten (a real write lands between rekey's read and its swap).
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dmem
import pytest
from click.testing import CliRunner, Result
from dmem import Compression
from dmem._cli_common import Progress
from dmem._cli_rekey import _rekey_all
from dmem.cli import main
from dmem.middleware import Encryption, Wrapper
from dmem.middleware._encryption import envelope_key_id
from dmem_conformance.testkit import assert_secret_hidden

OLD = os.urandom(32)
NEW = os.urandom(32)


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """CLI arguments naming both keys: the old one in an env var, the new one in a file."""
    monkeypatch.setenv("DMEM_TEST_OLD_KEY", base64.b64encode(OLD).decode())
    (tmp_path / "new.key").write_bytes(NEW)
    return ["--key", "old=env:DMEM_TEST_OLD_KEY", "--key", f"new=file:{tmp_path / 'new.key'}"]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def old_chain() -> list[Any]:
    return [Compression(threshold=16), Encryption(keys={"old": OLD})]


def new_only() -> list[Any]:
    return [Compression(threshold=16), Encryption(keys={"new": NEW})]


async def fill(url: str, count: int = 30) -> None:
    async with dmem.open(url, middleware=old_chain()) as store:
        await store.set_many({f"k{i}": {"i": i, "text": "x" * i} for i in range(count)})
        await store.set("with-ttl", "expires", ttl=500, tags={"team": "a"})
        await store.set("tagged", [1, 2, 3], tags={"kind": "list", "team": "b"})


async def key_ids(url: str, namespace: str | None = None) -> dict[str, str]:
    async with dmem.open(url, **({"namespace": namespace} if namespace else {})) as raw:
        found: dict[str, str] = {}
        async for key, stored in raw.provider.scan(dmem.compile_pattern("*")):
            found[key] = envelope_key_id(stored)
        return found


def test_rekey_rotates_in_place_and_is_idempotent(tmp_path: Path, keys: list[str]) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    asyncio.run(fill(url))
    assert set(asyncio.run(key_ids(url)).values()) == {"old"}

    first = invoke("rekey", url, *keys, "--primary", "new", "--batch", "7")
    assert first.exit_code == 0, first.output
    assert "rekeyed 32 keys to key id 'new'; 0 were already under it" in first.output
    assert set(asyncio.run(key_ids(url)).values()) == {"new"}

    async def check() -> None:
        async with dmem.open(url, middleware=new_only()) as store:
            assert await store.get_many([f"k{i}" for i in range(30)]) == {
                f"k{i}": {"i": i, "text": "x" * i} for i in range(30)
            }
            assert await store.get("with-ttl") == "expires"
            left = await store.ttl("with-ttl")
            assert left is not None and 490 < left <= 500, left
            assert await store.get_tags("with-ttl") == {"team": "a"}
            assert await store.get_tags("tagged") == {"kind": "list", "team": "b"}
            assert await store.ttl("tagged") is None

    asyncio.run(check())
    again = invoke("rekey", url, *keys, "--primary", "new")
    assert again.exit_code == 0, again.output
    assert "rekeyed 0 keys to key id 'new'; 32 were already under it" in again.output


def test_rekey_shows_progress(
    tmp_path: Path, keys: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'progress.db'}"
    asyncio.run(fill(url, 10))
    monkeypatch.setattr("dmem._cli_common.PROGRESS_INTERVAL", 0.0)  # a line every batch
    shown = invoke("rekey", url, *keys, "--primary", "new", "--batch", "4")
    assert shown.exit_code == 0, shown.output
    assert "rekeying: 4/12 keys (33%)" in shown.output
    assert "rekeying: 12/12 keys (100%)" in shown.output
    quiet = invoke("rekey", url, *keys, "--primary", "new", "--batch", "4", "--quiet")
    assert quiet.exit_code == 0 and "rekeying:" not in quiet.output


def test_rekey_stays_in_its_namespace_and_pattern(tmp_path: Path, keys: list[str]) -> None:
    url = f"sqlite:///{tmp_path / 'ns.db'}"

    async def setup() -> None:
        for namespace in ("a", "b"):
            async with dmem.open(url, namespace=namespace, middleware=old_chain()) as store:
                await store.set_many({"user:1": 1, "user:2": 2, "other": 3})

    asyncio.run(setup())
    result = invoke("rekey", url, *keys, "--primary", "new", "-n", "a", "--pattern", "user:*")
    assert result.exit_code == 0, result.output
    assert "rekeyed 2 keys" in result.output
    assert asyncio.run(key_ids(url, "a")) == {"user:1": "new", "user:2": "new", "other": "old"}
    assert set(asyncio.run(key_ids(url, "b")).values()) == {"old"}


def test_problems_are_reported_with_exit_1(tmp_path: Path, keys: list[str]) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"

    async def setup() -> None:
        await fill(url, 3)
        async with dmem.open(url) as raw:
            await raw.set("plain", "written without encryption")
        stranger = [Encryption(keys={"lost": os.urandom(32)})]
        async with dmem.open(url, middleware=stranger) as other:
            await other.set("unknown", "under a key nobody gave")

    asyncio.run(setup())
    result = invoke("rekey", url, *keys, "--primary", "new")
    assert result.exit_code == 1, result.output
    assert "rekeyed 5 keys" in result.output
    assert "1 values are not encrypted" in result.output and "'plain'" in result.output
    assert "1 values cannot be decrypted" in result.output and "'unknown'" in result.output

    adopted = invoke("rekey", url, *keys, "--primary", "new", "--include-plaintext")
    assert adopted.exit_code == 1, adopted.output  # 'unknown' still cannot be read
    assert "rekeyed 1 keys" in adopted.output and "not encrypted" not in adopted.output

    async def check() -> None:
        async with dmem.open(url, middleware=new_only()) as store:
            assert await store.get("plain") == "written without encryption"

    asyncio.run(check())


def test_keys_never_on_the_command_line(tmp_path: Path, keys: list[str]) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    asyncio.run(fill(url, 1))
    pasted = base64.b64encode(NEW).decode()
    refused = invoke("rekey", url, "--key", f"new={pasted}")
    assert refused.exit_code == 2, refused.output
    assert "never taken on the command line" in refused.output
    assert_secret_hidden(pasted, [refused.output], percent_encoded=False)
    assert not (tmp_path / "k.db-journal").exists()

    for args, message in [
        ((), "at least one --key"),
        (("--key", "old=env:DMEM_TEST_UNSET_VAR"), "is not set"),
        ((*keys,), "say which one encrypts"),
        ((*keys, "--primary", "nope"), "not one of its key ids"),
        (("--key", "a=env:DMEM_TEST_OLD_KEY", "--key", "a=env:DMEM_TEST_OLD_KEY"), "twice"),
    ]:
        result = invoke("rekey", url, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    memory = invoke("rekey", "memory://x", *keys, "--primary", "new")
    assert memory.exit_code == 2 and "memory://" in memory.output
    missing = invoke("rekey", f"sqlite:///{tmp_path / 'nope.db'}", *keys, "--primary", "new")
    assert missing.exit_code == 1 and "StoreNotFoundError" in missing.output
    assert not (tmp_path / "nope.db").exists()
    for result in (refused, memory, missing):
        for key in (OLD, NEW):
            assert_secret_hidden(
                base64.b64encode(key).decode(), [result.output], size=8, percent_encoded=False
            )


class _WriteBeforeSwap(Wrapper):
    """A real SQLite provider; before each of its first ``times`` compare_and_sets, another
    connection writes the key (a concurrent writer, landing at the worst moment)."""

    def __init__(self, inner: Any, writer: dmem.Store, times: int) -> None:
        super().__init__(inner)
        self.writer = writer
        self.times = times
        self.swaps = 0

    async def compare_and_set(
        self,
        key: str,
        expected: bytes,
        value: bytes,
        *,
        ttl_ms: int | None,
        tags: Mapping[str, str],
    ) -> bool:
        self.swaps += 1
        if self.swaps <= self.times:
            await self.writer.set(key, f"concurrent write {self.swaps}")
        return await super().compare_and_set(key, expected, value, ttl_ms=ttl_ms, tags=tags)


async def test_a_concurrent_write_is_never_overwritten(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    spec = Encryption(keys={"old": OLD, "new": NEW}, primary="new")
    async with (
        dmem.open(url, middleware=old_chain(), share_connection=False) as writer,
        dmem.open(url, share_connection=False) as raw,
        dmem.open(url, middleware=new_only()) as reader,
    ):
        await writer.set("hot", "original")
        # Two writes under the old key land between read and swap; the third round's swap
        # goes through, on the value the writer stored last.
        racing = _WriteBeforeSwap(raw.provider, writer, times=2)
        with Progress("rekeying", 1, quiet=True) as progress:
            counts = await _rekey_all(racing, spec, ["hot"], 10, False, progress)
        assert counts.rekeyed == 1 and racing.swaps == 3
        assert await reader.get("hot") == "concurrent write 2"

        # A writer already on the new key: rekey finds it current and leaves it alone.
        new_writer = _WriteBeforeSwap(raw.provider, writer, times=0)
        async with dmem.open(url, middleware=new_only()) as fresh:
            await fresh.set("hot", "written under new")
        with Progress("rekeying", 1, quiet=True) as progress:
            counts = await _rekey_all(new_writer, spec, ["hot"], 10, False, progress)
        assert counts.current == 1 and new_writer.swaps == 0
        assert await reader.get("hot") == "written under new"
