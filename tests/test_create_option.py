"""``create=False``: opening what does not exist is StoreNotFoundError, and nothing is made.

The CLI opens stores that way for every command that does not write, so a typo in a
SQLite path or Chroma directory says so instead of leaving an empty database behind.
"""

from __future__ import annotations

from pathlib import Path

import dmem
import pytest
from click.testing import CliRunner
from dmem.cli import main


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("scheme", ["sqlite", "chroma"])
async def test_open_with_create_false_makes_nothing(tmp_path: Path, scheme: str) -> None:
    url = f"{scheme}:///{tmp_path}/missing/store"
    with pytest.raises(dmem.StoreNotFoundError, match="does not exist"):
        await dmem.open(url, create=False)
    with pytest.raises(FileNotFoundError):  # it is also the builtin a caller would catch
        await dmem.open(f"{url}?create=false")
    assert _tree(tmp_path) == []


async def test_the_vector_store_takes_it_too(tmp_path: Path) -> None:
    with pytest.raises(dmem.StoreNotFoundError):
        await dmem.open_vector(f"chroma:///{tmp_path}/vectors", embedder="hash", create=False)
    assert _tree(tmp_path) == []


async def test_existing_storage_opens_with_create_false(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/there.db"
    async with dmem.open(url) as store:
        await store.set("k", 1)
    async with dmem.open(url, create=False) as store:
        assert await store.get("k") == 1


async def test_providers_without_local_storage_accept_and_ignore_it() -> None:
    async with dmem.open("memory://", create=False) as store:
        assert await store.set("k", 1)


def test_create_must_be_a_bool() -> None:
    with pytest.raises(dmem.InvalidArgumentError, match="create"):
        dmem.create_provider("memory://", {"create": "maybe"})
    with pytest.raises(dmem.InvalidArgumentError, match="create"):
        dmem.create_provider("sqlite://", {"create": 0})


_READ_ONLY = [
    ["get", "{url}", "k"],
    ["get", "--meta", "{url}", "k"],
    ["keys", "{url}"],
    ["count", "{url}"],
    ["ttl", "{url}", "k"],
    ["tags", "{url}", "k"],
    ["find-by-tag", "{url}", "a", "b"],
    ["health", "{url}"],
    ["health", "--json", "{url}"],
    ["export", "{url}"],
    ["delete", "{url}", "k"],
    ["expire", "{url}", "k", "5"],
    ["persist", "{url}", "k"],
    ["clear", "--yes", "{url}"],
]


@pytest.mark.parametrize("scheme", ["sqlite", "chroma"])
@pytest.mark.parametrize("command", _READ_ONLY, ids=lambda c: " ".join(c[:-1]))
def test_cli_commands_that_do_not_write_create_nothing(
    tmp_path: Path, scheme: str, command: list[str]
) -> None:
    url = f"{scheme}:///{tmp_path}/typo"
    result = CliRunner().invoke(main, [part.format(url=url) for part in command])
    assert result.exit_code != 0
    assert "does not exist" in result.output, result.output
    assert "Traceback" not in result.output
    assert _tree(tmp_path) == []


def test_cli_copy_from_a_missing_source_creates_neither(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["copy", f"sqlite:///{tmp_path}/typo.db", f"sqlite:///{tmp_path}/dst.db"]
    )
    assert result.exit_code != 0
    assert "does not exist" in result.output
    assert _tree(tmp_path) == []


def test_cli_set_creates_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new.db"
    result = CliRunner().invoke(main, ["set", url, "k", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new.db").exists()
    result = CliRunner().invoke(main, ["get", url, "k"])
    assert result.exit_code == 0 and result.output.strip() == "1"
