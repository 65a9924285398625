"""DmemSaver / AsyncDmemSaver beyond the conformance suite: key layout and escaping, real
graphs resumed from their checkpoints (also with a DeltaChannel), pruning, errors."""

from __future__ import annotations

import asyncio
import operator
import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, TypedDict

import dmem
import pytest
from dmem_conformance import testkit
from langchain_core.runnables import RunnableConfig
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.dmem import AsyncDmemSaver, DmemSaver
from langgraph.checkpoint.dmem._keys import (
    blob_key,
    checkpoint_key,
    decode_parts,
    prefix_pattern,
    write_key,
)
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

# Thread IDs, namespaces and checkpoint IDs that a naive "a:b:c" layout or an unescaped
# glob would confuse: separators, glob characters, percent signs, non-ASCII text.
AWKWARD = ["a", "a:b", "a:", ":a", "a*", "a?", "[a]", "a\\", "a%3Ab", "a%", "é:ü", "🙂", " "]


def _config(thread_id: str, ns: str = "", checkpoint_id: str | None = None) -> RunnableConfig:
    conf: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ns}
    if checkpoint_id is not None:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def _checkpoint(checkpoint_id: str, values: dict[str, Any]) -> Any:
    cp = empty_checkpoint()
    cp["id"] = checkpoint_id
    cp["channel_values"] = values
    cp["channel_versions"] = {k: 1 for k in values}
    return cp


@pytest.fixture(params=["sqlite", "redis", "memory"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return f"memory://lg-{uuid.uuid4().hex}"
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def saver(url: str) -> Iterator[DmemSaver]:
    with DmemSaver.from_conn_string(url, namespace=f"lg-{uuid.uuid4().hex}") as cp:
        yield cp


# --- key layout ------------------------------------------------------------------------------
def test_key_parts_are_injective_and_literal() -> None:
    keys = {
        checkpoint_key(t, ns, i)
        for t in AWKWARD
        for ns in ("", "x:y", "x")
        for i in ("1", "1:2", "*")
    }
    assert len(keys) == len(AWKWARD) * 3 * 3
    for key in keys:
        assert key.count(":") == 3
    assert decode_parts(checkpoint_key("a:b", "x:y", "1:2")) == ["a:b", "x:y", "1:2"]
    assert decode_parts(write_key("t", "", "c", "task:1", -1)) == ["t", "", "c", "task:1", "-1"]
    # 1 and "1" are different versions, so different blobs.
    assert blob_key("t", "", "ch", 1) != blob_key("t", "", "ch", "1")
    # Glob characters are percent-encoded too, so a prefix pattern matches literally.
    assert prefix_pattern("c", "a*", "[x]?") == "c:a%2A:%5Bx%5D%3F:*"


def test_awkward_ids_do_not_collide(saver: DmemSaver) -> None:
    for n, thread_id in enumerate(AWKWARD):
        for ns in ("", "sub:graph"):
            config = _config(thread_id, ns)
            cp = _checkpoint(f"{n:04}-{ns}", {"who": [thread_id, ns]})
            saver.put(config, cp, {"source": "input", "step": n}, cp["channel_versions"])
            saver.put_writes(_config(thread_id, ns, cp["id"]), [("w", thread_id)], "task:*")
    for n, thread_id in enumerate(AWKWARD):
        for ns in ("", "sub:graph"):
            got = saver.get_tuple(_config(thread_id, ns))
            assert got is not None
            assert got.checkpoint["channel_values"] == {"who": [thread_id, ns]}
            assert got.pending_writes == [("task:*", "w", thread_id)]
            assert got.config["configurable"] == {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": f"{n:04}-{ns}",
            }
        listed = list(saver.list({"configurable": {"thread_id": thread_id}}))
        assert sorted(t.checkpoint["channel_values"]["who"] for t in listed) == [
            [thread_id, ""],
            [thread_id, "sub:graph"],
        ]
    assert len(list(saver.list(None))) == 2 * len(AWKWARD)
    # "a" must not delete "a:b", "a*" or "a?" (prefix and glob characters are literal).
    saver.delete_thread("a")
    assert saver.get_tuple(_config("a")) is None
    for other in AWKWARD[1:]:
        assert saver.get_tuple(_config(other)) is not None, other
    assert len(list(saver.list(None))) == 2 * (len(AWKWARD) - 1)


def test_keys_in_the_store(url: str) -> None:
    """The layout the README documents, read back with plain dmem."""
    namespace = f"lg-{uuid.uuid4().hex}"
    with dmem.open_sync(url, namespace=namespace) as kv:
        saver = DmemSaver(kv)
        cp = _checkpoint("0001", {"x": 1, "y": "two"})
        saver.put(_config("t:1"), cp, {"run_id": "r1"}, {"x": 1})
        saver.put_writes(_config("t:1", "", "0001"), [("x", 2)], "task")
        assert sorted(kv.keys()) == [
            "b:t%3A1::x:1",
            "c:t%3A1::0001",
            "w:t%3A1::0001:task:0",
        ]
        assert all(isinstance(v, bytes) for _, v in kv.scan())
        assert sorted(kv.find_by_tag("langgraph_run", "r1")) == ["b:t%3A1::x:1", "c:t%3A1::0001"]
        # "y" had no new version: it is not stored, and so not returned.
        got = saver.get_tuple(_config("t:1"))
        assert got is not None and got.checkpoint["channel_values"] == {"x": 1}


def test_list_order_filter_before_limit(saver: DmemSaver) -> None:
    ids = [str(uuid.uuid4()) for _ in range(5)]
    ids.sort()
    parent: str | None = None
    for step, checkpoint_id in enumerate(ids):
        cp = _checkpoint(checkpoint_id, {"step": step})
        config = _config("t", "", parent)
        metadata: Any = {"step": step, "source": "loop", "even": step % 2 == 0}
        saver.put(config, cp, metadata, {})
        parent = checkpoint_id
    listed = list(saver.list(_config("t")))
    assert [t.config["configurable"]["checkpoint_id"] for t in listed] == ids[::-1]
    assert listed[0].parent_config == _config("t", "", ids[3])
    assert listed[-1].parent_config is None
    evens = list(saver.list(_config("t"), filter={"even": True}))
    assert [t.metadata["step"] for t in evens] == [4, 2, 0]
    before = list(saver.list(_config("t"), before=_config("t", "", ids[3]), limit=2))
    assert [t.metadata["step"] for t in before] == [2, 1]
    assert list(saver.list(_config("t"), limit=0)) == []
    # A namespace or a checkpoint ID without a thread selects across threads.
    other = _checkpoint(ids[0], {"step": 0})
    saver.put(_config("u", "sub"), other, {"step": 9}, {})
    assert [t.metadata["step"] for t in saver.list({"configurable": {"checkpoint_ns": "sub"}})] == [
        9
    ]
    by_id = saver.list({"configurable": {"checkpoint_id": ids[0]}})
    assert sorted(t.config["configurable"]["thread_id"] for t in by_id) == ["t", "u"]
    assert list(saver.list(_config("nobody"))) == []


# --- real graphs -----------------------------------------------------------------------------
class Counter(TypedDict):
    total: int
    seen: Annotated[list[str], operator.add]


def _counter_graph() -> StateGraph[Counter]:
    def add(state: Counter) -> dict[str, Any]:
        return {"total": state["total"] + 1, "seen": [f"step{state['total'] + 1}"]}

    builder = StateGraph(Counter)
    builder.add_node("add", add)
    builder.add_edge(START, "add")
    builder.add_edge("add", END)
    return builder


def test_graph_resumes_from_sqlite_file(sqlite_url: str) -> None:
    config: RunnableConfig = {"configurable": {"thread_id": "conversation:1"}}
    with DmemSaver.from_conn_string(sqlite_url, namespace="graphs") as saver:
        graph = _counter_graph().compile(checkpointer=saver)
        assert graph.invoke({"total": 0, "seen": []}, config)["total"] == 1
    # A new saver over the same file: the thread's state is there, and the next run
    # continues from it.
    with DmemSaver.from_conn_string(sqlite_url, namespace="graphs") as saver:
        graph = _counter_graph().compile(checkpointer=saver)
        state = graph.get_state(config)
        assert state.values == {"total": 1, "seen": ["step1"]}
        result = graph.invoke({"total": state.values["total"], "seen": []}, config)
        assert result == {"total": 2, "seen": ["step1", "step2"]}
        history = list(graph.get_state_history(config))
        # Three checkpoints a run (input, start, after "add"); the second continues the
        # thread's step count where the first left it.
        assert [h.metadata["step"] for h in history if h.metadata] == [4, 3, 2, 1, 0, -1]
        assert history[0].values == result


async def test_interrupt_resumed_by_another_async_saver(redis_url: str) -> None:
    namespace = f"lg-{uuid.uuid4().hex}"

    def ask(state: Counter) -> dict[str, Any]:
        answer = interrupt("how many?")
        return {"total": int(answer), "seen": ["asked"]}

    builder = StateGraph(Counter)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    config: RunnableConfig = {"configurable": {"thread_id": "t-interrupt"}}
    async with AsyncDmemSaver.from_conn_string(redis_url, namespace=namespace) as saver:
        graph = builder.compile(checkpointer=saver)
        first = await graph.ainvoke({"total": 0, "seen": []}, config)
        assert first["__interrupt__"][0].value == "how many?"
    async with AsyncDmemSaver.from_conn_string(redis_url, namespace=namespace) as saver:
        graph = builder.compile(checkpointer=saver)
        state = await graph.aget_state(config)
        assert state.next == ("ask",)
        assert state.tasks[0].interrupts[0].value == "how many?"
        done = await graph.ainvoke(Command(resume="7"), config)
        assert done == {"total": 7, "seen": ["asked"]}


def _concat(state: list[str] | None, writes: Sequence[list[str]]) -> list[str]:
    out = list(state or [])
    for w in writes:
        out.extend(w)
    return out


class Log(TypedDict):
    log: Annotated[list[str], DeltaChannel(_concat, snapshot_frequency=3)]


def test_delta_channel_rebuilt_after_resume_and_not_pruned(sqlite_url: str) -> None:
    def note(state: Log) -> dict[str, Any]:
        return {"log": [f"n{len(state['log'])}"]}

    builder = StateGraph(Log)
    builder.add_node("note", note)
    builder.add_edge(START, "note")
    builder.add_edge("note", END)
    config: RunnableConfig = {"configurable": {"thread_id": "delta"}}
    with DmemSaver.from_conn_string(sqlite_url, namespace="delta") as saver:
        graph = builder.compile(checkpointer=saver)
        for _ in range(4):
            graph.invoke({"log": []}, config)
        expected = graph.get_state(config).values["log"]
    assert expected == ["n0", "n1", "n2", "n3"]
    with DmemSaver.from_conn_string(sqlite_url, namespace="delta") as saver:
        graph = builder.compile(checkpointer=saver)
        assert graph.get_state(config).values["log"] == expected
        before = len(list(saver.list(config)))
        with pytest.raises(dmem.NotSupportedError, match="DeltaChannel: delta"):
            saver.prune(["delta"])
        assert len(list(saver.list(config))) == before
        assert graph.get_state(config).values["log"] == expected
        saver.prune(["delta"], strategy="delete")
        assert saver.get_tuple(config) is None


# --- pruning, copies, runs -------------------------------------------------------------------
def test_prune_keep_latest_keeps_its_values_and_frees_the_rest(url: str) -> None:
    with dmem.open_sync(url, namespace=f"lg-{uuid.uuid4().hex}") as kv:
        saver = DmemSaver(kv)
        graph = _counter_graph().compile(checkpointer=saver)
        config: RunnableConfig = {"configurable": {"thread_id": "p"}}
        for n in range(3):
            graph.invoke({"total": n, "seen": []}, config)
        latest = graph.get_state(config)
        blobs_before = len(kv.keys("b:*"))
        saver.prune(["p"])
        assert len(list(saver.list(config))) == 1
        assert graph.get_state(config).values == latest.values
        # Blobs of the deleted checkpoints that the kept one does not use are gone.
        kept = saver.get_tuple(config)
        assert kept is not None
        assert len(kv.keys("b:*")) == len(kept.checkpoint["channel_versions"]) < blobs_before
        assert kv.keys("w:*") == kv.keys(prefix_pattern("w", "p", "", kept.checkpoint["id"]))


def test_copy_thread_then_delete_for_runs(saver: DmemSaver) -> None:
    config = _config("src")
    cp1 = _checkpoint("0001", {"x": 1})
    saver.put(config, cp1, {"run_id": "run-1"}, {"x": 1})
    cp2 = _checkpoint("0002", {"x": 2})
    cp2["channel_versions"] = {"x": 2}
    saver.put(_config("src", "", "0001"), cp2, {"run_id": "run-2"}, {"x": 2})
    saver.put_writes(_config("src", "", "0002"), [("x", 3)], "task")
    saver.copy_thread("src", "dst")
    copied = saver.get_tuple(_config("dst"))
    assert copied is not None
    assert copied.checkpoint["channel_values"] == {"x": 2}
    assert copied.pending_writes == [("task", "x", 3)]
    assert copied.parent_config == _config("dst", "", "0001")
    saver.delete_for_runs(["run-2"])
    # Both threads lose run-2's checkpoint and writes; run-1's stays, with its value.
    for thread_id in ("src", "dst"):
        left = saver.get_tuple(_config(thread_id))
        assert left is not None
        assert left.config["configurable"]["checkpoint_id"] == "0001"
        assert left.checkpoint["channel_values"] == {"x": 1}
        assert saver.get_tuple(_config(thread_id, "", "0002")) is None


def test_special_writes_replace_ordinary_ones_do_not(saver: DmemSaver) -> None:
    cp = _checkpoint("0001", {})
    saver.put(_config("t"), cp, {}, {})
    at = _config("t", "", "0001")
    saver.put_writes(at, [("x", "first")], "task")
    saver.put_writes(at, [("x", "second")], "task")
    saver.put_writes(at, [("__error__", "e1")], "task")
    saver.put_writes(at, [("__error__", "e2")], "task")
    got = saver.get_tuple(at)
    assert got is not None and got.pending_writes is not None
    assert sorted(got.pending_writes) == [("task", "__error__", "e2"), ("task", "x", "first")]


# --- threads and loops -----------------------------------------------------------------------
async def test_async_saver_blocking_methods(sqlite_url: str) -> None:
    async with AsyncDmemSaver.from_conn_string(sqlite_url) as saver:
        cp = _checkpoint("0001", {"x": 1})
        with pytest.raises(dmem.SyncCallInLoopError):
            saver.put(_config("t"), cp, {}, {"x": 1})
        assert await saver.aget_tuple(_config("t")) is None

        def from_thread() -> Any:
            saver.put(_config("t"), cp, {}, {"x": 1})
            return saver.get_tuple(_config("t"))

        got = await asyncio.to_thread(from_thread)
        assert got is not None and got.checkpoint["channel_values"] == {"x": 1}
        assert [t.checkpoint["id"] for t in await asyncio.to_thread(list, saver.list(None))] == [
            "0001"
        ]


def test_sync_saver_from_many_threads(sqlite_url: str) -> None:
    with DmemSaver.from_conn_string(sqlite_url) as saver:
        graph = _counter_graph().compile(checkpointer=saver)
        errors: list[BaseException] = []

        def run(n: int) -> None:
            try:
                config: RunnableConfig = {"configurable": {"thread_id": f"t{n}"}}
                for _ in range(3):
                    total = graph.get_state(config).values.get("total", 0)
                    graph.invoke({"total": total, "seen": []}, config)
            except Exception as exc:  # noqa: BLE001 (reported below, with the thread's error)
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for n in range(4):
            state = graph.get_state({"configurable": {"thread_id": f"t{n}"}})
            assert state.values == {"total": 3, "seen": ["step1", "step2", "step3"]}


# --- errors ----------------------------------------------------------------------------------
def test_bad_input_is_refused_before_any_io(sqlite_url: str) -> None:
    kv = dmem.open_sync(sqlite_url)
    saver = DmemSaver(kv)
    kv.close()  # any I/O now would be NotInitializedError, not the errors below
    cp = _checkpoint("0001", {})
    bad: list[tuple[Any, ...]] = [
        (saver.get_tuple, {"configurable": {}}),
        (saver.get_tuple, {}),
        (saver.get_tuple, {"configurable": {"thread_id": b"bytes"}}),
        (saver.get_tuple, _config("\ud800")),
        (saver.put, {"configurable": {"checkpoint_ns": ""}}, cp, {}, {}),
        (saver.put_writes, _config("t"), [("x", 1)], "task"),
        (saver.prune, "thread"),
        (saver.delete_for_runs, "run"),
        (saver.delete_thread, None),
    ]
    for call, *args in bad:
        with pytest.raises(dmem.InvalidArgumentError):
            call(*args)
    with pytest.raises(dmem.InvalidArgumentError, match="keep_none"):
        saver.prune(["t"], strategy="keep_none")
    with pytest.raises(dmem.InvalidArgumentError):
        list(saver.list(_config("t"), limit="3"))  # type: ignore[arg-type]
    with pytest.raises(dmem.NotInitializedError):
        saver.get_tuple(_config("t"))


def test_wrong_store_types() -> None:
    with pytest.raises(dmem.InvalidArgumentError, match="SyncStore"):
        DmemSaver("sqlite:///x.db")  # type: ignore[arg-type]
    with pytest.raises(dmem.InvalidArgumentError, match=r"dmem\.Store"):
        AsyncDmemSaver("sqlite:///x.db")  # type: ignore[arg-type]


def test_corrupt_record(sqlite_url: str) -> None:
    with dmem.open_sync(sqlite_url) as kv:
        saver = DmemSaver(kv)
        kv.set(checkpoint_key("t", "", "0001"), {"not": "a record"})
        with pytest.raises(dmem.CorruptValueError, match="c:t::0001"):
            saver.get_tuple(_config("t"))
        kv.set(checkpoint_key("t", "", "0001"), b"\xc1")
        with pytest.raises(dmem.CorruptValueError):
            list(saver.list(None))


def test_backend_down_is_a_dmem_error(redis_url: str) -> None:
    down = testkit.unreachable_url(redis_url)
    with pytest.raises(dmem.DmemError), DmemSaver.from_conn_string(down, timeout=0.5) as saver:
        saver.get_tuple(_config("t"))


def test_no_secret_in_reprs_or_errors(postgres_url: str) -> None:
    # The throwaway server trusts loopback connections, so the password is accepted and
    # unused: it must still show nowhere.
    secret = "Xq7-wrongpass-9Kd"
    url = postgres_url.replace("postgresql://postgres", f"postgresql://postgres:{secret}", 1)
    texts: list[str] = []
    with DmemSaver.from_conn_string(url) as saver:
        texts.append(repr(saver))
        saver.put(_config("t"), _checkpoint("0001", {}), {}, {})
        assert saver.get_tuple(_config("t")) is not None
    down = testkit.unreachable_url(url)
    with (
        pytest.raises(dmem.DmemError) as caught,
        DmemSaver.from_conn_string(down, timeout=2) as saver,
    ):
        saver.get_tuple(_config("t"))
    texts += testkit.exception_texts(caught.value)
    testkit.assert_secret_hidden(secret, texts)
    assert texts[0].startswith("<DmemSaver over <dmem.Store postgresql://")
