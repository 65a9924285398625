"""Keys, ttls and tags are checked before any I/O (CONTRACT.md, "Keys", "Operations", "Tags")."""

from __future__ import annotations

from typing import Any

import pytest
from dmem import InvalidArgumentError, InvalidKeyError, ProviderOptions
from dmem._validation import (
    MAX_TTL_SECONDS,
    check_key,
    check_tag,
    check_tags,
    short_repr,
    ttl_to_ms,
)


@pytest.mark.parametrize(
    "key", ["", "a\x00b", "\ud800", "x" * 1025, "é" * 513, b"bytes", 1, None, ["a"]]
)
def test_bad_keys(key: Any) -> None:
    with pytest.raises(InvalidKeyError):
        check_key(key)


@pytest.mark.parametrize("key", ["a", "x" * 1024, "é" * 512, "*?[]\\:", " spaced ", "é"])
def test_good_keys(key: str) -> None:
    check_key(key)


@pytest.mark.parametrize(
    ("ttl", "ms"), [(1, 1000), (0.0001, 1), (0.3, 300), (1.5, 1500), (0.0015, 2)]
)
def test_ttl_in_ms_rounded_up(ttl: float, ms: int) -> None:
    assert ttl_to_ms(ttl) == ms


def test_ttl_ints_never_go_through_float() -> None:
    assert ttl_to_ms(1) == 1000
    assert ttl_to_ms(315_360_000) == 315_360_000_000  # ten years of 365 days, exactly
    assert ttl_to_ms(int(MAX_TTL_SECONDS)) == int(MAX_TTL_SECONDS) * 1000


@pytest.mark.parametrize(
    "ttl",
    [
        0,
        -1,
        0.0,
        float("nan"),
        float("inf"),
        True,
        "5",
        None,
        11 * 365.25 * 86400,
        10**400,  # float() of it raised OverflowError
        -(10**400),
        pytest.param(10**5000, id="5000-digits"),  # and its repr raises ValueError
        int(MAX_TTL_SECONDS) + 1,
    ],
)
def test_bad_ttls(ttl: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        ttl_to_ms(ttl)


@pytest.mark.parametrize(
    "tags",
    [
        {"": "x"},
        {"a\x00": "x"},
        {"a": 1},
        {1: "a"},
        {"a": "\ud800"},
        {f"t{i}": "v" for i in range(65)},
        ["a", "b"],
        "a=b",
        [],
        0,
        "",
        (),
        {"a": b"x"},
        {10**5000: "x"},
    ],
)
def test_bad_tags(tags: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        check_tags(tags)


class _BadEq:
    __hash__ = object.__hash__

    def __ne__(self, other: object) -> bool:
        raise RuntimeError("no comparisons")


def test_tag_values_are_checked_by_type_first() -> None:
    with pytest.raises(InvalidArgumentError, match="must be a str, not _BadEq"):
        check_tags({"a": _BadEq()})
    with pytest.raises(InvalidArgumentError):
        check_tag([], "x")
    check_tag("a", "")


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(10**5000, id="5000-digits"),
        pytest.param(_nested(5000), id="nested"),
        _BadRepr(),
        "x" * 1500,
        b"y" * 500,
    ],
)
def test_short_repr_never_raises(obj: Any) -> None:
    text = short_repr(obj)
    assert 0 < len(text) <= 80
    with pytest.raises(InvalidKeyError):
        check_key(obj)


def test_good_tags() -> None:
    assert check_tags({"user": "a:b:c", "empty": ""}) == {"user": "a:b:c", "empty": ""}
    assert check_tags(None) == {}
    assert len(check_tags({f"t{i}": "v" for i in range(64)})) == 64


@pytest.mark.parametrize(
    ("namespace", "message"),
    [
        ("a\x00b", "NUL"),
        ("a\ud800", "lone surrogates"),
        ("\udfff", "lone surrogates"),
        (1, "str"),
        # Over 1024 bytes: PostgreSQL's index entry for (namespace, key) would not fit.
        ("a" * 1025, "over the 1024"),
        ("é" * 513, "over the 1024"),
    ],
)
def test_provider_options_namespace_rejects(namespace: object, message: str) -> None:
    opts = ProviderOptions({"namespace": namespace}, provider="demo")
    with pytest.raises(InvalidArgumentError, match=message) as info:
        opts.namespace()
    assert "demo option 'namespace'" in str(info.value)


@pytest.mark.parametrize("namespace", ["", "app", "é:ü/x y", "\U0001f600", "a" * 1024, "é" * 512])
def test_provider_options_namespace_accepts(namespace: str) -> None:
    opts = ProviderOptions({"namespace": namespace}, provider="demo")
    assert opts.namespace() == namespace
    opts.done()
    assert ProviderOptions({}, provider="demo").namespace() == ""
