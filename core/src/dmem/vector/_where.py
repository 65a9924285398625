"""``where`` filters: validation into one canonical form, and the shared evaluator.

A filter is a mapping (CONTRACT.md, "Vector providers")::

    {"genre": "jazz"}                            # equality
    {"year": {"$gte": 1990, "$lt": 2000}}        # several operators: all must hold
    {"$or": [{"genre": "jazz"}, {"rating": {"$gt": 4.5}}]}
    {"genre": {"$in": ["jazz", "blues"]}, "draft": False}   # several fields: all must hold

Operators: ``$eq $ne $gt $gte $lt $lte $in $nin`` on a field, ``$and $or`` on
lists of filters. :func:`normalize_where` checks a filter before any I/O and
returns its canonical form, in which every mapping has exactly one key:
``{"$and": [...]}``, ``{"$or": [...]}`` or ``{field: {op: operand}}`` (``$in``
and ``$nin`` operands are lists). Providers translate that form to their
backend; :func:`where_matches` evaluates it in Python, for providers without
filters of their own and for tests.

Semantics, the same on every backend (they are Chroma's):

* Values compare by type family: a ``bool`` only equals a ``bool``; ``int`` and
  ``float`` compare as numbers (``1 == 1.0``); a ``str`` only equals a ``str``.
* ``$gt $gte $lt $lte`` take a number and never match a non-number field.
* A record without the field fails every operator except ``$ne`` and ``$nin``,
  which it passes (it is not equal to the operand).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidArgumentError
from ._types import MetadataValue

__all__ = ["COMPARISONS", "Where", "normalize_where", "same_value", "where_matches"]

Where = dict[str, Any]
"""A canonical filter (see the module docstring)."""

COMPARISONS = ("$gt", "$gte", "$lt", "$lte")
_FIELD_OPS = ("$eq", "$ne", "$in", "$nin", *COMPARISONS)
_MAX_DEPTH = 32


def normalize_where(where: object) -> Where | None:
    """Validate ``where`` and return its canonical form (None for no filter)."""
    if where is None:
        return None
    return _node(where, 0)


def _node(where: object, depth: int) -> Where:
    if depth > _MAX_DEPTH:
        raise InvalidArgumentError(f"where filter nested deeper than {_MAX_DEPTH}")
    if not isinstance(where, Mapping) or not where:
        raise InvalidArgumentError(f"a where filter must be a non-empty mapping, got {where!r}")
    parts: list[Where] = []
    for name, condition in where.items():
        if not isinstance(name, str):
            raise InvalidArgumentError(f"where keys must be str, got {name!r}")
        if name in ("$and", "$or"):
            if isinstance(condition, (str, bytes)) or not isinstance(condition, Sequence):
                raise InvalidArgumentError(f"{name} takes a list of filters, got {condition!r}")
            if not condition:
                raise InvalidArgumentError(f"{name} takes a non-empty list of filters")
            children = [_node(child, depth + 1) for child in condition]
            parts.append(children[0] if len(children) == 1 else {name: children})
        elif name.startswith("$"):
            raise InvalidArgumentError(
                f"unknown where operator {name!r} (use $and, $or, or a field name)"
            )
        else:
            _check_field(name)
            parts.extend(_field(name, condition))
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _check_field(name: str) -> None:
    if not name:
        raise InvalidArgumentError("where field names must be non-empty")


def _field(name: str, condition: object) -> list[Where]:
    if not isinstance(condition, Mapping):
        return [{name: {"$eq": _scalar(name, "$eq", condition)}}]
    if not condition:
        raise InvalidArgumentError(f"where condition on {name!r} is an empty mapping")
    out: list[Where] = []
    for op, operand in condition.items():
        if op not in _FIELD_OPS:
            raise InvalidArgumentError(
                f"unknown where operator {op!r} on {name!r} (known: {', '.join(_FIELD_OPS)})"
            )
        if op in ("$in", "$nin"):
            if isinstance(operand, (str, bytes)) or not isinstance(operand, Sequence):
                raise InvalidArgumentError(f"{op} on {name!r} takes a list, got {operand!r}")
            if not operand:
                raise InvalidArgumentError(f"{op} on {name!r} takes a non-empty list")
            out.append({name: {op: [_scalar(name, op, item) for item in operand]}})
        elif op in COMPARISONS:
            if type(operand) not in (int, float) or not math.isfinite(operand):
                raise InvalidArgumentError(
                    f"{op} on {name!r} takes a finite number, got {operand!r}"
                )
            out.append({name: {op: operand}})
        else:
            out.append({name: {op: _scalar(name, op, operand)}})
    return out


def _scalar(name: str, op: str, value: object) -> MetadataValue:
    if type(value) in (str, bool, int):
        return value  # type: ignore[return-value]
    if type(value) is float and math.isfinite(value):
        return value
    raise InvalidArgumentError(
        f"{op} on {name!r} takes a str, int, finite float or bool, got {value!r}"
    )


def _family(value: object) -> int:
    kind = type(value)
    if kind is bool:
        return 0
    if kind is int or kind is float:
        return 1
    return 2


def same_value(a: object, b: object) -> bool:
    """Equality by type family: bools with bools, numbers numerically, strs with strs."""
    return _family(a) == _family(b) and a == b


def where_matches(where: Where | None, metadata: Mapping[str, MetadataValue]) -> bool:
    """True when ``metadata`` passes the canonical filter ``where`` (None passes)."""
    if where is None:
        return True
    ((name, condition),) = where.items()
    if name == "$and":
        return all(where_matches(child, metadata) for child in condition)
    if name == "$or":
        return any(where_matches(child, metadata) for child in condition)
    ((op, operand),) = condition.items()
    if name not in metadata:
        return op in ("$ne", "$nin")
    value = metadata[name]
    if op == "$eq":
        return same_value(value, operand)
    if op == "$ne":
        return not same_value(value, operand)
    if op == "$in":
        return any(same_value(value, item) for item in operand)
    if op == "$nin":
        return not any(same_value(value, item) for item in operand)
    if _family(value) != 1:
        return False
    if op == "$gt":
        return bool(value > operand)
    if op == "$gte":
        return bool(value >= operand)
    if op == "$lt":
        return bool(value < operand)
    return bool(value <= operand)
