"""Namespace tuples and item keys as dmem keys, and back, without collisions.

An item ``(("users", "u1"), "prefs")`` is stored under the dmem key ``users/u1/prefs``:
every label is followed by ``/`` and the item key comes last. Each part is escaped first:
``%`` ``/`` ``#`` and lone surrogates become ``%XXXX`` (four hex digits of the code point),
so no part holds a separator and the mapping is one to one (``%`` is always escaped, so
decoding is unambiguous). ``#`` is escaped because vector record ids append ``#field``
to the item's key; lone surrogates because dmem keys refuse them.

A namespace prefix ``("users",)`` is then the key prefix ``users/``: it lists the items of
``("users",)`` and of every deeper namespace, never those of ``("users2",)``.
"""

from __future__ import annotations

import re

from dmem import escape_pattern

__all__ = [
    "decode_key",
    "encode_key",
    "encode_label",
    "encode_namespace",
    "prefix_pattern",
]

_SPECIAL = re.compile(r"[%/#\ud800-\udfff]")
_ESCAPED = re.compile(r"%([0-9A-F]{4})")


def _escape(match: re.Match[str]) -> str:
    return f"%{ord(match.group()):04X}"


def _unescape(match: re.Match[str]) -> str:
    return chr(int(match.group(1), 16))


def encode_label(label: str) -> str:
    """One namespace label (or item key), with the separators escaped."""
    if label.isascii() and "%" not in label and "/" not in label and "#" not in label:
        return label  # the common case, without a regex call
    return _SPECIAL.sub(_escape, label)


def encode_namespace(namespace: tuple[str, ...]) -> str:
    """The key prefix every item of ``namespace`` (and of its descendants) starts with."""
    return "".join(encode_label(label) + "/" for label in namespace)


def encode_key(namespace: tuple[str, ...], key: str) -> str:
    """The dmem key of item ``key`` in ``namespace``."""
    return encode_namespace(namespace) + encode_label(key)


def decode_key(stored: str) -> tuple[tuple[str, ...], str]:
    """The namespace and item key a dmem key made by :func:`encode_key` stands for."""
    *labels, key = stored.split("/")
    if "%" not in stored:  # the common case: nothing was escaped
        return tuple(labels), key
    return tuple(_ESCAPED.sub(_unescape, label) for label in labels), _ESCAPED.sub(_unescape, key)


def prefix_pattern(namespace: tuple[str, ...]) -> str:
    """A dmem glob pattern listing the items of ``namespace`` and of its descendants."""
    return escape_pattern(encode_namespace(namespace)) + "*"
