"""``KVStateMachine``: random call sequences against a store and a dict model.

Hypothesis has no async state machines, so the machine is synchronous and runs
each store call on a :class:`~dmem_conformance._bridge.LoopBridge` (one event
loop, the one the store was created on), as zarr's ``testing/stateful.py``
does. One store serves every example; it is cleared when a run starts.

Run it yourself with :func:`run_kv_state_machine`; ``KVSuite`` already does,
in ``test_state_machine``.
"""

from __future__ import annotations

import asyncio
import time
import unicodedata
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dmem
from dmem import KeyNotFoundError, compile_pattern
from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ._bridge import LoopBridge
from .strategies import expected_value, patterns, same_value, values

__all__ = ["KVStateMachine", "run_kv_state_machine"]

T = TypeVar("T")

KEYS = ("a", "ab", "a:b", "b", "é", unicodedata.normalize("NFD", "é"), "*", "k?", "[x]", "\\")
LONG_TTLS = (None, 100.0, 3600)
SHORT_TTL = 0.005
_keys = st.sampled_from(KEYS)
_tags = st.dictionaries(
    st.sampled_from(["t", "u", "a:b"]), st.sampled_from(["1", "2", "x:y", ""]), max_size=2
)
_ttls = st.sampled_from(LONG_TTLS)
_V1_1 = ("incr", "compare_and_set", "compare_and_delete", "delete_by_tag")
_INT64 = (-(2**63), 2**63 - 1)


@dataclass
class _Entry:
    value: Any
    tags: dict[str, str] = field(default_factory=dict)
    ttl: float | None = None
    set_at: float = 0.0


class KVStateMachine(RuleBasedStateMachine):
    """Drives ``store`` and a dict model with the same calls and compares every answer.

    Long ttls (100 s and more) are modelled as "has an expiry"; real expiry is
    exercised by ``expire_soon``, which gives a key a 5 ms ttl and waits past
    the contract's 50 ms window before the model forgets the key.
    """

    def __init__(self, store: dmem.Store, bridge: LoopBridge) -> None:
        super().__init__()
        self.store = store
        self.bridge = bridge
        self.model: dict[str, _Entry] = {}
        # The v1.1 rules run where the provider has every v1.1 operation.
        self.v1_1 = all(callable(getattr(store.provider, op, None)) for op in _V1_1)
        self.run(store.clear())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.bridge.run(coro)

    def _write(self, key: str, value: Any, ttl: float | None, tags: dict[str, str]) -> None:
        self.model[key] = _Entry(expected_value(value), dict(tags), ttl, time.monotonic())

    # --- writes -----------------------------------------------------------------------------
    @rule(key=_keys, value=values(max_leaves=4), ttl=_ttls, tags=_tags, nx=st.booleans())
    def set_key(
        self, key: str, value: Any, ttl: float | None, tags: dict[str, str], nx: bool
    ) -> None:
        written = self.run(self.store.set(key, value, ttl=ttl, if_not_exists=nx, tags=tags))
        expected = not (nx and key in self.model)
        assert written is expected, f"set({key!r}, if_not_exists={nx}) returned {written}"
        if expected:
            self._write(key, value, ttl, tags)

    @rule(
        items=st.dictionaries(_keys, values(max_leaves=2), max_size=4),
        ttl=_ttls,
        tags=_tags,
        nx=st.booleans(),
    )
    def set_many(
        self, items: dict[str, Any], ttl: float | None, tags: dict[str, str], nx: bool
    ) -> None:
        written = self.run(self.store.set_many(items, ttl=ttl, if_not_exists=nx, tags=tags))
        fresh = {k: v for k, v in items.items() if not (nx and k in self.model)}
        assert written == len(fresh), f"set_many wrote {written}, expected {len(fresh)}"
        for key, value in fresh.items():
            self._write(key, value, ttl, tags)

    @rule(key=_keys)
    def delete(self, key: str) -> None:
        removed = self.run(self.store.delete(key))
        assert removed is (key in self.model), f"delete({key!r}) returned {removed}"
        self.model.pop(key, None)

    @rule(keys=st.lists(_keys, max_size=5))
    def delete_many(self, keys: list[str]) -> None:
        removed = self.run(self.store.delete_many(keys))
        live = {k for k in keys if k in self.model}
        assert removed == len(live), f"delete_many({keys}) returned {removed}, not {len(live)}"
        for key in live:
            del self.model[key]

    @rule(key=_keys, ttl=st.sampled_from([100.0, 3600]))
    def expire(self, key: str, ttl: float) -> None:
        done = self.run(self.store.expire(key, ttl))
        assert done is (key in self.model), f"expire({key!r}) returned {done}"
        if key in self.model:
            self.model[key].ttl = ttl
            self.model[key].set_at = time.monotonic()

    @rule(key=_keys)
    def expire_soon(self, key: str) -> None:
        done = self.run(self.store.expire(key, SHORT_TTL))
        assert done is (key in self.model), f"expire({key!r}) returned {done}"
        # The contract's window: gone 50 ms after the ttl (plus our margin).
        self.run(asyncio.sleep(SHORT_TTL + 0.055))
        self.model.pop(key, None)

    @rule(key=_keys)
    def persist(self, key: str) -> None:
        done = self.run(self.store.persist(key))
        assert done is (key in self.model), f"persist({key!r}) returned {done}"
        if key in self.model:
            self.model[key].ttl = None

    @rule()
    def clear(self) -> None:
        removed = self.run(self.store.clear())
        assert removed == len(self.model), f"clear() returned {removed}, not {len(self.model)}"
        self.model.clear()

    # --- contract v1.1 -----------------------------------------------------------------------
    @precondition(lambda self: self.v1_1)
    @rule(key=_keys, delta=st.sampled_from([1, -1, 7, 2**62, -(2**62)]), ttl=_ttls)
    def incr(self, key: str, delta: int, ttl: float | None) -> None:
        entry = self.model.get(key)
        if entry is None:
            got = self.run(self.store.incr(key, delta, ttl=ttl))
            assert got == delta, f"incr({key!r}, {delta}) of a missing key = {got}"
            self._write(key, delta, ttl, {})
            return
        current = entry.value
        total = current + delta if type(current) is int else None
        if total is None or not _INT64[0] <= total <= _INT64[1]:
            try:
                self.run(self.store.incr(key, delta, ttl=ttl))
            except dmem.InvalidValueError:
                return  # unchanged: the get rule checks it
            raise AssertionError(f"incr({key!r}) of {current!r} + {delta} did not raise")
        got = self.run(self.store.incr(key, delta, ttl=ttl))
        assert got == total, f"incr({key!r}, {delta}) = {got}, want {total}"
        entry.value = total  # expiry and tags kept

    @precondition(lambda self: self.v1_1)
    @rule(
        key=_keys, use_current=st.booleans(), other=values(max_leaves=2), new=values(max_leaves=2)
    )
    def compare_and_set(self, key: str, use_current: bool, other: Any, new: Any) -> None:
        entry = self.model.get(key)
        expected = entry.value if (entry is not None and use_current) else other
        match = entry is not None and dmem.encode(expected) == dmem.encode(entry.value)
        done = self.run(self.store.compare_and_set(key, expected, new))
        assert done is match, f"compare_and_set({key!r}, {expected!r}) returned {done}"
        if match:
            self._write(key, new, None, {})

    @precondition(lambda self: self.v1_1)
    @rule(key=_keys, use_current=st.booleans(), other=values(max_leaves=2))
    def compare_and_delete(self, key: str, use_current: bool, other: Any) -> None:
        entry = self.model.get(key)
        expected = entry.value if (entry is not None and use_current) else other
        match = entry is not None and dmem.encode(expected) == dmem.encode(entry.value)
        done = self.run(self.store.compare_and_delete(key, expected))
        assert done is match, f"compare_and_delete({key!r}, {expected!r}) returned {done}"
        if match:
            del self.model[key]

    @precondition(lambda self: self.v1_1)
    @rule(name=st.sampled_from(["t", "u", "a:b"]), value=st.sampled_from(["1", "2", "x:y", ""]))
    def delete_by_tag(self, name: str, value: str) -> None:
        removed = self.run(self.store.delete_by_tag(name, value))
        gone = [k for k, e in self.model.items() if e.tags.get(name) == value]
        assert removed == len(gone), f"delete_by_tag({name!r}, {value!r}) = {removed}"
        for key in gone:
            del self.model[key]

    # --- reads ------------------------------------------------------------------------------
    @rule(key=_keys)
    def get(self, key: str) -> None:
        missing = object()
        got = self.run(self.store.get(key, default=missing))
        if key in self.model:
            assert got is not missing, f"get({key!r}): a live key is missing"
            assert same_value(got, self.model[key].value), f"get({key!r}) = {got!r}"
        else:
            assert got is missing, f"get({key!r}) = {got!r} for a missing key"
        assert self.run(self.store.exists(key)) is (key in self.model), f"exists({key!r})"

    @rule(keys=st.lists(_keys, max_size=6))
    def get_many(self, keys: list[str]) -> None:
        got = self.run(self.store.get_many(keys))
        assert set(got) == {k for k in keys if k in self.model}, f"get_many({keys}) keys"
        for key, value in got.items():
            assert same_value(value, self.model[key].value), f"get_many: {key!r} = {value!r}"

    @rule(key=_keys)
    def ttl(self, key: str) -> None:
        if key not in self.model:
            try:
                self.run(self.store.ttl(key))
            except KeyNotFoundError:
                return
            raise AssertionError(f"ttl({key!r}) of a missing key did not raise KeyNotFoundError")
        left = self.run(self.store.ttl(key))
        entry = self.model[key]
        if entry.ttl is None:
            assert left is None, f"ttl({key!r}) = {left} for a key without expiry"
        else:
            elapsed = time.monotonic() - entry.set_at
            assert left is not None, f"ttl({key!r}) = None for a key with an expiry"
            assert entry.ttl - elapsed - 1.0 <= left <= entry.ttl + 0.002, f"ttl = {left}"

    @rule(key=_keys)
    def get_tags(self, key: str) -> None:
        if key not in self.model:
            try:
                self.run(self.store.get_tags(key))
            except KeyNotFoundError:
                return
            raise AssertionError(f"get_tags({key!r}) of a missing key did not raise")
        got = self.run(self.store.get_tags(key))
        assert got == self.model[key].tags, f"get_tags({key!r}) = {got}"

    @rule(name=st.sampled_from(["t", "u", "a:b"]), value=st.sampled_from(["1", "2", "x:y", ""]))
    def find_by_tag(self, name: str, value: str) -> None:
        found = self.run(self.store.find_by_tag(name, value))
        want = {k for k, e in self.model.items() if e.tags.get(name) == value}
        assert len(found) == len(set(found)), f"find_by_tag({name!r}, {value!r}): duplicates"
        assert set(found) == want, f"find_by_tag({name!r}, {value!r}) = {sorted(found)}"

    @rule(pattern=patterns())
    def listing(self, pattern: str) -> None:
        matcher = compile_pattern(pattern)
        want = {k for k in self.model if matcher.matches(k)}
        keys = self.run(self.store.keys(pattern))
        assert len(keys) == len(set(keys)), f"keys({pattern!r}) has duplicates"
        assert set(keys) == want, f"keys({pattern!r}) = {sorted(keys)}, want {sorted(want)}"
        assert self.run(self.store.count(pattern)) == len(want), f"count({pattern!r})"

    @rule()
    def scan(self) -> None:
        async def collect() -> list[tuple[str, Any]]:
            return [item async for item in self.store.scan()]

        items = self.run(collect())
        keys = [k for k, _ in items]
        assert len(keys) == len(set(keys)), "scan yielded a key twice"
        assert set(keys) == set(self.model), "scan keys differ from the model"
        for key, value in items:
            assert same_value(value, self.model[key].value), f"scan: {key!r} = {value!r}"

    @invariant()
    def count_matches(self) -> None:
        got = self.run(self.store.count())
        assert got == len(self.model), f"count() = {got}, model holds {len(self.model)}"


def run_kv_state_machine(store: dmem.Store, bridge: LoopBridge, settings: Settings) -> None:
    """Run :class:`KVStateMachine` on ``store`` (created on ``bridge``'s loop)."""
    # Hypothesis takes any callable returning a machine (its stubs say the class only).
    run_state_machine_as_test(
        lambda: KVStateMachine(store, bridge),  # type: ignore[arg-type]
        settings=settings,
    )
