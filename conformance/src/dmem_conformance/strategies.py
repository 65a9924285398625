"""Hypothesis strategies for dmem keys, values, tags and glob patterns.

Public, so backend authors can reuse them in their own property tests. They
lean towards the awkward cases: empty strings and bytes, numeric-looking
strings, ``-0.0``, deep nesting, non-ASCII text (NFC and NFD forms), and keys
full of glob and separator characters (``*?[]\\:``). :func:`anything` draws
arguments of any type at all, for the clause that every bad argument is refused
cleanly.
"""

from __future__ import annotations

import decimal
import math
import unicodedata
from types import MappingProxyType
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "AWKWARD_KEYS",
    "AWKWARD_VALUES",
    "anything",
    "expected_value",
    "keys",
    "listing_keys",
    "pattern_cases",
    "patterns",
    "same_value",
    "tag_maps",
    "values",
]

_INT64 = (-(2**63), 2**63 - 1)

AWKWARD_KEYS: tuple[str, ...] = (
    "a",
    "A",
    "123",
    " ",
    "key with spaces ",
    "*",
    "?",
    "[",
    "]",
    "[a-z]",
    "\\",
    "a\\b",
    ":",
    "a:b:c",
    "user:*:name",
    "é",  # NFC, one code point
    unicodedata.normalize("NFD", "é"),  # two code points
    "日本語",
    "emoji-\U0001f600",
    "tab\tnewline\n",
    "x" * 1024,  # the longest ASCII key
    "é" * 512,  # 1024 bytes in UTF-8
)

AWKWARD_VALUES: tuple[Any, ...] = (
    "",
    b"",
    "123",
    "null",
    "true",
    -0.0,
    0.0,
    True,
    False,
    0,
    1,
    None,
    [],
    {},
    [None],
    {"": ""},
    2**63 - 1,
    -(2**63),
    1.5e308,
    5e-324,
    "\x00",  # NUL is fine inside a value
    "\u2028\u2029",
    b"\x00Z",  # looks like the compression marker, but is user bytes
    b"\x00B",
    b"\xff" * 3,
    "é",
    unicodedata.normalize("NFD", "é"),
    {"nested": {"list": [1, 2.5, "x", None, True, {"deep": []}]}},
    (1, (2, (3,))),
)

_text_chars = st.characters(exclude_categories=["Cs"])
_key_chars = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")


def _fits(key: str) -> bool:
    return len(key.encode("utf-8")) <= 1024


def keys() -> st.SearchStrategy[str]:
    """Valid keys: non-empty, no NUL or lone surrogate, at most 1024 UTF-8 bytes."""
    generated = st.text(_key_chars, min_size=1, max_size=24).filter(_fits)
    specials = st.text(st.sampled_from("ab*?[]\\:-^ é"), min_size=1, max_size=8)
    return st.one_of(st.sampled_from(AWKWARD_KEYS), specials, generated)


def _json_leaves() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(*_INT64),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(_text_chars, max_size=20),
    )


def values(*, max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Storable values: JSON-shaped (lists, tuples, str-keyed dicts) or top-level bytes."""
    nested = st.recursive(
        _json_leaves(),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.lists(children, max_size=3).map(tuple),
            st.dictionaries(st.text(_text_chars, max_size=8), children, max_size=4),
        ),
        max_leaves=max_leaves,
    )
    return st.one_of(
        st.sampled_from(AWKWARD_VALUES),
        st.binary(max_size=64),
        st.binary(max_size=64).map(bytearray),
        nested,
    )


def tag_maps(*, max_size: int = 3) -> st.SearchStrategy[dict[str, str]]:
    """Tag mappings; values may be empty or hold ``:`` and other separators."""
    names = st.one_of(
        st.sampled_from(["user", "a:b", "a", "tag name", "é", "k=v"]),
        st.text(_key_chars, min_size=1, max_size=8),
    )
    tag_values = st.one_of(
        st.sampled_from(["", "1", "b:c", "x:y:z", "=", "é", " "]),
        st.text(_key_chars, max_size=8),
    )
    return st.dictionaries(names, tag_values, max_size=max_size)


_PATTERN_ALPHABET = "ab:é*?[]\\"


def listing_keys() -> st.SearchStrategy[list[str]]:
    """Small key sets over a tiny alphabet, so that patterns actually match some of them."""
    key = st.one_of(
        st.text(st.sampled_from(_PATTERN_ALPHABET + "x"), min_size=1, max_size=5),
        st.sampled_from(["é", unicodedata.normalize("NFD", "é"), "ab", "a", "b:a"]),
    )
    return st.lists(key, min_size=0, max_size=12, unique=True)


def _escape(ch: str) -> str:
    return "\\" + ch if ch in "*?[]\\" else ch


_LITERALS = "ab:éx*?[]\\"
_CLASSES = ("[ab]", "[a-b]", "[^a]", "[^:é]", "[\\]\\[]", "[*?]", "[a-é]")
# One code point each, some outside ASCII and outside the BMP: what ``?`` and a class
# must consume exactly once.
_ONE_CHAR = st.sampled_from(["a", "b", "x", ":", "é", "*", "[", "]", "\\", "日", "\U0001f600"])
# A pattern token: its text in the pattern, and how to draw a text it matches (for a
# class, any one code point: the core matcher decides whether it matches).
_Token = tuple[str, st.SearchStrategy[str]]
_TOKENS: st.SearchStrategy[_Token] = st.one_of(
    st.sampled_from(_LITERALS).map(lambda ch: (_escape(ch), st.just(ch))),
    st.just(("*", st.lists(_ONE_CHAR, max_size=3).map("".join))),
    st.just(("?", _ONE_CHAR)),
    st.sampled_from(_CLASSES).map(lambda klass: (klass, _ONE_CHAR)),
)


def patterns() -> st.SearchStrategy[str]:
    """Valid glob patterns: literals, escapes, ``*``, ``?`` and classes."""
    # Not _TOKENS mapped to their text: a strategy of another shape would change what the
    # state machine's derandomized ``ci`` runs draw.
    literal = st.sampled_from(_LITERALS).map(_escape)
    klass = st.sampled_from(_CLASSES)
    token = st.one_of(literal, st.just("*"), st.just("?"), klass)
    return st.lists(token, min_size=0, max_size=5).map("".join).map(lambda p: p or "*")


@st.composite
def pattern_cases(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A glob pattern and keys to list with it: keys built to match it, and near misses.

    Each key built from the pattern replaces every token by a text it matches; beside
    it go the same text with each token's part left out in turn, and with one code
    point too many at each place. So every example probes the edges where matchers go
    wrong (``?`` matching zero or two code points, ``*`` crossing what it should not,
    classes and escapes), whatever examples a Hypothesis version happens to draw.
    Unrelated keys (:func:`listing_keys`) are mixed in. Keys come sorted, so a run is
    reproducible.
    """
    tokens = draw(st.lists(_TOKENS, min_size=1, max_size=5))
    pattern = "".join(text for text, _ in tokens)
    keys = set(draw(listing_keys()))
    for _ in range(draw(st.integers(1, 2))):
        parts = [draw(matching) for _, matching in tokens]
        keys.add("".join(parts))
        for at in range(len(parts)):
            keys.add("".join(parts[:at] + parts[at + 1 :]))
        for at in range(len(parts) + 1):
            keys.add("".join([*parts[:at], draw(_ONE_CHAR), *parts[at:]]))
    keys.discard("")
    return pattern, sorted(keys)


def expected_value(value: Any) -> Any:
    """What ``value`` reads back as: tuples become lists, bytearray/memoryview bytes."""
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        return [expected_value(v) for v in value]
    if isinstance(value, dict):
        return {k: expected_value(v) for k, v in value.items()}
    return value


def same_value(got: Any, want: Any) -> bool:
    """Exact equality in value *and* type, at every depth (``1 != 1.0 != True``, -0.0 kept)."""
    if type(got) is not type(want):
        return False
    if isinstance(want, float):
        # repr tells -0.0 from 0.0 and is exact for every finite float.
        return repr(got) == repr(want)
    if isinstance(want, list):
        return len(got) == len(want) and all(
            same_value(g, w) for g, w in zip(got, want, strict=True)
        )
    if isinstance(want, dict):
        return got.keys() == want.keys() and all(same_value(got[k], want[k]) for k in want)
    return bool(got == want)


# --- arguments of any type -------------------------------------------------------------------
class Opaque:
    """A plain object of a user's class."""

    def __repr__(self) -> str:
        return "Opaque()"


class BadRepr:
    """An object whose ``repr`` raises: error messages must not show it with a plain repr."""

    def __repr__(self) -> str:
        raise RuntimeError("BadRepr.__repr__ fails on purpose")


class BadEq:
    """An object whose comparisons raise (as a numpy array's truth value does)."""

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("BadEq.__eq__ fails on purpose")

    def __ne__(self, other: object) -> bool:
        raise RuntimeError("BadEq.__ne__ fails on purpose")

    def __repr__(self) -> str:
        return "BadEq()"


class StrSub(str):
    """A str subclass: not exactly a str."""


class IntSub(int):
    """An int subclass: not exactly an int."""


class FloatSub(float):
    """A float subclass: not exactly a float."""


class DictSub(dict):  # type: ignore[type-arg]
    """A dict subclass: a mapping, not exactly a dict."""


def nested_list(depth: int) -> Any:
    """``depth`` lists nested around an empty one."""
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def huge_int() -> int:
    """An int whose ``repr`` raises ValueError (more than 4300 digits)."""
    return 10**5000


def _self_referencing() -> list[Any]:
    value: list[Any] = ["a"]
    value.append(value)
    return value


def _view(data: bytes) -> memoryview:
    return memoryview(data)


def _released_view() -> memoryview:
    view = memoryview(b"released")
    view.release()
    return view


def _hashables() -> st.SearchStrategy[Any]:
    """Scalars that can be dict keys and set members."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=8),
        st.binary(max_size=8),
    )


def _odd_objects() -> st.SearchStrategy[Any]:
    # Built per draw where an object is mutable or single-use (an iterator, a released view).
    return st.one_of(
        st.sampled_from(
            [
                -(10**400),  # beyond the float range
                2**63,
                -(2**63) - 1,
                2**64,
                math.nan,
                math.inf,
                -math.inf,
                -0.0,
                Ellipsis,
                len,  # a builtin callable
                Opaque,  # a class
                decimal.Decimal("sNaN"),  # float() of it raises ValueError
                1j,
            ]
        ),
        # Built, not sampled: Hypothesis shows a sampled_from strategy by the repr of its
        # elements, and an int of more than 4300 digits has none (ValueError).
        st.builds(huge_int),
        st.builds(object),
        st.builds(Opaque),
        st.builds(BadRepr),
        st.builds(BadEq),
        st.builds(lambda: lambda *args: None),
        st.builds(StrSub, st.text(max_size=4)),
        st.builds(IntSub, st.integers(-5, 5)),
        st.builds(FloatSub, st.floats()),
        st.builds(DictSub, st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2)),
        st.builds(
            MappingProxyType, st.dictionaries(st.text(max_size=4), st.integers(), max_size=2)
        ),
        st.builds(bytearray, st.binary(max_size=8)),
        st.binary(max_size=8).map(_view),
        st.builds(_released_view),
        st.builds(iter, st.lists(st.text(max_size=4), max_size=3)),
        st.builds(_self_referencing),
        st.sampled_from([64, 65, 300]).map(nested_list),
        st.decimals(),
        st.fractions(),
        st.complex_numbers(),
    )


def anything(*, max_leaves: int = 6) -> st.SearchStrategy[Any]:
    """Arguments of any type: what a caller may pass by mistake to any call.

    None, bools, ints (also huge ones and the int64 edges), floats (NaN, infinities,
    -0.0), str, bytes, bytearray, memoryview (also a released one), lists, tuples,
    dicts, sets and frozensets (nested), subclasses of str/int/float/dict, read-only
    mappings, one-shot iterators, callables, classes, plain objects, objects whose
    ``repr`` or ``==`` raises, decimals, fractions, complex numbers, lists nested past
    the depth limit and a list that contains itself. Never an infinite iterator: no
    call can refuse one before reading it all.
    """
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=12),
        st.binary(max_size=12),
        _odd_objects(),
    )
    hashables = _hashables()
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.lists(children, max_size=3).map(tuple),
            st.dictionaries(hashables, children, max_size=3),
            st.sets(hashables, max_size=3),
            st.frozensets(hashables, max_size=3),
        ),
        max_leaves=max_leaves,
    )
