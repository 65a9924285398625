"""Small helpers both SQL providers share: clock, key ranges, pattern shapes."""

from __future__ import annotations

import time
from collections.abc import Mapping

import orjson
from dmem import CorruptValueError, InvalidPatternError, Pattern, compile_pattern

__all__ = [
    "PURGE_BATCH",
    "SCHEMA_VERSION",
    "dump_tags",
    "expiry",
    "has_tag",
    "is_prefix_glob",
    "load_tags",
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


def dump_tags(tags: Mapping[str, str]) -> str | None:
    """The ``tags`` column: a JSON object, or NULL for no tags."""
    return orjson.dumps(dict(tags)).decode() if tags else None


def load_tags(text: str | None) -> dict[str, str]:
    if text is None:
        return {}
    try:
        tags = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CorruptValueError(f"stored tags are not JSON: {exc}") from exc
    if not isinstance(tags, dict):
        raise CorruptValueError("stored tags are not a JSON object")
    return tags


def has_tag(text: str | None, name: str, value: str) -> bool:
    """Whether a row's own ``tags`` column holds ``name=value`` (the index is only a hint)."""
    return text is not None and load_tags(text).get(name) == value
