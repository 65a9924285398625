"""The sync API (dmem.open_sync & co, dmem.run_sync) on memory, SQLite files and redis-server.

- The whole KV conformance suite through the blocking API: ``tests/sync_adapter.py`` gives
  the suite async Stores whose every call runs a ``SyncStore`` method in a worker thread, on
  SQLite and Redis, plain and under Cache + Compression, as the backends' own conformance
  modules run it.
- Many threads at once (mixed operations, results checked), the same results and errors as
  the async API, ``SyncCallInLoopError``, fork, the exit hook, ``scan`` closing, single
  flight and locks across threads, ``with_namespace``, the vector store and MemorySystem.

Nothing is mocked: a real SQLite file, a real redis-server (``DMEM_TEST_REDIS_URL`` or a
throwaway one on a free loopback port).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import dmem
import dmem_conformance
import pytest
from dmem import Cache, Compression, Wrapper
from dmem_conformance import testkit

# tests/sync_adapter.py, beside this file (tests/ is not a package: pytest runs with
# --import-mode=importlib).
sys.path.insert(0, str(Path(__file__).resolve().parent))
sync_factory: Callable[..., dmem_conformance.StoreFactory] = importlib.import_module(
    "sync_adapter"
).sync_factory

T = TypeVar("T")

REDIS_SERVER = ["redis-server", "--port", "{port}", "--bind", "127.0.0.1", "--save", ""]


# --- the conformance suite through the sync API -------------------------------------------
# The chains the SQLite and Redis conformance modules run (plugins/*/tests).
CHAINS: dict[str, Sequence[Any]] = {
    "plain": (),
    "cache+compression": (Cache(ttl=30), Compression(threshold=16)),
}
LIMIT = {"max_value_bytes": 5 * 1024 * 1024}  # a limit batch.refused can cross
# As plugins/redis/tests/test_redis_conformance.py: "down" is quick to detect.
REDIS_FAST = {"timeout": 6.0, "connect_timeout": 1.0, "retries": 1}


class _SyncChains:
    requires_members: ClassVar[frozenset[str]] = dmem_conformance.OPTIONAL_MEMBERS

    @pytest.fixture(params=list(CHAINS.values()), ids=list(CHAINS))
    def middleware(self, request: pytest.FixtureRequest) -> Sequence[Any]:
        chain: Sequence[Any] = request.param
        return chain


class TestSyncSQLiteConformance(_SyncChains, dmem_conformance.KVSuite):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> dmem_conformance.StoreFactory:
        return sync_factory(f"sqlite:///{tmp_path / 'conformance.db'}", **LIMIT)

    @pytest.fixture
    def unreachable_store_factory(self, tmp_path: Path) -> dmem_conformance.StoreFactory:
        # A database under a regular file cannot be opened: the file-backend "server down".
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        return sync_factory(f"sqlite:///{blocker / 'x.db'}", timeout=2)


class TestSyncRedisConformance(_SyncChains, dmem_conformance.KVSuite):
    @pytest.fixture
    def store_factory(self, redis_url: str) -> dmem_conformance.StoreFactory:
        return sync_factory(redis_url, **REDIS_FAST, **LIMIT)

    @pytest.fixture
    def unreachable_store_factory(self) -> dmem_conformance.StoreFactory:
        # A port nothing listens on: connections are refused at once.
        return sync_factory(f"redis://127.0.0.1:{testkit.free_port()}/0", **REDIS_FAST)


# --- the sync API's own behaviour ------------------------------------------------------------
BACKENDS = ("memory", "sqlite", "redis")
THREADS = 8


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of the backend, with a namespace of this test's own on Redis."""
    if request.param == "memory":
        return f"memory://sync-{uuid.uuid4().hex}"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sync.db'}"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def kv(url: str) -> Iterator[dmem.SyncStore]:
    store = dmem.open_sync(url, namespace=f"sync-{uuid.uuid4().hex[:12]}")
    try:
        yield store
    finally:
        with contextlib.suppress(dmem.NotInitializedError):
            store.clear()
        store.close()


def _in_threads(work: Callable[[int], T], n: int = THREADS) -> list[T]:
    """``work(i)`` in ``n`` threads started together; their results, or the first error."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait()
        return work(i)

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_round_trip(kv: dmem.SyncStore) -> None:
    assert kv.set("user:1", {"name": "Ada"}, tags={"role": "admin"}) is True
    assert kv.get("user:1") == {"name": "Ada"}
    assert kv.get("missing", "dflt") == "dflt"
    assert kv.exists("user:1") and not kv.exists("missing")
    assert kv.set("user:1", "x", if_not_exists=True) is False
    assert kv.set_many({"a": 1, "b": [1, 2]}, ttl=60) == 2
    assert kv.get_many(["a", "b", "nope"]) == {"a": 1, "b": [1, 2]}
    value, left = kv.get_with_ttl("a") or (None, None)
    assert value == 1 and left is not None and 59 < left <= 60
    assert sorted(kv.keys()) == ["a", "b", "user:1"] and kv.count("user:*") == 1
    assert dict(kv.scan("[ab]")) == {"a": 1, "b": [1, 2]}
    assert kv.find_by_tag("role", "admin") == ["user:1"]
    assert kv.get_tags("user:1") == {"role": "admin"}
    assert kv.persist("a") and kv.ttl("a") is None
    assert kv.expire("a", 30) and 29 < (kv.ttl("a") or 0) <= 30
    assert kv.incr("n", 5) == 5 and kv.decr("n", 2) == 3
    assert kv.compare_and_set("n", 3, 10) and not kv.compare_and_set("n", 3, 11)
    assert kv.get("n") == 10 and kv.compare_and_delete("n", 10) and not kv.exists("n")
    assert kv.delete_by_tag("role", "admin") == 1
    assert kv.delete("a") and not kv.delete("a")
    assert kv.delete_many(["b", "zzz"]) == 1
    assert kv.health().status == "healthy"
    assert kv.clear() == 0


def test_threads_at_once(kv: dmem.SyncStore) -> None:
    """8 threads of mixed calls on one store: every answer is the one expected."""
    rounds = 25

    def work(i: int) -> int:
        mine = f"t{i}:"
        for r in range(rounds):
            assert kv.set(f"{mine}{r}", {"i": i, "r": r}, tags={"t": str(i)})
            assert kv.get(f"{mine}{r}") == {"i": i, "r": r}
            kv.incr("hits")
            if r % 5 == 0:
                batch = {f"{mine}b{r}:{j}": j for j in range(4)}
                assert kv.set_many(batch, ttl=60) == 4
                assert kv.get_many(list(batch)) == batch
                assert kv.delete_many(list(batch)) == 4
            if r % 7 == 0:
                assert kv.delete(f"{mine}{r}")
        listed = dict(kv.scan(f"{mine}*"))
        expected = {f"{mine}{r}": {"i": i, "r": r} for r in range(rounds) if r % 7}
        assert listed == expected
        assert sorted(kv.find_by_tag("t", str(i))) == sorted(expected)
        return len(listed)

    assert _in_threads(work) == [rounds - len(range(0, rounds, 7))] * THREADS
    assert kv.get("hits") == THREADS * rounds, "increments from threads were lost"


def test_same_results_and_errors_as_async(url: str) -> None:
    """Each call gives what the async Store's call gives, error type and message alike."""
    kv = dmem.open_sync(url, namespace=f"sync-{uuid.uuid4().hex[:12]}")
    twin = kv.store  # the async Store behind it, on dmem's loop thread
    try:
        kv.set("k", 1, tags={"a": "b"})
        calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
            ("get", ("k",), {}),
            ("get", ("",), {}),  # bad key
            ("set", ("k", object()), {}),  # bad value
            ("set", ("k", 1), {"ttl": -1}),  # bad ttl
            ("set", ("k", 1), {"tags": {"": "x"}}),  # bad tag
            ("set_many", ("abc",), {}),  # a str is no batch
            ("get_many", ("k",), {}),
            ("keys", ("[",), {}),  # malformed pattern
            ("ttl", ("missing",), {}),  # KeyNotFoundError
            ("get_tags", ("missing",), {}),  # KeyNotFoundError
            ("incr", ("k", "1"), {}),  # bad delta
            ("get_or_set", ("k", 42), {}),  # factory not callable
            ("get_tags", ("k",), {}),
            ("expire", ("k", 0), {}),  # bad ttl
        ]
        for name, args, kwargs in calls:

            async def async_call() -> Any:
                return await getattr(twin, name)(*args, **kwargs)  # noqa: B023 - awaited here

            sync_call = functools.partial(getattr(kv, name), *args, **kwargs)
            outcomes = [_outcome(sync_call), _outcome(lambda: dmem.run_sync(async_call()))]
            assert outcomes[0] == outcomes[1], f"{name}{args}: sync/async {outcomes}"
        with pytest.raises(dmem.KeyNotFoundError):
            kv.ttl("missing")
        with pytest.raises(dmem.InvalidPatternError):
            next(kv.scan("["))
    finally:
        kv.clear()
        kv.close()


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", call())
    except dmem.DmemError as exc:
        return (type(exc).__name__, str(exc))


def test_validation_comes_before_io(tmp_path: Path) -> None:
    """With the server gone, bad arguments are still argument errors: no I/O was tried."""
    server = testkit.ServerProcess([*REDIS_SERVER, "--appendonly", "no"], workdir=tmp_path)
    try:
        server.start()
    except testkit.ServerFailed as exc:
        dmem_conformance.backend_missing(f"cannot start redis-server: {exc}")
    try:
        kv = dmem.open_sync(
            f"redis://127.0.0.1:{server.port}/0", timeout=2.0, connect_timeout=0.5, retries=0
        )
        kv.set("k", 1)
    finally:
        server.cleanup()  # stopped: from here on any I/O fails
    try:
        with pytest.raises(dmem.InvalidArgumentError):
            kv.set("", 1)
        with pytest.raises(dmem.InvalidArgumentError):
            kv.set("k", 1, ttl=-5)
        with pytest.raises(dmem.InvalidValueError):
            kv.set("k", object())
        with pytest.raises(dmem.InvalidPatternError):
            kv.keys("[")
        with pytest.raises(dmem.InvalidArgumentError):
            kv.get_many("k")
        with pytest.raises(dmem.ProviderUnavailableError):
            kv.get("k")  # while a valid call does try the server, and says it is down
    finally:
        kv.close()


def test_closed_store(url: str) -> None:
    kv = dmem.open_sync(url, namespace=f"sync-{uuid.uuid4().hex[:12]}")
    kv.set("k", 1)
    kv.clear()
    kv.close()
    kv.close()  # idempotent
    for call in (
        lambda: kv.get("k"),
        lambda: kv.set("k", 2),
        lambda: kv.keys(),
        lambda: kv.incr("n"),
        lambda: next(kv.scan()),
        lambda: kv.lock("l", ttl=5).acquire(),
        lambda: kv.with_namespace("other"),
    ):
        with pytest.raises(dmem.NotInitializedError):
            call()
    assert kv.health().status != "healthy"


def test_context_manager_closes(tmp_path: Path) -> None:
    with dmem.open_sync(f"sqlite:///{tmp_path / 'cm.db'}") as kv:
        kv.set("k", 1)
    with pytest.raises(dmem.NotInitializedError):
        kv.get("k")
    assert "SyncStore" in repr(kv) and "cm.db" in repr(kv)


def test_sync_call_in_loop_thread_raises(tmp_path: Path) -> None:
    kv = dmem.open_sync(f"sqlite:///{tmp_path / 'loop.db'}")
    try:
        kv.set("k", 1)

        async def misuse() -> Any:
            return kv.get("k")  # a blocking call on dmem's own loop: would wait for itself

        with pytest.raises(dmem.SyncCallInLoopError, match="async API"):
            dmem.run_sync(misuse())
        assert isinstance(dmem.SyncCallInLoopError("x"), RuntimeError)

        async def right() -> Any:
            return await kv.store.get("k")

        assert dmem.run_sync(right()) == 1, "the loop thread works on after the misuse"
        assert kv.get("k") == 1
        with pytest.raises(dmem.InvalidArgumentError):
            dmem.run_sync(kv.store.get)  # type: ignore[arg-type]
    finally:
        kv.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_forked_child(url: str) -> None:
    """The child gets a loop thread of its own; the parent's stores refuse there."""
    namespace = f"sync-{uuid.uuid4().hex[:12]}"
    kv = dmem.open_sync(url, namespace=namespace)
    kv.set("k", "parent")
    # The parent's loop object stays alive in the child (the parent's store refers to it),
    # so the child's own loop cannot have its id. (Thread idents can repeat in a child.)
    parent_loop = dmem.run_sync(_loop_id())
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and leave without the parent's atexit hooks
        outcome: dict[str, Any] = {}
        try:
            try:
                kv.get("k")
                outcome["parent_store"] = "worked"
            except dmem.NotInitializedError:
                outcome["parent_store"] = "NotInitializedError"
            # Default sharing: dmem.sharing starts empty in a forked child, so the child's
            # store gets a connection (a SQLite worker) of its own, not the parent's, whose
            # thread the fork did not copy.
            own = dmem.open_sync(url, namespace=namespace)
            outcome["own_get"] = own.get("k")
            outcome["own_set"] = own.set("child", 1)
            outcome["other_loop"] = dmem.run_sync(_loop_id()) != parent_loop
            own.close()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            outcome["error"] = repr(exc)
        os.write(write, json.dumps(outcome).encode())
        os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 60)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        with os.fdopen(read, "rb") as pipe:
            report = json.loads(pipe.read() or b"{}") if ready else {"error": "child hung"}
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert report == {
            "parent_store": "NotInitializedError",
            "own_get": "parent",  # memory:// too: the child has a copy of the parent's
            "own_set": True,
            "other_loop": True,
        }
        # The parent's store still works after the fork.
        assert kv.get("k") == "parent"
        if not url.startswith("memory://"):
            assert kv.get("child") == 1
    finally:
        kv.clear()
        kv.close()


async def _loop_thread_ident() -> int:
    return threading.get_ident()


async def _loop_id() -> int:
    return id(asyncio.get_running_loop())


EXIT_SCRIPT = """
import sys, dmem
kv = dmem.open_sync(sys.argv[1], namespace="exit")
kv.set_many({f"k{i}": i for i in range(100)})
kv.set("last", "written")
print("done", flush=True)
# no close: the exit hook closes the store
"""


def test_exit_hook_closes_open_stores(tmp_path: Path) -> None:
    path = tmp_path / "exit.db"
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, f"sqlite:///{path}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    took = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done" and "Traceback" not in done.stderr, done.stderr
    assert took < 15, f"the process took {took:.1f}s to exit"
    # Closed at exit: SQLite checkpointed its write-ahead log back into the file.
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "the WAL was not checkpointed"
    with dmem.open_sync(f"sqlite:///{path}", namespace="exit") as kv:
        assert kv.get("last") == "written" and kv.count() == 101


class _ScanWatch(Wrapper):
    """A middleware that records when a scan of the provider is closed."""

    closed: ClassVar[list[str]] = []

    async def scan(self, pattern: Any) -> AsyncIterator[tuple[str, bytes]]:
        try:
            async for entry in self.inner.scan(pattern):
                yield entry
        finally:
            _ScanWatch.closed.append(self.namespace)


class _WatchScans:
    def wrap(self, inner: Any) -> _ScanWatch:
        return _ScanWatch(inner)


def test_scan_early_break_closes_the_async_scan(url: str) -> None:
    namespace = f"sync-{uuid.uuid4().hex[:12]}"
    kv = dmem.open_sync(url, namespace=namespace, middleware=[_WatchScans()])
    try:
        kv.set_many({f"k{i:04d}": i for i in range(1000)})
        seen = 0
        for _ in kv.scan():
            seen += 1
            if seen == 3:
                break
        assert seen == 3
        deadline = time.monotonic() + 5
        while namespace not in _ScanWatch.closed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert namespace in _ScanWatch.closed, "the async scan was left open"
        # A full scan ends (and closes) on its own.
        _ScanWatch.closed.clear()
        assert sum(1 for _ in kv.scan()) == 1000
        assert namespace in _ScanWatch.closed
    finally:
        kv.clear()
        kv.close()


def test_get_or_set_sync_factory_once_across_threads(kv: dmem.SyncStore) -> None:
    calls: list[int] = []
    guard = threading.Lock()
    loop_ident = dmem.run_sync(_loop_thread_ident())

    def factory() -> dict[str, int]:
        assert threading.get_ident() != loop_ident, "a sync factory ran on the loop thread"
        with guard:
            calls.append(1)
        time.sleep(0.2)  # long enough for every thread to arrive while it runs
        return {"n": len(calls)}

    got = _in_threads(lambda _: kv.get_or_set("cold", factory, ttl=60))
    assert len(calls) == 1, f"8 threads on one cold key called the factory {len(calls)}x"
    assert got == [{"n": 1}] * THREADS
    assert kv.get("cold") == {"n": 1}
    assert kv.get_or_set("cold", factory) == {"n": 1} and len(calls) == 1

    async def async_factory() -> str:
        return "from a coroutine"

    assert kv.get_or_set("async", async_factory) == "from a coroutine"

    def failing() -> int:
        raise LookupError("nope")

    with pytest.raises(LookupError, match="nope"):
        kv.get_or_set("bad", failing)
    assert not kv.exists("bad")


def test_lock_is_exclusive_across_threads(kv: dmem.SyncStore) -> None:
    inside = 0
    most = 0
    guard = threading.Lock()

    def work(_: int) -> None:
        nonlocal inside, most
        for _ in range(3):
            with kv.lock("job", ttl=10, wait=30) as held:
                assert held.owned()
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.005)
                with guard:
                    inside -= 1

    _in_threads(work)
    assert most == 1, f"{most} threads held the lock at once"
    assert not kv.exists("job"), "the lock's key stayed after release"

    held = kv.lock("held", ttl=10)
    held.acquire()
    other = kv.lock("held", ttl=10, wait=0.05)
    with pytest.raises(dmem.LockNotAcquiredError):
        other.acquire()
    assert other.release() is False
    assert held.extend(20) and held.name == "held" and "SyncLock" in repr(held)
    assert held.release()

    brief = kv.lock("brief", ttl=0.05)
    brief.__enter__()
    time.sleep(0.12)  # its ttl runs out while held; another takes the key
    assert kv.set("brief", "thief", if_not_exists=True)
    with pytest.raises(dmem.LockLostError):
        brief.__exit__(None, None, None)
    assert kv.get("brief") == "thief"


def test_with_namespace(kv: dmem.SyncStore) -> None:
    kv.set("k", "parent")
    other = kv.with_namespace(kv.namespace + "-other")
    try:
        assert isinstance(other, dmem.SyncStore) and other.namespace == kv.namespace + "-other"
        assert other.get("k") is None
        other.set("k", "other")
        assert kv.get("k") == "parent" and other.get("k") == "other"
        with pytest.raises(dmem.InvalidArgumentError):
            kv.with_namespace("a\x00b")
    finally:
        other.clear()
        other.close()
    with pytest.raises(dmem.NotInitializedError):
        other.get("k")
    assert kv.get("k") == "parent", "closing the derived store left the parent open"


def test_vector_store() -> None:
    with dmem.open_vector_sync("memory://", embedder="hash") as vs:
        assert (
            vs.upsert(
                [
                    {"id": "cat", "document": "a note about cats"},
                    {"id": "car", "document": "engines and wheels", "metadata": {"kind": "x"}},
                ]
            )
            == 2
        )
        assert vs.count() == 2
        hits = vs.query("cats", k=1)
        assert [h.id for h in hits] == ["cat"]
        assert [h.id for h in vs.query("wheels", k=5, where={"kind": "x"})] == ["car"]
        assert [r.id for r in vs.get(["car", "nope"])] == ["car"]
        assert vs.delete(["car"]) == 1 and vs.count() == 1
        assert vs.health().ok
        with pytest.raises(dmem.InvalidArgumentError):
            vs.query("a\x00b")
        assert vs.clear() == 1
    with pytest.raises(dmem.NotInitializedError):
        vs.count()


def test_memory_system(tmp_path: Path) -> None:
    with dmem.SyncMemorySystem(
        kv=f"sqlite:///{tmp_path / 'm.db'}", vector="memory://", embedder="hash"
    ) as memory:
        assert isinstance(memory.kv, dmem.SyncStore) and memory.kv is memory.kv
        memory.kv.set("user", {"name": "Ada"})
        assert memory.kv.get("user") == {"name": "Ada"}
        memory.vector.upsert([{"id": "n", "document": "note about cats"}])
        assert memory.vector.query("cats", k=1)[0].id == "n"
        reports = memory.health()
        assert reports["kv"].ok and reports["vector"].ok
    with pytest.raises(dmem.NotInitializedError):
        memory.kv.get("user")
    with dmem.open_sync(f"sqlite:///{tmp_path / 'm.db'}") as kv:
        assert kv.get("user") == {"name": "Ada"}
