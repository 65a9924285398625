"""langchain-tests' standard BaseStore suites, sync and async, on both stores and every backend.

``BaseStoreSyncTests`` / ``BaseStoreAsyncTests`` (langchain_tests.integration_tests) as
LangChain ships them, unchanged: each class supplies only the fixtures they ask for, an empty
store (a namespace of the test's own on the ``url`` fixture's backend) and three values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_dmem import DmemByteStore, DmemStore
from langchain_tests.integration_tests import BaseStoreAsyncTests, BaseStoreSyncTests

JSON_VALUES = ({"name": "Ada", "tags": ["x", 1, 2.5, None, True]}, "bar", b"\x00\xff")


class TestDmemByteStoreSync(BaseStoreSyncTests[bytes]):
    @pytest.fixture
    def kv_store(self, url: str, namespace: str) -> Iterator[DmemByteStore]:
        with DmemByteStore(url, namespace=namespace) as store:
            yield store

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", b"\x00bar\xff", b""


class TestDmemByteStoreAsync(BaseStoreAsyncTests[bytes]):
    @pytest.fixture
    async def kv_store(self, url: str, namespace: str) -> AsyncIterator[DmemByteStore]:
        async with DmemByteStore(url, namespace=namespace) as store:
            yield store

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", b"\x00bar\xff", b""


class TestDmemStoreSync(BaseStoreSyncTests[Any]):
    @pytest.fixture
    def kv_store(self, url: str, namespace: str) -> Iterator[DmemStore]:
        with DmemStore(url, namespace=namespace) as store:
            yield store

    @pytest.fixture
    def three_values(self) -> tuple[Any, Any, Any]:
        return JSON_VALUES


class TestDmemStoreAsync(BaseStoreAsyncTests[Any]):
    @pytest.fixture
    async def kv_store(self, url: str, namespace: str) -> AsyncIterator[DmemStore]:
        async with DmemStore(url, namespace=namespace) as store:
            yield store

    @pytest.fixture
    def three_values(self) -> tuple[Any, Any, Any]:
        return JSON_VALUES
