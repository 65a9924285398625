"""The codec: exact round trips, rejected values, the stored format (CONTRACT.md, "Values")."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from dmem import CorruptValueError, InvalidValueError, decode, encode
from dmem._codec import encode_many
from hypothesis import given
from hypothesis import strategies as st

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    """Equal in value AND type, recursively (so 1 != 1.0 != True, -0.0 != 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@given(json_values)
def test_json_values_round_trip_exactly(value: Any) -> None:
    assert same(decode(encode(value)), value)


@given(st.binary())
def test_bytes_round_trip(value: bytes) -> None:
    assert decode(encode(value)) == value
    assert type(decode(encode(bytearray(value)))) is bytes
    assert decode(encode(memoryview(value))) == value


@pytest.mark.parametrize("value", ["123", "", b"", True, False, 0, -0.0, 1.0, None, "null", [], {}])
def test_awkward_values(value: Any) -> None:
    assert same(decode(encode(value)), value)


def test_tuple_comes_back_as_list() -> None:
    assert decode(encode((1, (2, 3)))) == [1, [2, 3]]


def test_plain_json_is_stored_as_readable_json_text() -> None:
    assert encode({"a": [1, "x"]}) == b'{"a":[1,"x"]}'
    assert encode("123") == b'"123"'
    assert orjson.loads(encode({"k": 1.5})) == {"k": 1.5}


def test_bytes_carry_a_marker() -> None:
    assert encode(b"{}") == b"\x00B{}"


UNSTORABLE = [
    math.nan,
    math.inf,
    -math.inf,
    [1, math.nan],
    {"a": {"b": math.inf}},
    {1: "x"},
    {"a": {(1, 2): 3}},
    "\ud800",
    ["\udfff"],
    {"\ud800": 1},
    2**63,
    -(2**63) - 1,
    [b"nested bytes"],
    {1.5},
    object(),
    1 + 2j,
]


@pytest.mark.parametrize("value", UNSTORABLE)
def test_unstorable_values_raise(value: Any) -> None:
    with pytest.raises(InvalidValueError):
        encode(value)


@given(st.lists(json_values | st.binary(), max_size=8))
def test_encode_many_is_encode_of_each(values: list[Any]) -> None:
    assert encode_many(values) == [encode(value) for value in values]
    containers = [value for value in values if isinstance(value, (list, dict))]
    assert encode_many(containers) == [encode(value) for value in containers]
    assert encode_many(tuple(containers)) == [encode(value) for value in containers]


@pytest.mark.parametrize("value", UNSTORABLE)
@pytest.mark.parametrize("place", ["top", "inside a dict", "inside a list"])
def test_encode_many_rejects_what_encode_rejects(value: Any, place: str) -> None:
    bad = {"top": value, "inside a dict": {"x": value}, "inside a list": [1, value]}[place]
    with pytest.raises(InvalidValueError):
        encode_many([{"ok": 1}, bad, [2]])


def test_encode_many_depth_limit() -> None:
    ok: Any = 1
    for _ in range(63):
        ok = [ok]
    assert encode_many([{"a": 1}, [ok]]) == [encode({"a": 1}), encode([ok])]
    with pytest.raises(InvalidValueError):
        encode_many([{"a": 1}, [[ok]]])


def test_depth_limit() -> None:
    ok: Any = 1
    for _ in range(64):
        ok = [ok]
    assert decode(encode(ok)) == ok
    with pytest.raises(InvalidValueError):
        encode([ok])


@pytest.mark.parametrize("data", [b"", b"{", b"\x00Q", b"\x00Zz\x00\x00\x00\x01x", b"\xff"])
def test_corrupt_bytes_raise(data: bytes) -> None:
    with pytest.raises(CorruptValueError):
        decode(data)
