"""What a counter is in stored bytes, for every provider's ``incr`` (contract v1.1).

The core stores an int as its JSON text (``b"42"``, ``b"-7"``), so a provider's ``incr``
reads and writes exactly that: :func:`parse_counter` accepts only the canonical form the
core writes, and refuses anything else (a str, a float, ``true``, ``1e3``, ``042``, a
compressed or bytes value) with :class:`~dmem.errors.InvalidValueError`, and so does
:func:`add_to_counter` for a result outside signed 64-bit.
"""

from __future__ import annotations

import re

from .errors import InvalidValueError

__all__ = ["INT64_MAX", "INT64_MIN", "add_to_counter", "encode_counter", "parse_counter"]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_CANONICAL_INT = re.compile(rb"-?(?:0|[1-9][0-9]{0,18})")


def parse_counter(data: bytes) -> int:
    """The int stored as ``data``, or :class:`InvalidValueError` when it holds no int."""
    if _CANONICAL_INT.fullmatch(data) is None or data == b"-0":
        raise InvalidValueError("incr: the key holds a value that is not an int")
    value = int(data)
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidValueError("incr: the key holds an int outside signed 64-bit")
    return value


def add_to_counter(current: int, delta: int) -> int:
    """``current + delta``, or :class:`InvalidValueError` when it leaves signed 64-bit."""
    result = current + delta
    if not INT64_MIN <= result <= INT64_MAX:
        raise InvalidValueError(
            f"incr: {current} + {delta} is outside signed 64-bit; the value is unchanged"
        )
    return result


def encode_counter(value: int) -> bytes:
    """The stored form of a counter: what the core's codec writes for that int."""
    return str(value).encode()
