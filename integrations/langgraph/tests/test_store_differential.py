"""DmemStore against LangGraph's own InMemoryStore, on generated operation sequences.

A Hypothesis state machine applies the same puts, deletes and batches to a ``DmemStore`` (on
memory, a SQLite file, PostgreSQL and Redis: real servers) and to ``InMemoryStore``, and
checks that every get, search (namespace prefix, filters, limit and offset) and
list_namespaces (prefix, suffix with ``*``, max_depth, limit, offset) agrees. Namespaces and
keys are drawn from labels made to collide once escaped carelessly (``/``, ``%2F``, ``#``,
glob characters, a lone surrogate). Each call goes through ``batch`` (dmem's loop thread) or
``abatch`` (a caller's loop in another thread), drawn per call.

Where the two stores differ by design, the comparison says so:

* search order: InMemoryStore returns insertion order, DmemStore sorts by (namespace,
  key); the model's full result is sorted the same way before offset and limit apply;
* InMemoryStore keeps listing a namespace whose items were all deleted (and one a get
  merely looked at): those empty namespaces are dropped from the model before listing;
* InMemoryStore has no ttl: a put with a long ttl (an hour) must behave as a plain put,
  and a put with a 30 ms ttl is checked on its own (gone after 150 ms) and removed from
  the model; nothing compares an item while its short ttl may be running out.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test
from langgraph.store.base import GetOp, Item, Op, PutOp
from langgraph.store.dmem import DmemStore
from langgraph.store.memory import InMemoryStore

if TYPE_CHECKING:  # mypy names this directory's modules from the repository root
    from integrations.langgraph.tests.store_support import (
        BackendTarget,
        LoopThread,
        loop_thread,
        store_target,
    )
else:  # pytest (importlib mode) imports the helpers from this directory
    sys.path.insert(0, str(Path(__file__).parent))
    from store_support import BackendTarget, LoopThread, loop_thread, store_target

__all__ = ["loop_thread", "store_target"]

LABELS = ["a", "b", "ab", "a/b", "%2F", "%", "#", "a#b", "*", "?", "[x]", "\\", "é", "\ud800", " "]
KEYS = ["k", "", "k/1", "k#1", "%", "*", "\ud800", "é"]

# Half the labels from two common ones, so namespaces share prefixes and suffixes often.
labels = st.sampled_from(["a", "b"]) | st.sampled_from(LABELS)
namespaces = st.lists(labels, min_size=1, max_size=3).map(tuple)
prefixes = st.lists(labels, min_size=0, max_size=2).map(tuple)
keys = st.sampled_from(KEYS)
values = st.fixed_dictionaries(
    {"n": st.integers(-5, 5)},
    optional={
        "s": st.sampled_from(["x", "y", "", "é/#"]),
        "nested": st.fixed_dictionaries({"a": st.integers(0, 2)}),
        "tags": st.lists(st.sampled_from(["t1", "t2"]), max_size=2),
        "f": st.floats(-2, 2, allow_nan=False),
    },
)
filters = st.one_of(
    st.none(),
    st.fixed_dictionaries({"n": st.integers(-5, 5)}),
    st.fixed_dictionaries(
        {
            "n": st.dictionaries(
                st.sampled_from(["$gt", "$gte", "$lt", "$lte", "$eq", "$ne"]),
                st.integers(-5, 5),
                min_size=1,
                max_size=2,
            )
        }
    ),
    st.fixed_dictionaries({"s": st.sampled_from(["x", "y", ""])}),
    st.fixed_dictionaries({"nested": st.fixed_dictionaries({"a": st.integers(0, 2)})}),
    st.fixed_dictionaries({"tags": st.lists(st.sampled_from(["t1", "t2"]), max_size=2)}),
)
paths = st.lists(labels | st.just("*"), min_size=1, max_size=2).map(tuple)


def _view(item: Any) -> tuple[Any, ...] | None:
    return None if item is None else (item.namespace, item.key, item.value)


def _order(item: Item) -> tuple[tuple[str, ...], str]:
    return (item.namespace, item.key)


class StoreComparison(RuleBasedStateMachine):
    target: BackendTarget
    loop: LoopThread

    def __init__(self) -> None:
        super().__init__()
        self.model = InMemoryStore()
        self.store = DmemStore(self.target.url, namespace=self.target.namespace)

    @initialize()
    def start_empty(self) -> None:
        # One namespace for the whole run: every example starts from what clear() leaves.
        self.store.setup()
        self.store.batch([])
        for ns in self.store.list_namespaces(limit=10_000):
            for item in self.store.search(ns, limit=10_000):
                self.store.delete(item.namespace, item.key)

    def teardown(self) -> None:
        self.loop.run(self.store.aclose())

    def _batch(self, ops: list[Any], use_async: bool) -> list[Any]:
        if use_async:
            return self.loop.run(self.store.abatch(ops))
        return self.store.batch(ops)

    def _list_model(self, **kwargs: Any) -> list[tuple[str, ...]]:
        for ns in [ns for ns, items in self.model._data.items() if not items]:
            del self.model._data[ns]
        return self.model.list_namespaces(**kwargs)

    @rule(ns=namespaces, key=keys, value=values, long_ttl=st.booleans(), use_async=st.booleans())
    def put(
        self, ns: tuple[str, ...], key: str, value: dict[str, Any], long_ttl: bool, use_async: bool
    ) -> None:
        self.model.put(ns, key, value)
        self._batch([PutOp(ns, key, value, ttl=60.0 if long_ttl else None)], use_async)

    @rule(ns=namespaces, key=keys, use_async=st.booleans())
    def delete(self, ns: tuple[str, ...], key: str, use_async: bool) -> None:
        self.model.delete(ns, key)
        self._batch([PutOp(ns, key, None)], use_async)

    @rule(ns=namespaces, key=keys, value=values)
    def put_expiring(self, ns: tuple[str, ...], key: str, value: dict[str, Any]) -> None:
        self.store.put(ns, key, value, ttl=0.0005)  # 30 ms
        time.sleep(0.15)
        assert self.store.get(ns, key) is None
        assert all(_order(i) != (ns, key) for i in self.store.search(ns, limit=1000))
        self.model.delete(ns, key)

    @rule(ns=namespaces, key=keys, use_async=st.booleans())
    def get(self, ns: tuple[str, ...], key: str, use_async: bool) -> None:
        (got,) = self._batch([GetOp(ns, key)], use_async)
        assert _view(got) == _view(self.model.get(ns, key))

    @rule(
        ns=namespaces,
        key=keys,
        other=namespaces,
        value=values,
        use_async=st.booleans(),
    )
    def read_then_write_batch(
        self,
        ns: tuple[str, ...],
        key: str,
        other: tuple[str, ...],
        value: dict[str, Any],
        use_async: bool,
    ) -> None:
        # Reads of a batch see the state before its puts; the last put of an item wins.
        ops: list[Op] = [
            GetOp(ns, key),
            PutOp(ns, key, value),
            PutOp(other, key, None),
            GetOp(ns, key),
        ]
        ops.append(PutOp(ns, key, {**value, "n": 9}))
        got = self._batch(ops, use_async)
        want = self.model.batch(ops)
        assert [_view(r) for r in got] == [_view(r) for r in want]

    @rule(
        prefix=prefixes,
        filter=filters,
        limit=st.integers(0, 6),
        offset=st.integers(0, 4),
        use_async=st.booleans(),
    )
    def search(
        self,
        prefix: tuple[str, ...],
        filter: dict[str, Any] | None,  # noqa: A002 - LangGraph's name
        limit: int,
        offset: int,
        use_async: bool,
    ) -> None:
        if use_async:
            got = self.loop.run(
                self.store.asearch(prefix, filter=filter, limit=limit, offset=offset)
            )
        else:
            got = self.store.search(prefix, filter=filter, limit=limit, offset=offset)
        full = sorted(self.model.search(prefix, filter=filter, limit=10**6), key=_order)
        assert [_view(i) for i in got] == [_view(i) for i in full[offset : offset + limit]]
        assert all(i.score is None for i in got)

    @rule(
        prefix=st.none() | paths,
        suffix=st.none() | paths,
        max_depth=st.none() | st.integers(1, 3),
        limit=st.integers(0, 8),
        offset=st.integers(0, 3),
        use_async=st.booleans(),
    )
    def list_namespaces(
        self,
        prefix: tuple[str, ...] | None,
        suffix: tuple[str, ...] | None,
        max_depth: int | None,
        limit: int,
        offset: int,
        use_async: bool,
    ) -> None:
        kwargs: dict[str, Any] = {
            "prefix": prefix,
            "suffix": suffix,
            "max_depth": max_depth,
            "limit": limit,
            "offset": offset,
        }
        if use_async:
            got = self.loop.run(self.store.alist_namespaces(**kwargs))
        else:
            got = self.store.list_namespaces(**kwargs)
        assert got == self._list_model(**kwargs)


def test_matches_in_memory_store(store_target: BackendTarget, loop_thread: LoopThread) -> None:
    machine = type("Machine", (StoreComparison,), {"target": store_target, "loop": loop_thread})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=12,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


@pytest.mark.parametrize("label", LABELS)
def test_every_label_round_trips(label: str) -> None:
    from langgraph.store.dmem._keys import decode_key, encode_key

    for ns in [(label,), (label, label), ("x", label)]:
        for key in KEYS:
            assert decode_key(encode_key(ns, key)) == (ns, key)
