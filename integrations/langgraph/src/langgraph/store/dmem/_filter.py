"""``search(filter=...)`` on item values: InMemoryStore's semantics, checked before any I/O.

A filter maps top-level value fields to a condition: a plain value (equal, compared as
JSON: a nested dict matches field by field, a list element by element) or a mapping of
operators ``$eq $ne $gt $gte $lt $lte``. This is what
``langgraph.store.memory.InMemoryStore`` does, with two differences made on purpose:

* an unknown operator is an ``InvalidArgumentError`` raised before the batch touches the
  backend (InMemoryStore raises ``ValueError`` halfway through matching);
* ``$gt $gte $lt $lte`` on a field that is not a number (missing, ``None``, a list, a
  str that ``float()`` refuses) do not match (InMemoryStore lets ``float()`` raise
  ``TypeError``/``ValueError`` out of the search).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from dmem import InvalidArgumentError

__all__ = ["check_filter", "matches"]

_OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})
_ORDERED = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}


def check_filter(filter: object) -> dict[str, Any] | None:  # noqa: A002 - LangGraph's name
    """Validate a search filter; returns it (or None)."""
    if filter is None:
        return None
    if not isinstance(filter, Mapping):
        raise InvalidArgumentError(f"filter must be a dict, not {type(filter).__name__}")
    for name, condition in filter.items():
        if not isinstance(name, str):
            raise InvalidArgumentError(f"filter field names must be str, got {name!r}")
        _check_condition(condition)
    return dict(filter)


def _check_condition(condition: object) -> None:
    if isinstance(condition, Mapping):
        operators = [k for k in condition if isinstance(k, str) and k.startswith("$")]
        if operators:
            for op, operand in condition.items():
                if op not in _OPERATORS:
                    raise InvalidArgumentError(
                        f"unsupported filter operator {op!r} (use one of "
                        f"{', '.join(sorted(_OPERATORS))})"
                    )
                if op in _ORDERED and _number(operand) is None:
                    raise InvalidArgumentError(f"{op} takes a number, got {operand!r}")
        else:
            for value in condition.values():
                _check_condition(value)
    elif isinstance(condition, (list, tuple)):
        for value in condition:
            _check_condition(value)


def _number(value: Any) -> float | None:
    if isinstance(value, (dict, list, tuple)) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return None if math.isnan(number) else number


def matches(value: Mapping[str, Any], filter: Mapping[str, Any] | None) -> bool:  # noqa: A002
    """Whether an item's value passes a (checked) filter."""
    if not filter:
        return True
    return all(_compare(value.get(name), condition) for name, condition in filter.items())


def _compare(item_value: Any, condition: Any) -> bool:
    if isinstance(condition, Mapping):
        if any(isinstance(k, str) and k.startswith("$") for k in condition):
            return all(_apply(item_value, op, operand) for op, operand in condition.items())
        if not isinstance(item_value, Mapping):
            return False
        return all(_compare(item_value.get(k), v) for k, v in condition.items())
    if isinstance(condition, (list, tuple)):
        return (
            isinstance(item_value, (list, tuple))
            and len(item_value) == len(condition)
            and all(_compare(a, b) for a, b in zip(item_value, condition, strict=True))
        )
    return bool(item_value == condition)


def _apply(value: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        return bool(value == operand)
    if op == "$ne":
        return bool(value != operand)
    left, right = _number(value), _number(operand)
    if left is None or right is None:
        return False
    return bool(_ORDERED[op](left, right))
