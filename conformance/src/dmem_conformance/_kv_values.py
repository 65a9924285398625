"""Suite tests: keys, values, invalid input, single calls and batches."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, ClassVar

import dmem
import pytest
from dmem import (
    InvalidArgumentError,
    InvalidKeyError,
    InvalidPatternError,
    InvalidValueError,
    KeyNotFoundError,
)
from hypothesis import strategies as st

from ._base import SuiteBase
from ._marks import clause
from .strategies import (
    AWKWARD_KEYS,
    AWKWARD_VALUES,
    expected_value,
    keys,
    same_value,
    tag_maps,
    values,
)

__all__ = ["ValueTests"]

_BAD_KEYS: tuple[Any, ...] = ("", "a\x00b", "x" * 1025, "é" * 513, "\ud800", 1, None, b"k")
_BAD_VALUES: tuple[Any, ...] = (
    math.nan,
    math.inf,
    -math.inf,
    {1: "x"},
    {"a": [1, {"b": math.nan}]},
    {1, 2},
    object(),
    2**63,
    -(2**63) - 1,
    "\udcff",
    ["ok", b"nested bytes"],
)
_BAD_TTLS: tuple[Any, ...] = (0, -1, -0.5, math.nan, math.inf, True, "1", 11 * 366 * 86400)


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):  # ``depth`` nested lists around a leaf
        value = [value]
    return value


async def _assert_roundtrip(kv: dmem.Store, key: str, value: Any) -> None:
    assert await kv.set(key, value) is True
    got = await kv.get(key, default=_MISSING)
    want = expected_value(value)
    assert got is not _MISSING, f"{key!r} = {value!r} read back as missing"
    assert same_value(got, want), f"{key!r}: wrote {value!r}, read back {got!r}"


_MISSING = object()
_RESERVED = frozenset({"old", "dup", "fresh"})


def st_items() -> st.SearchStrategy[dict[str, Any]]:
    """Batches for set_many; keys the test itself uses are left out."""
    return st.dictionaries(
        keys().filter(lambda k: k not in _RESERVED), values(max_leaves=4), max_size=6
    )


class ValueTests(SuiteBase):
    _dmem_suite_class: ClassVar[bool] = True

    @clause("keys.exact", given={"key": keys()})
    async def test_any_valid_key_round_trips(self, store: dmem.Store, key: str) -> None:
        await _assert_roundtrip(store, key, {"k": key})
        assert await store.exists(key)
        assert await store.keys() == [key]

    @clause("keys.exact")
    async def test_keys_are_byte_exact(self, store: dmem.Store) -> None:
        nfc = "é"
        nfd = unicodedata.normalize("NFD", nfc)
        for index, key in enumerate(AWKWARD_KEYS):
            assert await store.set(key, index)
        for index, key in enumerate(AWKWARD_KEYS):
            got = await store.get(key)
            assert same_value(got, index), f"key {key!r} read {got!r}, wrote {index}"
        assert sorted(await store.keys()) == sorted(AWKWARD_KEYS)
        assert await store.get(nfc) != await store.get(nfd)
        assert await store.get("a") != await store.get("A")
        assert await store.get("a ") is None
        assert await store.count() == len(AWKWARD_KEYS)

    @clause("values.roundtrip", given={"value": values()})
    async def test_values_round_trip_exactly(self, store: dmem.Store, value: Any) -> None:
        await _assert_roundtrip(store, "v", value)
        got = await store.get_many(["v"])
        assert same_value(got.get("v", _MISSING), expected_value(value)), "get_many differs"
        scanned = [v async for _, v in store.scan()]
        assert len(scanned) == 1, f"scan yielded {len(scanned)} items for one key"
        assert same_value(scanned[0], expected_value(value)), "scan differs"

    @clause("values.awkward")
    async def test_awkward_values(self, store: dmem.Store) -> None:
        for index, value in enumerate(AWKWARD_VALUES):
            await _assert_roundtrip(store, f"k{index}", value)
        got = await store.get("k0", default="DEFAULT")
        assert got == "" and type(got) is str, f"'' read back as {got!r}"
        got = await store.get("k1", default="DEFAULT")
        assert got == b"" and type(got) is bytes, f"b'' read back as {got!r}"
        assert await store.get("k2") == "123"
        negzero = await store.get("k5")
        assert isinstance(negzero, float) and math.copysign(1.0, negzero) < 0
        many = await store.get_many([f"k{i}" for i in range(len(AWKWARD_VALUES))])
        assert len(many) == len(AWKWARD_VALUES), "get_many lost awkward values"
        for index, value in enumerate(AWKWARD_VALUES):
            assert same_value(many[f"k{index}"], expected_value(value)), value
        assert await store.count() == len(AWKWARD_VALUES)
        deep = _nested(64)
        await _assert_roundtrip(store, "deep", deep)

    @clause("values.none-is-live")
    async def test_none_is_a_live_value(self, store: dmem.Store) -> None:
        assert await store.set("n", None)
        assert await store.exists("n")
        assert await store.get("n", default="DEFAULT") is None
        assert await store.get_many(["n"]) == {"n": None}
        assert await store.keys() == ["n"]
        assert await store.set("n", None, if_not_exists=True) is False
        assert await store.delete("n") is True
        assert await store.get("n", default="DEFAULT") == "DEFAULT"

    @clause("values.large")
    async def test_large_values(self, store: dmem.Store) -> None:
        blob = bytes(range(256)) * (4 * 1024 * 4)  # 4 MiB of bytes
        text = "x" * (4 * 1024 * 1024 - 2)  # 4 MiB of JSON text with its quotes
        assert await store.set("blob", blob)
        assert await store.set("text", text)
        assert await store.get("blob") == blob
        assert await store.get("text") == text
        assert await store.get_many(["blob"]) == {"blob": blob}

    # --- invalid input ----------------------------------------------------------------------
    @clause("errors.invalid-key")
    async def test_invalid_keys_rejected(self, store: dmem.Store) -> None:
        for bad in _BAD_KEYS:
            calls: list[Callable[[], Awaitable[Any]]] = [
                partial(store.set, bad, 1),
                partial(store.get, bad),
                partial(store.exists, bad),
                partial(store.delete, bad),
                partial(store.get_tags, bad),
                partial(store.ttl, bad),
                partial(store.expire, bad, 10),
                partial(store.persist, bad),
                partial(store.get_many, ["ok", bad]),
                partial(store.delete_many, ["ok", bad]),
            ]
            for call in calls:
                with pytest.raises(InvalidKeyError):
                    await call()
        assert await store.count() == 0

    @clause("errors.invalid-value")
    async def test_invalid_values_rejected(self, store: dmem.Store) -> None:
        for bad in (*_BAD_VALUES, _nested(65)):
            with pytest.raises(InvalidValueError):
                await store.set("k", bad)
        assert await store.count() == 0
        assert not await store.exists("k")

    @clause("errors.invalid-argument")
    async def test_invalid_arguments_rejected(self, store: dmem.Store) -> None:
        await store.set("live", 1)
        for bad in _BAD_TTLS:
            with pytest.raises(InvalidArgumentError):
                await store.set("k", 1, ttl=bad)
            with pytest.raises(InvalidArgumentError):
                await store.expire("live", bad)
            with pytest.raises(InvalidArgumentError):
                await store.set_many({"k": 1}, ttl=bad)
        for bad_tags in ({"": "x"}, {"a": 1}, {1: "a"}, {"a\x00": "x"}, ["a"], {"a": "\ud800"}):
            with pytest.raises(InvalidArgumentError):
                await store.set("k", 1, tags=bad_tags)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            await store.set("k", 1, tags={f"t{i}": "x" for i in range(65)})
        with pytest.raises(InvalidArgumentError):
            await store.set("k", 1, if_not_exists=1)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            await store.find_by_tag("", "x")
        assert await store.keys() == ["live"]
        assert await store.ttl("live") is None

    @clause("errors.invalid-pattern")
    async def test_invalid_patterns_rejected(self, store: dmem.Store) -> None:
        await store.set("a", 1)
        for bad in ("[", "a[b", "a\\", "[]", "[z-a]"):
            with pytest.raises(InvalidPatternError):
                await store.keys(bad)
            with pytest.raises(InvalidPatternError):
                await store.count(bad)
            with pytest.raises(InvalidPatternError):
                [item async for item in store.scan(bad)]

    @clause("errors.batch-validation")
    async def test_batch_with_one_bad_item_writes_nothing(self, store: dmem.Store) -> None:
        good = {f"g{i}": i for i in range(5)}
        with pytest.raises(InvalidValueError):
            await store.set_many({**good, "bad": math.nan})
        with pytest.raises(InvalidKeyError):
            await store.set_many([*good.items(), ("", 1)])
        with pytest.raises(InvalidValueError):
            await store.set_many([("first", {1: 2}), *good.items()])
        assert await store.count() == 0, "a rejected batch wrote some of its items"
        await store.set_many(good)
        with pytest.raises(InvalidKeyError):
            await store.delete_many(["g0", "g1", "a\x00"])
        assert await store.count() == 5, "a rejected delete_many removed some keys"

    @clause("errors.key-not-found")
    async def test_missing_key_errors(self, store: dmem.Store) -> None:
        for call in (store.ttl, store.get_tags):
            with pytest.raises(KeyNotFoundError):
                await call("missing")
            with pytest.raises(KeyError):
                await call("missing")
        await store.set("gone", 1)
        await store.delete("gone")
        with pytest.raises(KeyNotFoundError):
            await store.ttl("gone")
        with pytest.raises(KeyNotFoundError):
            await store.get_tags("gone")

    # --- single calls and batches -----------------------------------------------------------
    @clause("ops.return-values")
    async def test_single_call_results(self, store: dmem.Store) -> None:
        assert await store.get("k") is None
        assert await store.get("k", default=7) == 7
        assert await store.exists("k") is False
        assert await store.delete("k") is False, "delete of a missing key returned True"
        assert await store.set("k", 1) is True
        assert await store.set("k", 2) is True
        assert await store.get("k") == 2
        assert await store.exists("k") is True
        assert await store.expire("k", 100) is True
        assert await store.persist("k") is True
        assert await store.expire("nope", 100) is False
        assert await store.persist("nope") is False
        assert await store.delete("k") is True
        assert await store.delete("k") is False, "second delete returned True"
        assert await store.exists("k") is False
        assert await store.count() == 0

    @clause("batch.get-many")
    async def test_get_many(self, store: dmem.Store) -> None:
        assert await store.get_many([]) == {}
        await store.set_many({"a": 1, "b": None, "c": ""})
        got = await store.get_many(["a", "b", "missing", "a", "c", "b"])
        assert got == {"a": 1, "b": None, "c": ""}
        assert await store.get_many(("missing",)) == {}
        assert await store.get_many(iter(["c"])) == {"c": ""}

    @clause("batch.set-many", given={"items": st_items(), "tags": tag_maps()})
    async def test_set_many(
        self, store: dmem.Store, items: dict[str, Any], tags: dict[str, str]
    ) -> None:
        await store.set("old", "x", tags={"was": "here"}, ttl=100)
        written = await store.set_many({**items, "old": 1}, tags=tags)
        assert written == len(items) + 1
        assert await store.count() == len(items) + 1
        for key, value in items.items():
            assert same_value(await store.get(key), expected_value(value))
            assert await store.get_tags(key) == tags
        assert await store.get_tags("old") == tags, "set_many kept old tags"
        assert await store.ttl("old") is None, "set_many kept the old expiry"
        assert await store.set_many([("dup", 1), ("dup", 2)]) == 1
        assert await store.get("dup") == 2, "set_many did not keep the last value of a key"
        assert await store.set_many({}) == 0
        if items:
            first = next(iter(items))
            written = await store.set_many({first: "new", "fresh": 1}, if_not_exists=True)
            assert written == 1, f"set_many(if_not_exists) wrote {written}, expected 1"
            assert same_value(await store.get(first), expected_value(items[first]))

    @clause("batch.delete-many")
    async def test_delete_many(self, store: dmem.Store) -> None:
        assert await store.delete_many([]) == 0
        await store.set_many({"a": 1, "b": 2, "c": 3})
        assert await store.delete_many(["a", "a", "missing", "b"]) == 2
        assert await store.keys() == ["c"]
        assert await store.delete_many(["a", "b"]) == 0
        assert await store.delete_many(iter(["c", "c"])) == 1
        assert await store.count() == 0
