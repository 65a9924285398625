"""Checks on keys, ttls and tags, run by the store before any I/O.

Values are checked by the codec (``_codec.encode``), which walks them once.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import InvalidArgumentError, InvalidKeyError

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_NAMESPACE_BYTES",
    "MAX_TAGS",
    "MAX_TTL_SECONDS",
    "check_key",
    "check_namespace",
    "check_tag",
    "check_tags",
    "iterate",
    "short_repr",
    "ttl_to_ms",
]

MAX_KEY_BYTES = 1024
MAX_NAMESPACE_BYTES = 1024
MAX_TAGS = 64
MAX_TTL_SECONDS = 10 * 365.25 * 24 * 3600  # ten years


def check_key(key: object) -> None:
    """Raise :class:`InvalidKeyError` unless ``key`` is a valid key (CONTRACT.md, "Keys")."""
    # Fast path, one expression: short ASCII keys without NUL are the norm (every key of
    # every call passes here); anything else gets the full check and its precise message.
    if type(key) is str and key.isascii() and 0 < len(key) <= MAX_KEY_BYTES and "\x00" not in key:
        return
    problem = _str_problem(key)
    if problem is not None:
        raise InvalidKeyError(f"invalid key {short_repr(key)}: {problem}")


def check_namespace(namespace: object, where: str = "namespace") -> str:
    """The namespace, or :class:`InvalidArgumentError`: the one rule every backend applies.

    Any str (``""`` included) without NUL or lone surrogates, at most
    ``MAX_NAMESPACE_BYTES`` in UTF-8: it goes into SQL text columns and index entries,
    Redis key names and Chroma metadata, so one that works on one backend works on all.
    """
    if type(namespace) is not str:
        raise InvalidArgumentError(f"{where} must be a str, not {type(namespace).__name__}")
    if namespace.isascii() and len(namespace) <= MAX_NAMESPACE_BYTES and "\x00" not in namespace:
        return namespace
    if "\x00" in namespace:
        raise InvalidArgumentError(f"{where} must not contain NUL")
    try:
        size = len(namespace.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"{where} must not contain lone surrogates") from None
    if size > MAX_NAMESPACE_BYTES:
        raise InvalidArgumentError(
            f"{where} is {size} bytes in UTF-8, over the {MAX_NAMESPACE_BYTES} allowed"
        )
    return namespace


def _str_problem(text: object) -> str | None:
    """Why ``text`` breaks the key character rules, or None."""
    if type(text) is not str:
        return f"must be a str, not {type(text).__name__}"
    if not text:
        return "must not be empty"
    if text.isascii():  # fast path: no surrogates, one byte per character
        if len(text) > MAX_KEY_BYTES:
            return f"longer than {MAX_KEY_BYTES} bytes"
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            return "contains a lone surrogate"
        if size > MAX_KEY_BYTES:
            return f"longer than {MAX_KEY_BYTES} bytes in UTF-8"
    if "\x00" in text:
        return "contains NUL"
    return None


def ttl_to_ms(ttl: object) -> int:
    """Validate a ttl in seconds and return it in whole milliseconds, rounded up."""
    if type(ttl) is int:
        # Compared as an int, never converted to float first: an int beyond the float range
        # (10**400) would raise OverflowError there instead of InvalidArgumentError.
        if ttl <= 0:
            raise InvalidArgumentError(
                f"ttl must be a number of seconds > 0, got {short_repr(ttl)}"
            )
        if ttl > MAX_TTL_SECONDS:
            raise InvalidArgumentError(f"ttl must be at most ten years, got {short_repr(ttl)}")
        return ttl * 1000
    if type(ttl) is not float:
        raise InvalidArgumentError(f"ttl must be int or float seconds, not {type(ttl).__name__}")
    if not math.isfinite(ttl) or ttl <= 0:
        raise InvalidArgumentError(f"ttl must be a finite number of seconds > 0, got {ttl!r}")
    if ttl > MAX_TTL_SECONDS:
        raise InvalidArgumentError(f"ttl must be at most ten years, got {ttl!r}")
    # round() first so 0.3 s (300.00000000000006 ms) does not become 301 ms.
    return max(1, math.ceil(round(ttl * 1000, 6)))


def check_tags(tags: object) -> dict[str, str]:
    """Validate a tag mapping and return a plain dict copy (CONTRACT.md, "Tags").

    Names follow the key rules. Values are str following the same character
    rules, except that they may be empty. ``None`` means no tags; anything else
    that is not a mapping (``[]``, ``0``, ``""`` included) is refused.
    """
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise InvalidArgumentError(
            f"tags must be a mapping of str to str, not {type(tags).__name__}"
        )
    if len(tags) > MAX_TAGS:
        raise InvalidArgumentError(f"at most {MAX_TAGS} tags per key, got {len(tags)}")
    out: dict[str, str] = {}
    for name, value in tags.items():
        # Fast path, as in check_key: short ASCII names and values without NUL are the
        # norm; anything else gets the full check and its precise message.
        if not (
            type(name) is str
            and type(value) is str
            and name.isascii()
            and value.isascii()
            and 0 < len(name) <= MAX_KEY_BYTES
            and len(value) <= MAX_KEY_BYTES
            and "\x00" not in name
            and "\x00" not in value
        ):
            check_tag(name, value)
        out[name] = value
    return out


def check_tag(name: object, value: object) -> None:
    """Raise :class:`InvalidArgumentError` unless ``name=value`` is a valid tag."""
    problem = _str_problem(name)
    if problem is not None:
        raise InvalidArgumentError(f"invalid tag name {short_repr(name)}: {problem}")
    # The type first: ``value != ""`` would run an arbitrary object's __ne__ (which may
    # raise, or return an array whose truth value raises).
    if type(value) is not str:
        raise InvalidArgumentError(f"tag {name!r} value must be a str, not {type(value).__name__}")
    if value:
        problem = _str_problem(value)
        if problem is not None:
            raise InvalidArgumentError(f"invalid value for tag {name!r}: {problem}")


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80


def short_repr(obj: object) -> str:
    """``repr(obj)`` cut to 80 characters, for error messages; never raises.

    A plain ``repr`` can raise for what callers pass: an int of more than 4300 digits
    (ValueError), a deeply nested list (RecursionError), a ``__repr__`` that fails. reprlib
    caps the depth and the length; whatever still fails is shown by its type.
    """
    try:
        text = _REPR.repr(obj)
    except Exception:  # noqa: BLE001 - a message must not turn into another error
        return f"<{type(obj).__name__} object>"
    return text if len(text) <= 80 else text[:77] + "..."


def iterate(items: object, what: str, expected: str = "an iterable") -> Iterator[Any]:
    """``iter(items)``, or InvalidArgumentError when ``items`` cannot be iterated.

    Not only TypeError (not iterable): a released memoryview raises ValueError.
    """
    try:
        return iter(items)  # type: ignore[call-overload,no-any-return]
    except Exception as exc:
        raise InvalidArgumentError(
            f"{what} must be {expected}, not {type(items).__name__} ({type(exc).__name__}: {exc})"
        ) from exc
