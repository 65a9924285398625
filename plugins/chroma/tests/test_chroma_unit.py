"""dmem-chroma specifics: URLs and options, secrets, filter translation, ephemeral mode."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import dmem
import pytest
from dmem import InvalidArgumentError, ProviderUnavailableError, VectorRecord
from dmem.vector import normalize_where
from dmem_chroma import ChromaKVProvider, ChromaVectorProvider, parse_config, translate_where


def test_urls() -> None:
    assert parse_config("chroma://", {}).mode == "ephemeral"
    persistent = parse_config("chroma:////var/lib/x", {"namespace": "n"})
    assert (persistent.mode, persistent.path, persistent.namespace) == (
        "persistent",
        "/var/lib/x",
        "n",
    )
    http = parse_config(
        "chroma+https://db.example:9000", {"tenant": "t", "database": "d", "timeout": "3"}
    )
    assert (http.mode, http.host, http.port, http.ssl, http.tenant, http.database) == (
        "http",
        "db.example",
        9000,
        True,
        "t",
        "d",
    )
    assert http.timeout == 3.0
    assert parse_config("chroma+http://h", {}).port == 8000


@pytest.mark.parametrize(
    ("url", "path", "where"),
    [
        # Three slashes: relative to the working directory; four: absolute (like sqlite://).
        ("chroma:///data/chroma", "data/chroma", "chroma:///data/chroma"),
        ("chroma:///x", "x", "chroma:///x"),
        ("chroma:////srv/chroma", "/srv/chroma", "chroma:////srv/chroma"),
        ("chroma:///a%20b/c", "a b/c", "chroma:///a b/c"),
        ("chroma:///data/", "data", "chroma:///data"),
    ],
)
def test_persistent_paths(url: str, path: str, where: str) -> None:
    config = parse_config(url, {})
    assert (config.mode, config.path, config.where) == ("persistent", path, where)


def test_home_directory_is_expanded() -> None:
    home = str(Path("~").expanduser())
    assert parse_config("chroma:///~/chroma", {}).path == f"{home}/chroma"
    assert parse_config("chroma:///~", {}).path == home


@pytest.mark.parametrize("rest", ["/rel.d", "/a/b", "//abs/dir", "/~/x", "/%7E/x", "/a%2Fb"])
def test_paths_read_exactly_like_sqlite(rest: str) -> None:
    from dmem_sqlite._config import parse_sqlite

    sqlite_path = parse_sqlite(f"sqlite://{rest}", {}).path
    assert sqlite_path is not None
    assert parse_config(f"chroma://{rest}", {}).path == str(sqlite_path)


@pytest.mark.parametrize("url", ["chroma://", "chroma:///"])
def test_no_path_is_ephemeral(url: str) -> None:
    assert parse_config(url, {}).mode == "ephemeral"


async def test_relative_path_is_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with dmem.open("chroma:///rel/store", namespace="relative") as kv:
        await kv.set("k", 1)
        assert await kv.get("k") == 1
    assert (tmp_path / "rel" / "store").is_dir()


@pytest.mark.parametrize("namespace", ["a\ud800", "\udfff", "a\x00b", 1])
def test_bad_namespace(namespace: object) -> None:
    with pytest.raises(InvalidArgumentError, match="namespace"):
        parse_config("chroma://", {"namespace": namespace})


def test_unparseable_url_does_not_echo_user_info() -> None:
    # urlsplit's own error quotes the whole netloc.
    with pytest.raises(InvalidArgumentError) as info:
        parse_config("chroma+http://u:s3cr3t\uff03@h:8000", {})
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("chroma://host:1", {}),
        ("chroma://host/dir", {}),
        ("chroma+http://", {}),
        ("chroma://", {"bogus": 1}),
        ("chroma://", {"timeout": "0"}),
        ("chroma://", {"collection": "-bad"}),
        ("chroma://", {"collection": "a b"}),
        ("chroma://", {"token": "secret-token"}),
    ],
)
def test_bad_urls_and_options(url: str, options: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_config(url, dict(options))


@pytest.mark.parametrize(
    "value", ["abc", "", "1.5", 1.5, "-1", "0", "4194303", 4194303, True, "5 MiB", [5242880]]
)
@pytest.mark.parametrize("url", ["chroma://", "chroma:///data", "chroma+http://h:8000"])
def test_bad_max_value_bytes(url: str, value: object) -> None:
    # An int of at least 4 MiB (the contract's promise on every backend).
    with pytest.raises(InvalidArgumentError, match="max_value_bytes"):
        parse_config(url, {"max_value_bytes": value})


def test_max_value_bytes_option() -> None:
    assert parse_config("chroma://", {}).max_value_bytes is None  # no limit of Chroma's own
    assert parse_config("chroma://", {"max_value_bytes": "5242880"}).max_value_bytes == 5242880
    provider = dmem.create_provider("chroma://?max_value_bytes=4194304", {})
    assert provider.max_value_bytes == 4194304
    assert provider.atomic_batches is False  # batches go to Chroma in chunks
    # A key-value option: a vector store has no encoded values to limit.
    with pytest.raises(InvalidArgumentError, match="max_value_bytes"):
        dmem.create_provider("chroma://?max_value_bytes=4194304", {}, kind="vector")


async def test_values_over_the_limit_are_refused_before_any_call() -> None:
    limit = 4 * 1024 * 1024
    async with dmem.open("chroma://", namespace="unit-limit", max_value_bytes=limit) as kv:
        big = b"x" * limit  # encoded: 2 marker bytes more
        with pytest.raises(dmem.InvalidValueError, match="max_value_bytes"):
            await kv.set("big", big)
        batch = {f"k{i}": i for i in range(600)}  # three chunks, the big value in the last
        batch["big"] = big
        for if_not_exists in (False, True):
            with pytest.raises(dmem.InvalidValueError):
                await kv.set_many(batch, if_not_exists=if_not_exists)
        assert await kv.count() == 0  # checked before the first chunk went out
        edge = b"y" * (limit - 2)  # encoded: exactly the limit
        assert await kv.set("edge", edge) and await kv.get("edge") == edge


async def test_footprint_returns_to_the_live_records() -> None:
    """What storage.bounded is for (its own growth check presumes a churn faster than this
    backend's writes, see test_chroma_conformance.py): expired records, tags included (they
    are fields of the key's record), leave the collection on the writes that follow."""
    async with dmem.open("chroma://", namespace="unit-footprint") as kv:
        footprint = kv.provider.footprint  # type: ignore[attr-defined]
        assert await footprint() == 0
        await kv.set_many({f"keep{i}": i for i in range(3)}, tags={"t": "keep"})
        await kv.set("refresh", 0, ttl=3600, tags={"t": "keep"})
        assert await footprint() == 4
        await kv.set_many({f"c{i}": i for i in range(300)}, ttl=0.05, tags={"t": "keep"})
        assert await footprint() == 304  # expired or not, until purged
        await asyncio.sleep(0.1)
        assert await footprint() == 304 and await kv.count() == 4
        deadline = time.monotonic() + 5.0
        tick = 0
        while await footprint() > 4:
            assert time.monotonic() < deadline, f"{await footprint()} records, 4 live"
            tick += 1
            await kv.set("refresh", tick, ttl=3600, tags={"t": "keep"})
            await asyncio.sleep(0.05)
        assert sorted(await kv.find_by_tag("t", "keep")) == ["keep0", "keep1", "keep2", "refresh"]
        assert await kv.clear() == 4 and await footprint() == 0


def test_collection_names_are_valid_for_any_namespace() -> None:
    names = {
        parse_config("chroma://", {"namespace": ns}).collection_name("kv")
        for ns in ("", "a", "ab", "a/b", "é", "x" * 1000)
    }
    assert len(names) == 6
    assert all(n.startswith("dmem-kv-") and n.replace("-", "").isalnum() for n in names)


async def test_token_never_shows(chroma_down_url: str) -> None:
    token = "s3cr3t-chroma-token"
    store = dmem.Store(
        ChromaKVProvider(parse_config(chroma_down_url, {"token": token, "timeout": 2.0})),
        url=f"{chroma_down_url}?token={token}",
    )
    shown = [repr(store), repr(store.provider), repr(store.provider.config)]  # type: ignore[attr-defined]
    with pytest.raises(ProviderUnavailableError) as info:
        await store.initialize()
    shown += [str(info.value), repr(info.value)]
    shown.append(repr(await store.health()))
    assert not [s for s in shown if token in s]


async def test_unreachable_server_fails_fast(chroma_down_url: str) -> None:
    start = time.monotonic()
    with pytest.raises(ProviderUnavailableError):
        await dmem.open_vector(chroma_down_url, timeout=2.0)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize(
    ("where", "chroma"),
    [
        ({"a": 1}, {"m:a": {"$eq": 1}}),
        (
            {"a": {"$in": [1, "x", 2]}},
            {"$or": [{"m:a": {"$in": [1, 2]}}, {"m:a": {"$in": ["x"]}}]},
        ),
        (
            {"a": {"$nin": [True, 1.5]}},
            {"$and": [{"m:a": {"$nin": [True]}}, {"m:a": {"$nin": [1.5]}}]},
        ),
        (
            {"$or": [{"a": 1}, {"b": {"$gt": 2}}]},
            {"$or": [{"m:a": {"$eq": 1}}, {"m:b": {"$gt": 2}}]},
        ),
    ],
)
def test_translate_where(where: dict[str, object], chroma: dict[str, object]) -> None:
    canonical = normalize_where(where)
    assert canonical is not None
    assert translate_where(canonical) == chroma


async def test_ephemeral_mode_kv_and_vectors() -> None:
    async with dmem.open("chroma://", namespace="unit-eph") as kv:
        assert await kv.set("k", {"v": 1}, tags={"t": "1"})
        assert await kv.find_by_tag("t", "1") == ["k"]
        assert await kv.clear() == 1
    async with dmem.open_vector("chroma://", namespace="unit-eph", embedder="hash") as vs:
        assert isinstance(vs.provider, ChromaVectorProvider) and not vs.exact
        await vs.upsert([VectorRecord("a", None, {"x": 1}, "hello there")])
        (hit,) = await vs.query("hello there", k=1)
        assert hit.id == "a" and hit.score == pytest.approx(1.0, abs=1e-4)
        assert await vs.clear() == 1


async def test_event_loop_stays_free(tmp_path: object) -> None:
    """Chroma's client is synchronous: calls run in worker threads, in chunks, so the
    loop keeps ticking (one 2,000-record call would hold the GIL for ~0.7 s)."""
    async with dmem.open(f"chroma:///{tmp_path}", namespace="loop") as kv:
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.001)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        task = asyncio.create_task(ticker())
        await kv.set_many({f"k{i}": "x" * 1000 for i in range(2000)})
        task.cancel()
        assert len(gaps) >= 3
        assert max(gaps) < 0.4, f"the event loop stalled for {max(gaps):.3f} s"
        assert await kv.count() == 2000
        await kv.clear()


async def test_binary_and_text_values_stored_readably(tmp_path: object) -> None:
    """JSON text is stored as text (readable with Chroma tools), other bytes as base64."""
    import chromadb
    from chromadb.config import Settings

    async with dmem.open(f"chroma:///{tmp_path}", namespace="layout") as kv:
        await kv.set("json", {"a": "é"})
        await kv.set("raw", b"\xff\x00\x01")
        collection = parse_config("chroma://", {"namespace": "layout"}).collection_name("kv")
        client: Any = chromadb.PersistentClient(
            path=str(tmp_path), settings=Settings(anonymized_telemetry=False)
        )
        got = client.get_collection(collection).get(ids=["json", "raw"], include=["metadatas"])
        metas = dict(zip(got["ids"], got["metadatas"], strict=True))
        assert metas["json"]["v"] == '{"a":"é"}'
        # The core's encoding of bytes, exactly, in base64.
        assert base64.b64decode(metas["raw"]["b"]) == dmem.encode(b"\xff\x00\x01")
        assert await kv.get("raw") == b"\xff\x00\x01"
        client.close()


@pytest.mark.parametrize("mode", ["embedded", "server"])
async def test_collections_are_created_with_their_settings(
    mode: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """dmem's collections sync Chroma's log every 200 writes; vector collections score by cosine."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if mode == "server":
        url: str = request.getfixturevalue("chroma_server_url")
        host, port = url.removeprefix("chroma+http://").split(":")
        client: Any = chromadb.HttpClient(host=host, port=int(port), settings=settings)
    else:
        url = f"chroma:///{tmp_path}"
    namespace = f"settings-{mode}"
    async with (
        dmem.open(url, namespace=namespace) as kv,
        dmem.open_vector(url, namespace=namespace) as vectors,
    ):
        await kv.set("k", 1)
        await vectors.upsert([VectorRecord("r", (1.0, 0.0))])
        if mode == "embedded":
            client = chromadb.PersistentClient(path=str(tmp_path), settings=settings)
        config = parse_config("chroma://", {"namespace": namespace})
        kv_hnsw = client.get_collection(config.collection_name("kv")).configuration["hnsw"]
        vec_hnsw = client.get_collection(config.collection_name("vec")).configuration["hnsw"]
        assert kv_hnsw["sync_threshold"] == 200
        assert vec_hnsw["space"] == "cosine"
        assert vec_hnsw["sync_threshold"] == 200
        await kv.clear()
        await vectors.clear()
        client.close()


async def test_call_threads_time_out_and_keep_serving() -> None:
    """A call that outlives its timeout fails in time; the worker then serves the next call."""
    import threading

    from dmem_chroma._threads import CallThreads

    threads = CallThreads(1, "dmem-chroma-test")
    release = threading.Event()
    start = time.perf_counter()
    with pytest.raises(ProviderUnavailableError, match=r"did not answer within 0\.2 s"):
        await threads.call(release.wait, (5.0,), timeout=0.2, what="test server")
    assert time.perf_counter() - start < 1.0
    release.set()  # the hung job ends; its late result is dropped
    assert await threads.call(lambda a, b: a + b, (2, 3), timeout=2.0, what="test") == 5
    with pytest.raises(ZeroDivisionError):
        await threads.call(lambda: 1 / 0, (), timeout=2.0, what="test")
    # Many callers at once, on one worker: each gets its own answer.
    results = await asyncio.gather(
        *(threads.call(lambda i=i: i * i, (), timeout=2.0, what="test") for i in range(50))
    )
    assert results == [i * i for i in range(50)]


async def test_call_threads_watchdog_meets_every_deadline() -> None:
    """One watchdog timer per loop: a short timeout behind a long one still fails in time,
    timeouts one after another each fail in time, and finished calls leave nothing behind."""
    import threading

    from dmem_chroma._threads import _WATCHDOGS, CallThreads

    threads = CallThreads(2, "dmem-chroma-test-deadlines")
    release = threading.Event()
    slow = asyncio.ensure_future(threads.call(release.wait, (30.0,), timeout=20.0, what="slow"))
    await asyncio.sleep(0.05)  # the slow call's sweep is now scheduled 20 s ahead
    for _ in range(2):
        start = time.perf_counter()
        with pytest.raises(ProviderUnavailableError, match=r"short did not answer within 0\.2 s"):
            await threads.call(release.wait, (30.0,), timeout=0.2, what="short")
        assert 0.15 < time.perf_counter() - start < 1.0
    # Two at once: the sweep that fails the first must schedule the next for the second.
    start = time.perf_counter()
    first, second = await asyncio.gather(
        threads.call(release.wait, (30.0,), timeout=0.2, what="first"),
        threads.call(release.wait, (30.0,), timeout=0.5, what="second"),
        return_exceptions=True,
    )
    assert isinstance(first, ProviderUnavailableError)
    assert isinstance(second, ProviderUnavailableError)
    assert 0.45 < time.perf_counter() - start < 1.5
    assert not slow.done()
    release.set()
    assert await slow is True  # Event.wait's result: it finished inside its own deadline
    assert await threads.call(lambda: 7, (), timeout=0.5, what="test") == 7
    assert not _WATCHDOGS[asyncio.get_running_loop()]._pending


async def test_call_threads_grow_only_when_every_worker_is_busy() -> None:
    """One caller calling again as soon as it has its answer keeps one worker busy, not more."""
    import threading

    from dmem_chroma._threads import CallThreads

    threads = CallThreads(8, "dmem-chroma-test-growth")
    for i in range(2000):
        assert await threads.call(lambda i=i: i, (), timeout=2.0, what="test") == i
    assert len(threads._threads) == 1
    # Callers at once do start more workers, up to the size.
    release = threading.Event()
    waits = [threads.call(release.wait, (5.0,), timeout=3.0, what="test") for _ in range(12)]
    pending = asyncio.gather(*waits)
    await asyncio.sleep(0.1)
    assert len(threads._threads) == 8
    release.set()
    assert await pending == [True] * 12
    # A call right behind a long one, on one free worker, gets a second worker at once
    # rather than waiting behind the long call (five fresh pools: the race is timing).
    for round_ in range(5):
        pair = CallThreads(2, f"dmem-chroma-test-pair-{round_}")
        assert await pair.call(lambda: 0, (), timeout=2.0, what="test") == 0
        release.clear()
        long = asyncio.ensure_future(pair.call(release.wait, (5.0,), timeout=4.0, what="t"))
        await asyncio.sleep(0)  # the long call is queued
        start = time.perf_counter()
        assert await pair.call(lambda: 1, (), timeout=3.0, what="test") == 1
        assert time.perf_counter() - start < 1.0
        release.set()
        assert await long is True


def test_call_threads_serve_one_loop_after_another() -> None:
    """Each loop gets its own inbox; a job that outlives its loop does not stop the worker."""
    import gc
    import sys
    import threading

    from dmem.threads import _EventfdInbox, loop_inbox
    from dmem_chroma._threads import CallThreads

    threads = CallThreads(1, "dmem-chroma-test-loops")

    async def one(i: int) -> int:
        if sys.platform == "linux":  # the eventfd inbox, not call_soon_threadsafe
            assert isinstance(loop_inbox(asyncio.get_running_loop()), _EventfdInbox)
        return await threads.call(lambda: i * 10, (), timeout=2.0, what="test")

    assert [asyncio.run(one(i)) for i in range(3)] == [0, 10, 20]

    release = threading.Event()

    async def abandon() -> None:
        with pytest.raises(ProviderUnavailableError):
            await threads.call(release.wait, (5.0,), timeout=0.1, what="test")

    asyncio.run(abandon())  # its loop closes with the job still running
    gc.collect()  # the closed loop may go; the running job keeps its inbox alive
    release.set()
    assert asyncio.run(one(7)) == 70


async def test_a_tag_field_left_by_another_writer_is_never_a_hit(tmp_path: Path) -> None:
    """A set does not read the old record: a t: field it could not clear must not count."""
    url = f"chroma:///{tmp_path}"
    async with dmem.open(url, namespace="tags") as first:
        await first.set("k", 1, tags={"team": "a", "role": "x"})
        # A second store, like another process: it has never seen the tag name "team".
        async with dmem.open(url, namespace="tags") as second:
            await second.set("k", 2, tags={"role": "y"})
            for store in (first, second):
                assert await store.get_tags("k") == {"role": "y"}
                assert await store.find_by_tag("team", "a") == []
                assert await store.find_by_tag("role", "x") == []
                assert await store.find_by_tag("role", "y") == ["k"]
            await second.set("k", 3)  # untagged: no tags at all
            assert await first.get_tags("k") == {}
            assert await first.find_by_tag("role", "y") == []


class _PublicOnly:
    """A real collection seen without its client's bindings (as the HTTP client is)."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection

    def get(self, **kwargs: Any) -> Any:
        return self._collection.get(**kwargs)

    def query(self, **kwargs: Any) -> Any:
        return self._collection.query(**kwargs)


class _BindingsOfAnotherVersion:
    """A real collection whose bindings' ``get`` takes other arguments than dmem expects."""

    class _Bindings:
        def get(self, collection_id: str) -> None:
            raise AssertionError("not reached: the signature does not match")

        def query(self, collection_id: str) -> None:
            raise AssertionError("not reached: the signature does not match")

    class _Client:
        def __init__(self) -> None:
            self.bindings = _BindingsOfAnotherVersion._Bindings()

    def __init__(self, collection: Any) -> None:
        self._collection = collection
        self._client = self._Client()
        self.id, self.tenant, self.database = collection.id, collection.tenant, collection.database

    def get(self, **kwargs: Any) -> Any:
        return self._collection.get(**kwargs)

    def query(self, **kwargs: Any) -> Any:
        return self._collection.query(**kwargs)


def test_metadata_reader_direct_and_public_agree(tmp_path: Path) -> None:
    import chromadb
    from chromadb.config import Settings
    from dmem_chroma._client import _metadata_reader

    client: Any = chromadb.PersistentClient(
        path=str(tmp_path), settings=Settings(anonymized_telemetry=False)
    )
    try:
        collection = client.get_or_create_collection("readers", embedding_function=None)
        metas: list[Any] = [
            {"v": "1", "x": 2**62},
            {"b": "AAE=", "x": 5, "T": "{}"},
            {"v": "é", "t:a:b": "c:d", "x": 2**62},
        ]
        collection.upsert(ids=["a", "b", "c"], embeddings=[[0.0]] * 3, metadatas=metas)
        direct = _metadata_reader(collection)
        public = _metadata_reader(_PublicOnly(collection))
        mismatched = _metadata_reader(_BindingsOfAnotherVersion(collection))
        # This chromadb's embedded client takes the direct path; the others fall back.
        assert direct.__name__ == "direct"
        assert public.__name__ == mismatched.__name__ == "public"
        for ids in (["a"], ["zz"], ["c", "zz", "a", "b"]):
            expected = collection.get(ids=ids, include=["metadatas"])
            expected_rows = sorted(zip(expected["ids"], expected["metadatas"], strict=True))
            for read in (direct, public, mismatched):
                found, found_metas = read(ids)
                assert sorted(zip(found, found_metas, strict=True)) == expected_rows
    finally:
        client.close()


def test_query_runner_direct_and_public_agree(tmp_path: Path) -> None:
    import chromadb
    from chromadb.config import Settings
    from dmem_chroma._client import _query_runner

    client: Any = chromadb.PersistentClient(
        path=str(tmp_path), settings=Settings(anonymized_telemetry=False)
    )
    try:
        collection = client.get_or_create_collection(
            "queries", embedding_function=None, metadata={"hnsw:space": "cosine"}
        )
        direct = _query_runner(collection)
        public = _query_runner(_PublicOnly(collection))
        mismatched = _query_runner(_BindingsOfAnotherVersion(collection))
        # This chromadb's embedded client takes the direct path; the others fall back.
        assert direct.__name__ == "direct"
        assert public.__name__ == mismatched.__name__ == "public"
        assert direct([1.0, 0.0, 0.0], 3, None) == ([], [], [], [])  # empty collection
        collection.upsert(
            ids=["a", "b", "c"],
            embeddings=[[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]],
            metadatas=[{"m:n": 1, "d": True}, {"m:n": 2, "d": False}, {"m:n": 3, "d": True}],
            documents=["first", "", "third"],
        )
        for vector, k, where in (
            ([1.0, 0.1, 0.0], 2, None),
            ([0.0, 0.2, 1.0], 10, None),
            ([1.0, 0.0, 0.0], 3, {"m:n": {"$gte": 2}}),
            ([1.0, 0.0, 0.0], 3, {"$or": [{"m:n": {"$eq": 1}}, {"m:n": {"$eq": 3}}]}),
        ):
            found = [run(vector, k, where) for run in (direct, public, mismatched)]
            ids, metas, docs, distances = found[0]
            assert ids and len(ids) == len(metas) == len(docs) == len(distances) <= k
            for other in found[1:]:
                assert other[:3] == found[0][:3]
                assert other[3] == pytest.approx(distances, abs=1e-6)
        with pytest.raises(Exception, match="dimension"):
            direct([1.0, 0.0], 1, None)
    finally:
        client.close()
