"""Suite tests: patterns, scan/keys/count, namespaces and clear."""

from __future__ import annotations

import tracemalloc
import unicodedata
from typing import ClassVar

import dmem
import pytest
from dmem import compile_pattern

from ._base import StorePool, SuiteBase
from ._marks import clause
from .strategies import pattern_cases

__all__ = ["ListingTests"]

_NFD_E = unicodedata.normalize("NFD", "é")  # two code points: e and a combining accent
_PAGED_KEYS = 2_500  # more than one page of every project backend's listing


async def _listing(store: dmem.Store, pattern: str) -> tuple[list[str], int, list[str]]:
    keys = await store.keys(pattern)
    count = await store.count(pattern)
    scanned = [key async for key, _ in store.scan(pattern)]
    return keys, count, scanned


async def _assert_lists_exactly(store: dmem.Store, pattern: str, expected: set[str]) -> None:
    keys, count, scanned = await _listing(store, pattern)
    assert len(keys) == len(set(keys)), f"keys({pattern!r}) returned duplicates: {keys}"
    assert set(keys) == expected, f"keys({pattern!r}) = {sorted(keys)}, want {sorted(expected)}"
    assert count == len(expected), f"count({pattern!r}) = {count}, want {len(expected)}"
    assert len(scanned) == len(set(scanned)), f"scan({pattern!r}) yielded duplicates"
    assert set(scanned) == expected, f"scan({pattern!r}) = {sorted(scanned)}"


class ListingTests(SuiteBase):
    _dmem_suite_class: ClassVar[bool] = True

    # --- patterns ---------------------------------------------------------------------------
    @clause(
        "patterns.match",
        given={"case": pattern_cases()},
        examples=[
            # '?' is exactly one code point (not zero, not two; é in NFD is two).
            {"case": ("a?", ["a", "ab", "abc", "aé", "a" + _NFD_E, "a\U0001f600"])},
            # '*' matches any run, ':' included; a class matches one code point.
            {"case": ("u*:[a-é]", ["u:a", "u:x:é", "u::", "u:ab", "v:a"])},
            # Escaped glob characters are literals.
            {"case": ("\\*\\?\\[", ["*?[", "x?[", "*?", "*?[x"])},
        ],
    )
    async def test_patterns_match_core_matcher(
        self, store: dmem.Store, case: tuple[str, list[str]]
    ) -> None:
        pattern, data = case
        if data:
            await store.set_many({key: index for index, key in enumerate(data)})
        matcher = compile_pattern(pattern)
        expected = {key for key in data if matcher.matches(key)}
        await _assert_lists_exactly(store, pattern, expected)

    @clause("patterns.unicode")
    async def test_question_mark_is_one_code_point(self, store: dmem.Store) -> None:
        nfc = "é"
        nfd = unicodedata.normalize("NFD", nfc)
        data = ["a", "ab", "abc", nfc, nfd, "日", "日本", "\U0001f600", "x" + nfc]
        await store.set_many({key: key for key in data})
        await _assert_lists_exactly(store, "?", {"a", nfc, "日", "\U0001f600"})
        await _assert_lists_exactly(store, "??", {"ab", nfd, "日本", "x" + nfc})
        await _assert_lists_exactly(store, "x?", {"x" + nfc})
        await _assert_lists_exactly(store, nfc, {nfc})
        await _assert_lists_exactly(store, "[é]", {nfc})
        await _assert_lists_exactly(store, "*é", {nfc, "x" + nfc})
        await _assert_lists_exactly(store, "A*", set())

    @clause("patterns.escapes")
    async def test_classes_and_escapes(self, store: dmem.Store) -> None:
        data = ["a*", "ab", "a?", "a[b]", "a\\b", "b:1", "b:2", "b:10", "c", "-", "]", "^"]
        await store.set_many({key: 1 for key in data})
        cases = {
            "a\\*": {"a*"},
            "a*": {"a*", "ab", "a?", "a[b]", "a\\b"},
            "a\\?": {"a?"},
            "a?": {"a*", "ab", "a?"},
            "a\\[b\\]": {"a[b]"},
            "a\\\\b": {"a\\b"},
            "b:[0-9]": {"b:1", "b:2"},
            "b:[^1]": {"b:2"},
            "b:1*": {"b:1", "b:10"},
            "[abc]": {"c"},
            "[\\-]": {"-"},
            "[\\]]": {"]"},
            "[\\^]": {"^"},
            "*": set(data),
            "**": set(data),
            "b:*0": {"b:10"},
            "B*": set(),
        }
        for pattern, expected in cases.items():
            matcher = compile_pattern(pattern)
            assert {k for k in data if matcher.matches(k)} == expected, pattern  # the oracle
            await _assert_lists_exactly(store, pattern, expected)

    # --- scan -------------------------------------------------------------------------------
    @clause("scan.once")
    async def test_scan_yields_each_key_once(self, store: dmem.Store) -> None:
        data = {f"key:{i:04d}": i for i in range(600)}
        await store.set_many(data, tags={"t": "x"})
        await store.set("volatile", 1, ttl=100)
        seen: dict[str, int] = {}
        async for key, value in store.scan():
            assert key not in seen, f"scan yielded {key!r} twice"
            seen[key] = value
        assert seen == {**data, "volatile": 1}
        await _assert_lists_exactly(store, "key:*", set(data))
        await _assert_lists_exactly(store, "key:00??", {f"key:{i:04d}" for i in range(100)})
        # Writes during a scan: every key unchanged for the whole scan still comes once.
        stable = {f"key:{i:04d}" for i in range(300)}
        seen_keys: list[str] = []
        index = 0
        async for key, _ in store.scan("key:*"):
            seen_keys.append(key)
            if index % 10 == 0:
                await store.set(f"key:new{index}", index)
                await store.delete(f"key:{599 - index // 10:04d}")
            index += 1
        assert len(seen_keys) == len(set(seen_keys)), "scan yielded a key twice"
        missing = stable - set(seen_keys)
        assert not missing, f"scan missed {len(missing)} keys unchanged for the whole scan"

    @clause("listing.pages")
    async def test_listing_beyond_one_page(self, store: dmem.Store) -> None:
        # More keys than any backend's page (SQL pages of 512 rows, Redis SCAN counts,
        # Chroma's batches): a pager that drops or repeats keys at a page boundary, or a
        # count that stops at one page, shows here and not with a few hundred keys.
        pages = {f"page:{i:05d}": i for i in range(_PAGED_KEYS)}
        others = {f"other:{i}": i for i in range(50)}
        await store.set_many(pages, tags={"listing": "pages"})
        await store.set_many(others)
        await _assert_lists_exactly(store, "page:*", set(pages))
        await _assert_lists_exactly(store, "*", set(pages) | set(others))
        found = await store.find_by_tag("listing", "pages")
        assert len(found) == len(set(found)), "find_by_tag returned duplicates"
        assert set(found) == set(pages), f"find_by_tag found {len(found)} of {len(pages)}"
        gone = list(pages)[::2]
        assert await store.delete_many(gone) == len(gone)
        await _assert_lists_exactly(store, "page:*", set(pages) - set(gone))
        assert await store.clear() == len(pages) - len(gone) + len(others)
        await _assert_lists_exactly(store, "*", set())

    @clause("scan.memory")
    async def test_scan_streams(self, store: dmem.Store) -> None:
        count, size = 500, 4096
        payload = "x" * size
        await store.set_many({f"k{i:04d}": f"{i:04d}{payload}" for i in range(count)})
        total = count * size
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            seen = 0
            async for _ in store.scan():
                seen += 1
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert seen == count
        used = peak - base
        assert used < total // 2, (
            f"scan held {used} bytes at its peak for {total} bytes of values: it does not stream"
        )

    @clause("scan.early-exit")
    async def test_scan_early_exit(self, store: dmem.Store) -> None:
        await store.set_many({f"k{i}": i for i in range(50)})
        for _ in range(3):
            iterator = store.scan()
            async for _key, _value in iterator:
                break
            await iterator.aclose()  # type: ignore[attr-defined]
        assert await store.count() == 50
        assert await store.set("after", 1)
        assert await store.get("after") == 1

    # --- namespaces -------------------------------------------------------------------------
    @clause("namespaces.isolation", requires="shared_connections")
    async def test_namespaces_isolated(self, store: dmem.Store, dmem_stores: StorePool) -> None:
        other = await dmem_stores.open("-other")
        same = await dmem_stores.open()
        await store.set("shared", "mine", tags={"t": "x"})
        assert await same.get("shared") == "mine", (
            "two stores on one namespace do not share data; declare "
            "lacks={'shared_connections': why} or fix it"
        )
        await store.set_many({"a": 1, "b": 2}, tags={"t": "x"})
        await other.set("shared", "theirs", tags={"t": "x"})
        await other.set("only-other", 1)
        assert await store.get("shared") == "mine"
        assert await other.get("shared") == "theirs"
        assert await store.get("only-other") is None
        assert sorted(await store.keys()) == ["a", "b", "shared"]
        assert await other.count() == 2
        assert await other.find_by_tag("t", "x") == ["shared"], "tags crossed namespaces"
        assert await store.delete("only-other") is False
        assert await store.clear() == 3
        assert await other.count() == 2, "clear() crossed into another namespace"
        assert await other.get_tags("shared") == {"t": "x"}

    @clause("namespaces.rule")
    async def test_namespace_rule(self, dmem_stores: StorePool) -> None:
        room = dmem.MAX_NAMESPACE_BYTES - len(dmem_stores.namespace.encode())
        for bad in ("\x00", "a\x00b", "x\ud800", "\udfff", "n" * (room + 1)):
            with pytest.raises(dmem.InvalidArgumentError):
                await dmem_stores.open(bad)
        # Everything else is a namespace on every backend, each its own.
        odd = [":", "*?[]\\", "/é ü", "\U0001f600", "\t\n", "n" * room]
        stores = [await dmem_stores.open(suffix) for suffix in odd]
        for n, opened in enumerate(stores):
            await opened.set("k", n, tags={"n": str(n)})
        for n, opened in enumerate(stores):
            assert await opened.get("k") == n, f"namespace {opened.namespace!r} lost its key"
            assert await opened.find_by_tag("n", str(n)) == ["k"]
            assert await opened.count() == 1

    @clause("namespaces.prefix", requires="shared_connections")
    async def test_namespace_prefixes_do_not_leak(self, dmem_stores: StorePool) -> None:
        short = await dmem_stores.open("-a")
        longer = await dmem_stores.open("-ab")
        await short.set("b:k", "short", tags={"t": "x"})
        await short.set("x", "short")
        await longer.set("k", "long", tags={"t": "x"})
        await longer.set(":k", "long")
        assert sorted(await short.keys()) == ["b:k", "x"], "a namespace lists a longer one's keys"
        assert sorted(await longer.keys()) == [":k", "k"]
        assert await short.count("*") == 2
        assert await short.keys("*k") == ["b:k"]
        assert await short.find_by_tag("t", "x") == ["b:k"]
        assert await longer.find_by_tag("t", "x") == ["k"]
        assert [k async for k, _ in short.scan()] != [] and sorted(
            [k async for k, _ in short.scan()]
        ) == ["b:k", "x"]
        assert await short.clear() == 2
        assert sorted(await longer.keys()) == [":k", "k"], "clear() of 'a' removed 'ab' keys"
        # Separator look-alikes: namespace N + key "x:k" versus namespace "N:x" + key "k".
        try:
            colon = await dmem_stores.open("-a:x")
        except dmem.InvalidArgumentError:
            return  # the backend rejects ':' in namespaces outright, which is fine
        await short.set("x:k", "plain")
        await colon.set("k", "colon")
        assert await short.get("x:k") == "plain", "namespaces with ':' collide with keys"
        assert await colon.keys() == ["k"]
        assert await short.keys() == ["x:k"]

    @clause("namespaces.bookkeeping")
    async def test_bookkeeping_never_listed(self, store: dmem.Store) -> None:
        await store.set("plain", 1)
        await store.set("tagged", 2, tags={"a": "1", "b": "2"})
        await store.set("ttl", 3, ttl=100, tags={"a": "1"})
        await store.set_many({"m1": 1, "m2": 2}, tags={"c": "3"}, ttl=200)
        await store.expire("plain", 300)
        await store.persist("plain")
        await store.delete("m2")
        expected = {"plain", "tagged", "ttl", "m1"}
        await _assert_lists_exactly(store, "*", expected)
        health = await store.health()
        assert health is not None
        assert await store.clear() == len(expected), "clear counted bookkeeping entries"
        await _assert_lists_exactly(store, "*", set())

    @clause("clear.namespace")
    async def test_clear(self, store: dmem.Store) -> None:
        assert await store.clear() == 0
        await store.set_many({f"k{i}": i for i in range(10)}, tags={"t": "x"})
        await store.set("ttl", 1, ttl=100)
        assert await store.clear() == 11
        assert await store.count() == 0
        assert await store.keys() == []
        assert await store.find_by_tag("t", "x") == []
        assert await store.get("k1") is None
        assert await store.clear() == 0
        assert await store.set("k1", "again")
        assert await store.get("k1") == "again"
