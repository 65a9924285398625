"""The glob matcher: syntax, errors and literal prefixes (CONTRACT.md, "Patterns")."""

from __future__ import annotations

import fnmatch

import pytest
from dmem import InvalidPatternError, compile_pattern
from hypothesis import given
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
        compile_pattern(b"*")


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
