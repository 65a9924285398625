"""The one glob matcher of dmem.

Syntax (docs/contract.md, "Patterns"): matched against the whole key, by Unicode
code point, case-sensitive. ``*`` any run (also empty), ``?`` exactly one
character, ``[abc]``, ``[a-z]``, ``[^abc]``, and ``\\`` escapes the next
character (inside classes too). A class closes at the first unescaped ``]``;
an unclosed ``[``, an empty class (``[]``, ``[^]``), a reversed range
(``[z-a]``) or a trailing ``\\`` is an :class:`InvalidPatternError`.

Providers push a wider filter down (``Pattern.literal_prefix`` as a key range
or Redis ``MATCH prefix*``) and then keep only keys for which
``Pattern.matches`` is true (or hand whole batches to ``Pattern.fullmatch``
through ``filter``, which keeps the loop in C).

Matching takes time linear in the key's length (times the pattern's), whatever
the pattern: patterns come from users, and the obvious translation (each ``*`` to
``.*``) backtracks exponentially: ``*a*a*a*a*a*a*a*b`` against 48 ``a`` took a
second. The stars split a pattern into segments of fixed length (each ``?``,
class or literal is one code point), and for those a classic result holds: if a
key matches at all, it matches with every segment between two stars placed at its
leftmost occurrence after the previous one. So the regex commits to that
occurrence and never revisits it: an atomic group ``(?>.*?SEG)`` (Python 3.11+),
or ``(?=(?P<s>.*?SEG))(?P=s)``, the same thing built from a lookahead (which Python never
re-enters) on 3.10; a one-character literal segment ``c`` is the cheaper
``[^c]*+c``. Only the last segment, anchored at the end, keeps a plain ``.*``
in front of it, which backtracks at most once over the key.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache

from .errors import InvalidPatternError

__all__ = ["Pattern", "compile_pattern", "escape_pattern"]

# Atomic groups and possessive quantifiers arrived in Python 3.11's re.
_ATOMIC = sys.version_info >= (3, 11)


class Pattern:
    """A compiled glob pattern."""

    __slots__ = ("_regex", "fullmatch", "is_exact", "literal_prefix", "matches_all", "source")

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
        self.fullmatch = self._regex.fullmatch
        """``fullmatch(key)``: a match object (truthy) when ``key`` matches, else None.

        The compiled regex's own method: ``filter(pattern.fullmatch, keys)`` tests a
        batch of keys without a Python call per key."""

    def matches(self, key: str) -> bool:
        """True when ``key`` matches the whole pattern."""
        if self.matches_all:
            return True
        return self.fullmatch(key) is not None

    def __repr__(self) -> str:
        return f"Pattern({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


_SPECIAL = re.compile(r"([*?\[\]\\])")


def escape_pattern(text: str) -> str:
    """A pattern that matches ``text`` and nothing else (``*?[]\\`` escaped with ``\\``).

    ``kv.keys(escape_pattern(prefix) + "*")`` lists the keys that start with ``prefix``,
    whatever characters it holds.
    """
    if not isinstance(text, str):
        raise InvalidPatternError("escape_pattern takes a str")
    return _SPECIAL.sub(r"\\\1", text)


@lru_cache(maxsize=512)
def _compile(source: str) -> Pattern:
    return Pattern(source)


def compile_pattern(source: str) -> Pattern:
    """Validate and compile ``source``; raises :class:`InvalidPatternError`."""
    # Checked before the cache, which would hash an unhashable argument first.
    if type(source) is not str:
        raise InvalidPatternError(f"pattern must be a str, not {type(source).__name__}")
    return _compile(source)


# One segment: the regex of each of its atoms (each matches exactly one code point),
# and the literal character when the atom is a plain one (None for '?' and classes).
_Atom = tuple[str, "str | None"]


def _translate(source: str, *, atomic: bool = _ATOMIC) -> tuple[str, str, bool]:
    """Return (regex, literal prefix, is_exact) for a glob.

    ``atomic=False`` builds the Python 3.10 form (the tests check both forms everywhere).
    """
    segments: list[list[_Atom]] = [[]]
    prefix: list[str] = []
    in_prefix = True
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch == "*":
            in_prefix = False
            if segments[-1] or len(segments) == 1:
                segments.append([])  # a run of stars is one star
            i += 1
            continue
        if ch == "\\":
            if i + 1 >= n:
                raise InvalidPatternError(f"pattern {source!r} ends with a lone backslash")
            lit = source[i + 1]
            segments[-1].append((re.escape(lit), lit))
            if in_prefix:
                prefix.append(lit)
            i += 2
            continue
        if ch == "?":
            in_prefix = False
            segments[-1].append((".", None))
            i += 1
            continue
        if ch == "[":
            in_prefix = False
            regex, i = _translate_class(source, i)
            segments[-1].append((regex, None))
            continue
        segments[-1].append((re.escape(ch), ch))
        if in_prefix:
            prefix.append(ch)
        i += 1
    return _assemble(segments, atomic), "".join(prefix), in_prefix


def _assemble(segments: list[list[_Atom]], atomic: bool) -> str:
    """The regex for star-separated segments (one segment: no star at all)."""
    head = "".join(regex for regex, _ in segments[0])
    if len(segments) == 1:
        return head
    out = [head]
    for number, segment in enumerate(segments[1:-1]):
        body = "".join(regex for regex, _ in segment)
        if len(segment) == 1 and segment[0][1] is not None:
            # A one-character literal: skip every other character, then take it.
            char = _class_char(segment[0][1])
            out.append(f"[^{char}]*+{body}" if atomic else f"[^{char}]*{body}")
        elif atomic:
            out.append(f"(?>.*?{body})")
        else:  # named, so a digit after the back-reference cannot extend its number
            out.append(f"(?=(?P<s{number}>.*?{body}))(?P=s{number})")
    out.append(".*" + "".join(regex for regex, _ in segments[-1]))
    return "".join(out)


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
