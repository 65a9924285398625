"""Small helpers both SQL providers share: clock, key ranges, pattern shapes."""

from __future__ import annotations

import time

from dmem import InvalidPatternError, Pattern, compile_pattern

__all__ = [
    "PURGE_BATCH",
    "SCHEMA_VERSION",
    "expiry",
    "is_prefix_glob",
    "now_ms",
    "upper_bound",
]

SCHEMA_VERSION = 1
"""Version of the tables this code writes; stored in ``<table>_meta`` for later migrations."""

PURGE_BATCH = 1000
"""Expired rows removed per purge pass, so one pass never holds the write lock for long."""


def now_ms() -> int:
    """Wall-clock milliseconds: expiry must mean the same instant in every process."""
    return time.time_ns() // 1_000_000


def expiry(ttl_ms: int | None, now: int) -> int | None:
    return None if ttl_ms is None else now + ttl_ms


def upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``.

    Keys compare by code point (SQLite BINARY and PostgreSQL ``COLLATE "C"`` compare
    UTF-8 bytes, which orders like code points), so ``prefix <= key < upper_bound``
    selects exactly the keys with that prefix. None: no upper bound (empty prefix, or
    a prefix made only of U+10FFFF).
    """
    chars = list(prefix)
    while chars:
        code = ord(chars[-1])
        if code < 0x10FFFF:
            code += 1
            if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be stored; skip past them
                code = 0xE000
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


def is_prefix_glob(pattern: Pattern) -> bool:
    """True when ``pattern`` is a literal prefix followed by ``*`` only (``user:*``, ``*``).

    Then the key range alone answers it, and ``count`` needs no keys in Python.
    """
    if pattern.is_exact:
        return False
    if pattern.matches_all:
        return True
    source = pattern.source
    stem = source.rstrip("*")
    if stem == source:
        return False
    try:
        head = compile_pattern(stem)
    except InvalidPatternError:  # the last '*' was escaped ("a\*"): a literal star
        return False
    return head.is_exact and head.literal_prefix == pattern.literal_prefix
