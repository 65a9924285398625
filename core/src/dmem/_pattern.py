"""The one glob matcher of dmem.

Syntax (CONTRACT.md, "Patterns"): matched against the whole key, by Unicode
code point, case-sensitive. ``*`` any run (also empty), ``?`` exactly one
character, ``[abc]``, ``[a-z]``, ``[^abc]``, and ``\\`` escapes the next
character (inside classes too). A class closes at the first unescaped ``]``;
an unclosed ``[``, an empty class (``[]``, ``[^]``), a reversed range
(``[z-a]``) or a trailing ``\\`` is an :class:`InvalidPatternError`.

Providers push a wider filter down (``Pattern.literal_prefix`` as a key range
or Redis ``MATCH prefix*``) and then keep only keys for which
``Pattern.matches`` is true.
"""

from __future__ import annotations

import re
from functools import lru_cache

from .errors import InvalidPatternError

__all__ = ["Pattern", "compile_pattern"]


class Pattern:
    """A compiled glob pattern."""

    __slots__ = ("_regex", "is_exact", "literal_prefix", "matches_all", "source")

    source: str
    """The pattern as the user wrote it."""
    literal_prefix: str
    """Every matching key starts with this (escapes resolved); "" when none."""
    is_exact: bool
    """True when the pattern has no wildcard: it matches ``literal_prefix`` only."""
    matches_all: bool
    """True for ``*`` (and ``**``...): every key matches."""

    def __init__(self, source: str) -> None:
        self.source = source
        regex, prefix, exact = _translate(source)
        self.literal_prefix = prefix
        self.is_exact = exact
        self.matches_all = bool(source) and set(source) == {"*"}
        self._regex = re.compile(regex, re.DOTALL)

    def matches(self, key: str) -> bool:
        """True when ``key`` matches the whole pattern."""
        if self.matches_all:
            return True
        return self._regex.fullmatch(key) is not None

    def __repr__(self) -> str:
        return f"Pattern({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


@lru_cache(maxsize=512)
def compile_pattern(source: str) -> Pattern:
    """Validate and compile ``source``; raises :class:`InvalidPatternError`."""
    if not isinstance(source, str):
        raise InvalidPatternError(f"pattern must be a str, not {type(source).__name__}")
    return Pattern(source)


def _translate(source: str) -> tuple[str, str, bool]:
    """Return (regex, literal prefix, is_exact) for a glob."""
    out: list[str] = []
    prefix: list[str] = []
    in_prefix = True
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch == "\\":
            if i + 1 >= n:
                raise InvalidPatternError(f"pattern {source!r} ends with a lone backslash")
            lit = source[i + 1]
            out.append(re.escape(lit))
            if in_prefix:
                prefix.append(lit)
            i += 2
            continue
        if ch == "*":
            in_prefix = False
            # Collapse runs of '*' so the regex never backtracks on them.
            if not out or out[-1] != ".*":
                out.append(".*")
            i += 1
            continue
        if ch == "?":
            in_prefix = False
            out.append(".")
            i += 1
            continue
        if ch == "[":
            in_prefix = False
            regex, i = _translate_class(source, i)
            out.append(regex)
            continue
        out.append(re.escape(ch))
        if in_prefix:
            prefix.append(ch)
        i += 1
    return "".join(out), "".join(prefix), in_prefix


def _translate_class(source: str, start: int) -> tuple[str, int]:
    """Translate the class opening at ``source[start] == '['``; return (regex, next index)."""
    i = start + 1
    n = len(source)
    negate = i < n and source[i] == "^"
    if negate:
        i += 1
    items: list[str] = []
    while True:
        if i >= n:
            raise InvalidPatternError(f"pattern {source!r} has an unclosed '[' at {start}")
        ch = source[i]
        if ch == "]":
            i += 1
            break
        if ch == "\\":
            if i + 1 >= n:
                raise InvalidPatternError(f"pattern {source!r} ends with a lone backslash")
            ch = source[i + 1]
            i += 2
        else:
            i += 1
        # A range: lo '-' hi, where hi is not the closing ']'.
        if i + 1 < n and source[i] == "-" and source[i + 1] != "]":
            hi = source[i + 1]
            i += 2
            if hi == "\\":
                if i >= n:
                    raise InvalidPatternError(f"pattern {source!r} ends with a lone backslash")
                hi = source[i]
                i += 1
            if ord(hi) < ord(ch):
                raise InvalidPatternError(f"pattern {source!r} has a reversed range {ch}-{hi}")
            items.append(f"{_class_char(ch)}-{_class_char(hi)}")
        else:
            items.append(_class_char(ch))
    if not items:
        raise InvalidPatternError(f"pattern {source!r} has an empty character class at {start}")
    return ("[^" if negate else "[") + "".join(items) + "]", i


def _class_char(ch: str) -> str:
    # Inside a regex class only these are special.
    return "\\" + ch if ch in "\\]^-[" else ch
