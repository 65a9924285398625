"""The glob matcher: syntax, errors and literal prefixes (CONTRACT.md, "Patterns")."""

from __future__ import annotations

import fnmatch
import re
import sys
import time
from collections.abc import Callable

import dmem
import pytest
from dmem import InvalidPatternError, _pattern, compile_pattern
from dmem_conformance import strategies
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("*", "", True),
        ("*", "anything", True),
        ("user:*", "user:", True),
        ("user:*", "user:42", True),
        ("user:*", "users:42", False),
        ("?", "é", True),  # one code point, whatever its UTF-8 length
        ("?", "", False),
        ("?", "ab", False),
        ("a?c", "abc", True),
        ("[abc]", "b", True),
        ("[abc]", "d", False),
        ("[a-c]x", "cx", True),
        ("[^abc]", "d", True),
        ("[^abc]", "a", False),
        ("\\*", "*", True),
        ("\\*", "a", False),
        ("a\\?b", "a?b", True),
        ("a\\?b", "axb", False),
        ("[\\]]", "]", True),
        ("[a\\-z]", "-", True),
        ("[a\\-z]", "m", False),
        ("Key", "key", False),  # case-sensitive
        ("a*b*c", "aXbYc", True),
        ("a*b*c", "aXbY", False),
        ("line*", "line1\nline2", True),  # '*' crosses newlines
        ("[é-ë]", "ê", True),
    ],
)
def test_matching(pattern: str, key: str, expected: bool) -> None:
    assert compile_pattern(pattern).matches(key) is expected


@pytest.mark.parametrize("bad", ["[abc", "abc\\", "[]", "[^]", "[z-a]", "a[\\", "[a-\\"])
def test_malformed_patterns_raise(bad: str) -> None:
    with pytest.raises(InvalidPatternError):
        compile_pattern(bad)


@pytest.mark.parametrize(
    ("pattern", "prefix", "exact"),
    [
        ("user:*", "user:", False),
        ("user:4?", "user:4", False),
        ("exact", "exact", True),
        ("a\\*b*", "a*b", False),
        ("*x", "", False),
        ("[ab]x", "", False),
    ],
)
def test_literal_prefix(pattern: str, prefix: str, exact: bool) -> None:
    compiled = compile_pattern(pattern)
    assert compiled.literal_prefix == prefix
    assert compiled.is_exact is exact


def test_non_str_pattern_is_rejected() -> None:
    with pytest.raises(InvalidPatternError):
        compile_pattern(b"*")  # type: ignore[arg-type]


_plain = st.text(alphabet="abc*?", max_size=6)


@given(_plain, st.text(alphabet="abcé", max_size=6))
def test_agrees_with_fnmatch_on_simple_globs(pattern: str, key: str) -> None:
    # Without classes or escapes, our glob means what fnmatchcase means.
    assert compile_pattern(pattern).matches(key) == fnmatch.fnmatchcase(key, pattern)


@given(st.text(max_size=8), st.text(max_size=8))
def test_every_match_starts_with_the_literal_prefix(pattern: str, key: str) -> None:
    try:
        compiled = compile_pattern(pattern)
    except InvalidPatternError:
        return
    if compiled.matches(key):
        assert key.startswith(compiled.literal_prefix)
        if compiled.is_exact:
            assert key == compiled.literal_prefix


# --- linear time, same meaning as before ----------------------------------------------------
# The translation dmem used until it was made linear: each '*' became '.*', so a failing
# key made the regex engine try every way of splitting it among the stars (exponential in
# their number). It stays here as the oracle for what patterns mean; keys and patterns
# are kept short enough for it to answer quickly.


def _backtracking_regex(source: str) -> re.Pattern[str]:
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch == "\\":
            out.append(re.escape(source[i + 1]))
            i += 2
        elif ch == "*":
            if not out or out[-1] != ".*":
                out.append(".*")
            i += 1
        elif ch == "?":
            out.append(".")
            i += 1
        elif ch == "[":
            regex, i = _pattern._translate_class(source, i)  # classes did not change
            out.append(regex)
        else:
            out.append(re.escape(ch))
            i += 1
    return re.compile("".join(out), re.DOTALL)


_GLOB_ALPHABET = "ab:é日*?[]^-\\\n"


@settings(max_examples=300)
@given(
    st.one_of(
        st.text(alphabet=_GLOB_ALPHABET, max_size=10),
        strategies.pattern_cases().map(lambda case: case[0]),
    ),
    st.lists(st.text(alphabet="ab:é日*?[]^-\\\n\U0001f600", max_size=12), max_size=6),
)
def test_linear_matcher_means_what_the_backtracking_one_meant(
    pattern: str, keys: list[str]
) -> None:
    try:
        compiled = compile_pattern(pattern)
    except InvalidPatternError:
        return
    oracle = _backtracking_regex(pattern)
    python310 = re.compile(_pattern._translate(pattern, atomic=False)[0], re.DOTALL)
    for key in keys:
        want = oracle.fullmatch(key) is not None
        assert compiled.matches(key) is want, (pattern, key)
        assert (compiled.fullmatch(key) is not None) is want, (pattern, key)
        assert (python310.fullmatch(key) is not None) is want, (pattern, key)


@given(strategies.pattern_cases())
def test_linear_matcher_on_keys_built_from_the_pattern(case: tuple[str, list[str]]) -> None:
    # Keys made to match, and their near misses: most draws above miss every key.
    pattern, keys = case
    compiled = compile_pattern(pattern)
    oracle = _backtracking_regex(pattern)
    python310 = re.compile(_pattern._translate(pattern, atomic=False)[0], re.DOTALL)
    for key in keys:
        want = oracle.fullmatch(key) is not None
        assert compiled.matches(key) is want, (pattern, key)
        assert (python310.fullmatch(key) is not None) is want, (pattern, key)


_HOSTILE = [
    "*a*a*a*a*a*a*a*b",
    "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b",
    "*aa*aa*aa*aa*aa*aa*aa*b",
    "*?a*?a*?a*?a*?a*?a*?a*b",
    "*[a]*[ab]*[^b]*a*a*a*a*a*a*b",
    "a*a*a*a*a*a*a*a*a*a*a*a*",
]


@pytest.mark.parametrize("pattern", _HOSTILE)
@pytest.mark.parametrize("atomic", [True, False], ids=["3.11+", "3.10"])
def test_hostile_patterns_take_under_a_millisecond(pattern: str, atomic: bool) -> None:
    # With one '.*' a star, the first of these took about 1 s on a 48-character key,
    # and 8 stars on 60 characters took 33 s.
    if atomic and sys.version_info < (3, 11):
        pytest.skip("atomic groups need Python 3.11")
    regex = re.compile(_pattern._translate(pattern, atomic=atomic)[0], re.DOTALL)
    for key in ("a" * 1024, "a" * 1023 + "c", ("ab" * 512)[:-1]):
        best = min(_seconds(regex.fullmatch, key) for _ in range(5))
        assert best < 0.001, (pattern, key[:8], best)


async def test_count_with_a_hostile_pattern_over_a_long_key_is_fast() -> None:
    # The issue's own figure, through the Store: count() over one 1,024-character key.
    async with dmem.open("memory://") as store:
        await store.set("a" * 1024, 1)
        await store.set("a" * 1023 + "b", 2)
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            found = await store.count("*a*a*a*a*a*a*a*b")
            best = min(best, time.perf_counter() - start)
        assert found == 1
        assert best < 0.001, best


def _seconds(fn: Callable[[str], object], arg: str) -> float:
    start = time.perf_counter()
    fn(arg)
    return time.perf_counter() - start


def test_patterns_are_checked_before_the_cache() -> None:
    # The cache hashes its argument: an unhashable one must still be a DmemError.
    with pytest.raises(InvalidPatternError):
        compile_pattern(["a"])  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["a*b", "x[1]?", "back\\slash", "]", "[^a-z]", "plain", "ü*?"])
def test_escape_pattern_matches_the_text_literally(text: str) -> None:
    escaped = dmem.escape_pattern(text)
    assert compile_pattern(escaped).matches(text)
    assert not compile_pattern(escaped).matches(text + "x")
    prefix = compile_pattern(escaped + "*")
    assert prefix.matches(text + "tail")
    assert not prefix.matches("Q" + text)


def test_escape_pattern_refuses_non_str() -> None:
    with pytest.raises(dmem.InvalidPatternError):
        dmem.escape_pattern(b"x")  # type: ignore[arg-type]
