"""Many namespaces, one client: Chroma stores of a process on the same Chroma (a directory,
a server) share one client, ``with_namespace``, ``dmem.open`` and ``dmem.open_vector``
alike, closed with the last store; ``share_connection=false`` opts out."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import dmem
import pytest
from dmem import NotInitializedError, Store
from dmem_chroma import _shared
from dmem_chroma._client import parse_config

COUNT = 20  # each namespace is a Chroma collection: opening one is a real call


def client_of(store: Any) -> Any:
    return store.provider._conn._client


def users(url: str, **options: Any) -> int:
    config = parse_config(url, options)
    path = os.path.abspath(config.path) if config.mode == "persistent" else ""
    return _shared._CLIENTS.users(_shared.connection_key(config, path))


async def check_isolated(stores: list[Store]) -> None:
    for i, store in enumerate(stores):
        await store.set("k", i, tags={"n": str(i)})
    for i, store in enumerate(stores):
        assert await store.get("k") == i, f"namespace {store.namespace!r} lost its key"
        assert await store.find_by_tag("n", str(i)) == ["k"]
        assert await store.count() == 1


@pytest.mark.parametrize("where", ["embedded", "server"])
async def test_namespaces_share_one_client(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"chroma:///{tmp_path / 'data'}" if where == "embedded" else None
    if url is None:
        url = request.getfixturevalue("chroma_server_url")
    prefix = uuid.uuid4().hex[:8]
    kv = await dmem.open(url, namespace=f"{prefix}-root")
    derived = [await kv.with_namespace(f"{prefix}-{i}") for i in range(COUNT)]
    opened = await dmem.open(url, namespace=f"{prefix}-opened")
    vectors = await dmem.open_vector(url, namespace=f"{prefix}-v", embedder="hash")
    client = client_of(kv)
    assert client is not None
    assert all(client_of(s) is client for s in [*derived, opened])
    assert vectors.provider._conn._client is client, "vector stores share it too"  # type: ignore[attr-defined]
    assert users(url) == COUNT + 3
    await check_isolated([kv, *derived, opened])
    own = await dmem.open(url, namespace=f"{prefix}-root", share_connection=False)
    assert client_of(own) is not client
    assert await own.get("k") == 0, "the same data through a client of its own"
    # The parent closes first; the others keep the client.
    await kv.aclose()
    with pytest.raises(NotInitializedError):
        await kv.get("k")
    assert await derived[0].get("k") == 1
    for store in [*derived, opened, own]:
        await store.clear()
        await store.aclose()
    await vectors.aclose()
    assert users(url) == 0, "the last store did not give the client back"
    with pytest.raises(NotInitializedError):
        await derived[0].get("k")


async def test_with_namespace_needs_an_open_provider(tmp_path: Path) -> None:
    provider = dmem.create_provider(f"chroma:///{tmp_path / 'x'}", {})
    with pytest.raises(NotInitializedError):
        provider.with_namespace("x")


async def test_unreachable_server_leaves_no_client(chroma_down_url: str) -> None:
    for _ in range(2):
        with pytest.raises(dmem.ProviderUnavailableError):
            await dmem.open(chroma_down_url, timeout=2)
    assert users(chroma_down_url, timeout=2) == 0


def test_the_connection_key() -> None:
    def key(url: str, **options: Any) -> Any:
        config = parse_config(url, options)
        return _shared.connection_key(config, config.path)

    base = key("chroma+http://h:8000", namespace="a")
    assert key("chroma+http://h:8000", namespace="b", max_value_bytes=5 * 2**20) == base
    assert key("chroma+http://h:8000", token="t0ken") != base
    assert key("chroma+http://h:8001") != base
    assert key("chroma+http://h:8000", database="other") != base
    assert key("chroma+http://h:8000", share_connection=False) is None
    assert key("chroma:///a") != key("chroma:///b")
