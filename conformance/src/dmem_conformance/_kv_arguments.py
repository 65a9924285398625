"""Suite tests: every public ``Store`` method called with arguments of any type."""

from __future__ import annotations

import decimal
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import dmem
from dmem import HealthStatus, InvalidArgumentError, KeyNotFoundError, ProviderError
from hypothesis import strategies as st

from ._arguments import Call, Param, call_lists, safe_repr
from ._base import SuiteBase
from ._marks import clause
from .strategies import (
    BadEq,
    FloatSub,
    IntSub,
    StrSub,
    huge_int,
    keys,
    nested_list,
    patterns,
    same_value,
    tag_maps,
    values,
)

__all__ = ["ArgumentTests", "KV_SIGNATURES", "MAX_TTL", "check_refusal"]

MAX_TTL = 10 * 365 * 86400
"""Ten years of 365 days: a valid ttl on every reading of "at most 10 years"; in
milliseconds beyond a signed 32-bit field (2**31 ms is 24.8 days)."""

# Keys with a ttl shorter than this may expire between two snapshots: not compared.
_VOLATILE = 5.0
# A refused call must not extend an expiry; ttl() may round up by a millisecond.
_TTL_SLACK = 0.05

_SEEDED = ("a", "b:c", "é")
_key = st.one_of(st.sampled_from((*_SEEDED, "missing")), keys())
_key_bad = st.sampled_from(("", "a\x00b", "x" * 1025, "é" * 513, "\ud800", b"a", StrSub("a")))
_value_bad = st.sampled_from(
    (
        math.nan,
        math.inf,
        {1: "x"},
        {"a": [1, {"b": math.nan}]},
        2**63,
        "\udcff",
        ["ok", b"nested bytes"],
        nested_list(65),
        frozenset({1}),
        IntSub(1),
        decimal.Decimal(1),
    )
)
_ttl = st.one_of(
    st.sampled_from((60, 3600.5, 30 * 86400, MAX_TTL)),
    st.floats(60, MAX_TTL),
    st.integers(60, MAX_TTL),
)
_ttl_bad = st.sampled_from(
    (
        0,
        -1,
        0.0,
        -0.5,
        math.nan,
        math.inf,
        -math.inf,
        True,
        "60",
        11 * 366 * 86400,
        10**400,
        -(10**400),
        IntSub(60),
        FloatSub(60.0),
        decimal.Decimal(60),
    )
)
_flag_bad = st.sampled_from((0, 1, None, "yes", IntSub(1)))
_tags_bad = st.one_of(
    st.sampled_from(
        (
            [],
            0,
            "",
            (),
            frozenset(),
            [("a", "b")],
            "a=b",
            {"": "x"},
            {"a": 1},
            {1: "a"},
            {"a\x00": "x"},
            {"a": "\ud800"},
            {f"t{i}": "x" for i in range(65)},
        )
    ),
    st.builds(lambda: {"a": BadEq()}),
)
_tag_name = st.one_of(st.sampled_from(("t", "u", "a:b")), keys())
_tag_name_bad = st.sampled_from(("", "a\x00", "\ud800", b"t", StrSub("t")))
_tag_value = st.sampled_from(("1", "2", "", "x:y"))
_tag_value_bad = st.sampled_from((1, None, "\ud800", "a\x00", b"1", StrSub("1")))
_key_list = st.lists(_key, max_size=4)
_keys_arg = st.one_of(_key_list, _key_list.map(tuple), st.builds(iter, _key_list))
_keys_bad = st.one_of(
    st.sampled_from(("ab", b"ab")),
    st.lists(st.one_of(_key, _key_bad), min_size=1, max_size=4),
)
_items = st.one_of(
    st.dictionaries(_key, values(max_leaves=3), max_size=3),
    st.lists(st.tuples(_key, values(max_leaves=3)), max_size=3),
)
_items_bad = st.one_of(
    st.sampled_from(("ab", b"ab", 5, [["k", 1]], [("k", 1, 2)])),
    st.lists(
        st.tuples(st.one_of(_key, _key_bad), st.one_of(values(max_leaves=2), _value_bad)),
        min_size=1,
        max_size=3,
    ),
    st.dictionaries(_key, _value_bad, min_size=1, max_size=2),
)
_pattern_bad = st.one_of(
    st.sampled_from(("[", "a[b", "a\\", "[]", "[z-a]", "[^]", b"*", StrSub("*"))),
    st.text(st.sampled_from("ab*?[]\\^-"), max_size=6),
)

KEY = Param("key", _key, _key_bad)
TTL = Param("ttl", st.one_of(st.none(), _ttl), _ttl_bad, keyword=True)
FLAG = Param("if_not_exists", st.booleans(), _flag_bad, keyword=True)
TAGS = Param("tags", st.one_of(st.none(), tag_maps()), _tags_bad, keyword=True)
KEYS = Param("keys", _keys_arg, _keys_bad)
PATTERN = Param("pattern", patterns(), _pattern_bad, optional=True)

KV_SIGNATURES: dict[str, list[Param]] = {
    "get": [KEY, Param("default", st.none(), keyword=True)],
    "exists": [KEY],
    "set": [KEY, Param("value", values(max_leaves=4), _value_bad), TTL, FLAG, TAGS],
    "delete": [KEY],
    "get_many": [KEYS],
    "set_many": [Param("items", _items, _items_bad), TTL, FLAG, TAGS],
    "delete_many": [KEYS],
    "scan": [PATTERN],
    "keys": [PATTERN],
    "count": [PATTERN],
    "clear": [],
    "find_by_tag": [
        Param("name", _tag_name, _tag_name_bad),
        Param("value", _tag_value, _tag_value_bad),
    ],
    "get_tags": [KEY],
    "expire": [KEY, Param("ttl", _ttl, _ttl_bad)],
    "persist": [KEY],
    "ttl": [KEY],
    "health": [],
}
"""Every public data method of :class:`dmem.Store` and its parameters."""

# What a successful call returns (the values of get/scan/ttl are checked elsewhere).
_RESULTS: dict[str, type] = {
    "exists": bool,
    "set": bool,
    "delete": bool,
    "get_many": dict,
    "set_many": int,
    "delete_many": int,
    "scan": list,
    "keys": list,
    "count": int,
    "clear": int,
    "find_by_tag": list,
    "get_tags": dict,
    "expire": bool,
    "persist": bool,
    "health": HealthStatus,
}

# The mistakes this clause was written for, run first under every profile.
_CLASSIC: list[dict[str, Any]] = [
    {"calls": [Call("get_many", 5), Call("set_many", 5), Call("delete_many", 5)]},
    {"calls": [Call("keys", ["a"]), Call("count", {}), Call("scan", ["a"])]},
    {
        "calls": [
            Call("set", "k", 1, tags=[]),
            Call("set", "k", 1, tags=0),
            Call("set", "k", 1, tags=""),
            Call("set_many", {"a": 2, "k": 1}, tags=()),
        ]
    },
    {
        "calls": [
            Call("find_by_tag", [], "x"),
            Call("set", "a", 2, tags={"t": BadEq()}),
            Call("get", huge_int()),
            Call("expire", "a", 10**400),
        ]
    },
    # Valid, at the far end: a backend must take a ten-year ttl (beyond 32-bit ms).
    {
        "calls": [
            Call("set", "k", 1, ttl=MAX_TTL),
            Call("set_many", {"m": 1, "a": 2}, ttl=MAX_TTL, tags={"t": "x"}),
            Call("expire", "é", MAX_TTL),
        ]
    },
]


@dataclass
class _Entry:
    value: Any
    tags: dict[str, str]
    ttl: float | None


async def _seed(store: dmem.Store) -> None:
    await store.set("a", {"n": 1}, tags={"t": "1"})
    await store.set("b:c", "text", ttl=1000, tags={"t": "2", "u": ""})
    await store.set("é", b"\x00bytes")


async def _snapshot(store: dmem.Store) -> dict[str, _Entry]:
    found: dict[str, _Entry] = {}
    async for key, value in store.scan():
        try:
            found[key] = _Entry(value, await store.get_tags(key), await store.ttl(key))
        except KeyNotFoundError:
            continue  # expired since the scan saw it
    return found


def _volatile(entry: _Entry | None) -> bool:
    return entry is not None and entry.ttl is not None and entry.ttl < _VOLATILE


def _changes(before: dict[str, _Entry], after: dict[str, _Entry]) -> list[str]:
    problems: list[str] = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if _volatile(old) or _volatile(new):
            continue
        if old is None:
            problems.append(f"{key!r} was written")
        elif new is None:
            problems.append(f"{key!r} was deleted")
        elif not same_value(new.value, old.value):
            problems.append(f"{key!r}'s value changed: {old.value!r} -> {new.value!r}")
        elif new.tags != old.tags:
            problems.append(f"{key!r}'s tags changed: {old.tags!r} -> {new.tags!r}")
        elif (new.ttl is None) != (old.ttl is None) or (
            new.ttl is not None and old.ttl is not None and new.ttl > old.ttl + _TTL_SLACK
        ):
            problems.append(f"{key!r}'s expiry changed: ttl {old.ttl!r} -> {new.ttl!r}")
    return problems


def _refusals(method: str) -> tuple[type[Exception], ...]:
    if method in ("ttl", "get_tags"):
        return (InvalidArgumentError, KeyNotFoundError)
    return (InvalidArgumentError,)


def check_refusal(call: Call, exc: Exception, allowed: tuple[type[Exception], ...]) -> None:
    """Fail unless ``exc`` is one of the ``allowed`` refusals of ``call``."""
    if isinstance(exc, allowed):
        return
    kind = f"{type(exc).__module__}.{type(exc).__name__}"
    if isinstance(exc, ProviderError):
        cause = exc.__cause__
        raise AssertionError(
            f"{call!r} failed in the backend ({kind}: {exc}); cause: {cause!r}. Either the "
            "store must refuse the argument with an InvalidArgumentError before any I/O, or "
            "the backend must take it"
        ) from exc
    if isinstance(exc, dmem.DmemError):
        raise AssertionError(f"{call!r} raised {kind}: {exc}") from exc
    raise AssertionError(
        f"{call!r} raised {kind}: {safe_repr(exc)}; a bad argument must be a DmemError "
        "(InvalidArgumentError or a subclass)"
    ) from exc


async def _check_calls(store: dmem.Store, drawn: list[Call]) -> None:
    await _seed(store)
    before: dict[str, _Entry] | None = None
    for call in drawn:
        if before is None:
            before = await _snapshot(store)
        try:
            result = await call.run(store)
        except Exception as exc:  # noqa: BLE001 - what it is, is the test
            check_refusal(call, exc, _refusals(call.method))
            refused: Exception | None = exc
        else:
            refused = None
        if refused is not None:
            after = await _snapshot(store)
            changes = _changes(before, after)
            assert not changes, (
                f"{call!r} was refused ({type(refused).__name__}: {refused}) but changed "
                "the store: " + "; ".join(changes)
            )
            before = after
            continue
        wanted = _RESULTS.get(call.method)
        if wanted is not None:
            assert type(result) is wanted, (
                f"{call!r} returned {type(result).__name__} {safe_repr(result)}, "
                f"not {wanted.__name__}"
            )
        before = None  # it may have changed the store: look again before the next call


class ArgumentTests(SuiteBase):
    _dmem_suite_class: ClassVar[bool] = True

    @clause(
        "errors.any-argument",
        given={"calls": call_lists(KV_SIGNATURES)},
        examples=_CLASSIC,
    )
    async def test_any_argument(self, store: dmem.Store, calls: list[Call]) -> None:
        """Every public Store method, called with arguments of any type and value.

        Each call must return a result of its type or raise an InvalidArgumentError (or
        a subclass; KeyNotFoundError from ttl/get_tags), and a refused call must leave
        the store as it was: values, tags and expiries. The store validates every
        argument before any I/O, so on a conforming store a refused call never reaches
        the provider; what this clause catches below the store:

        * a backend that fails on a valid argument at the far end of its range, such as
          a ten-year ttl (3.15e11 ms, beyond a signed 32-bit field): a ProviderError for
          a call the store accepted is a failure here, not a refusal;
        * middleware, or a store facade of a third-party's own, that lets a raw
          exception out, or writes before it refuses.

        Bad arguments that only the core's Store can get wrong (a TypeError for
        ``get_many(5)``, tags=[] taken for "no tags") are tested in the core's tests too.
        """
        await _check_calls(store, calls)
