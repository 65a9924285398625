"""Checks on vector records, ids, query vectors and ``k``, run before any I/O."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any

from .._validation import check_key, iterate, short_repr
from ..errors import InvalidArgumentError, InvalidKeyError
from ._types import MetadataValue, VectorRecord

__all__ = [
    "MAX_DIMENSION",
    "MAX_K",
    "check_batch",
    "check_document",
    "check_id",
    "check_ids",
    "check_k",
    "check_metadata",
    "check_query_text",
    "check_record",
    "check_records",
    "check_vector",
    "check_where",
]

MAX_DIMENSION = 65_536
MAX_K = 10_000
_INT64 = (-(2**63), 2**63 - 1)
_PLAIN = frozenset({float, int})  # not bool: type(True) is bool, not int
# Iterable, but never a list of ids, records or numbers: they iterate characters or ints
# (and a released memoryview raises ValueError on the first one).
_TEXT = (str, bytes, bytearray, memoryview)


def check_id(record_id: object) -> str:
    """Ids follow the key rules (CONTRACT.md, "Keys"); raises InvalidArgumentError."""
    try:
        check_key(record_id)
    except InvalidKeyError as exc:
        raise InvalidArgumentError(str(exc).replace("invalid key", "invalid record id")) from None
    return record_id  # type: ignore[return-value]


def check_ids(ids: Iterable[str]) -> list[str]:
    """Validate ids and drop duplicates, keeping the first occurrence's order."""
    if isinstance(ids, _TEXT):
        raise InvalidArgumentError(f"pass a list of ids, not a single {type(ids).__name__}")
    return list(dict.fromkeys(check_id(record_id) for record_id in iterate(ids, "ids", "a list")))


def check_vector(vector: object, what: str = "vector") -> tuple[float, ...]:
    """A non-empty, non-zero sequence of finite numbers, as a tuple of floats.

    A zero vector has no direction, so its cosine similarity is undefined.
    """
    if type(vector) is tuple or type(vector) is list:
        fast = _plain_floats(vector)
        if fast is not None:
            return fast
    # Sets and mappings iterate, but have no order (or iterate their keys): not a vector.
    if isinstance(vector, (str, bytes, Set, Mapping)) or not isinstance(vector, Iterable):
        raise InvalidArgumentError(
            f"{what} must be a sequence of numbers, not {type(vector).__name__}"
        )
    try:
        # Read first, then checked: a 0-d numpy array is Iterable but refuses iter(), a
        # released memoryview raises ValueError on its first item.
        items = list(vector)
    except Exception as exc:
        raise InvalidArgumentError(
            f"{what} cannot be read as numbers: {type(exc).__name__}: {exc}"
        ) from exc
    out: list[float] = []
    for item in items:
        # numpy scalars are welcome; bool is not a number here.
        if isinstance(item, bool) or not hasattr(item, "__float__") or isinstance(item, str):
            raise InvalidArgumentError(f"{what} holds a non-number: {short_repr(item)}")
        try:
            number = float(item)
        except OverflowError:  # an int beyond the float range
            number = math.inf
        except (TypeError, ValueError):  # a __float__ that fails: Decimal("sNaN"), ...
            raise InvalidArgumentError(f"{what} holds a non-number: {short_repr(item)}") from None
        if not math.isfinite(number):
            raise InvalidArgumentError(f"{what} holds a non-finite number: {short_repr(item)}")
        out.append(number)
    if not out:
        raise InvalidArgumentError(f"{what} is empty")
    if len(out) > MAX_DIMENSION:
        raise InvalidArgumentError(f"{what} has {len(out)} dimensions; at most {MAX_DIMENSION}")
    if not any(out):
        raise InvalidArgumentError(f"{what} is all zeros: cosine similarity needs a direction")
    return tuple(out)


def _plain_floats(vector: list[Any] | tuple[Any, ...]) -> tuple[float, ...] | None:
    """``vector`` as floats when it is plainly valid (only float and int elements, finite,
    not all zero, not too long), checked in C; None sends it to the per-element check.

    A NaN or infinite element makes the sum NaN or infinite; so does a finite sum that
    overflows, which the per-element check then accepts.
    """
    if not vector or len(vector) > MAX_DIMENSION or not _PLAIN.issuperset(map(type, vector)):
        return None
    try:
        floats = tuple(map(float, vector))
    except OverflowError:
        return None
    return floats if math.isfinite(sum(floats)) and any(floats) else None


def check_metadata(metadata: object) -> dict[str, MetadataValue]:
    """str keys (key rules) to str, int (64-bit), finite float or bool values."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidArgumentError(f"metadata must be a mapping, not {type(metadata).__name__}")
    out: dict[str, MetadataValue] = {}
    for name, value in metadata.items():
        try:
            check_key(name)
        except InvalidKeyError as exc:
            raise InvalidArgumentError(
                str(exc).replace("invalid key", "invalid metadata name")
            ) from None
        kind = type(value)
        if kind is str:
            if value and _text_problem(value):
                raise InvalidArgumentError(f"metadata {name!r} holds a lone surrogate or NUL")
        elif kind is int:
            if not _INT64[0] <= value <= _INT64[1]:
                raise InvalidArgumentError(
                    f"metadata {name!r} int is out of the signed 64-bit range"
                )
        elif kind is float:
            if not math.isfinite(value):
                raise InvalidArgumentError(f"metadata {name!r} float is not finite: {value!r}")
        elif kind is not bool:
            raise InvalidArgumentError(
                f"metadata {name!r} must be str, int, float or bool, not {kind.__name__}"
            )
        out[name] = value
    return out


def _text_problem(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_query_text(text: str) -> str:
    """A text query follows the document rules: no lone surrogate, no NUL."""
    if _text_problem(text):
        raise InvalidArgumentError("query text holds a lone surrogate or NUL")
    return text


def check_document(document: object) -> str | None:
    if document is None:
        return None
    if type(document) is not str:
        raise InvalidArgumentError(f"document must be a str or None, not {type(document).__name__}")
    if _text_problem(document):
        raise InvalidArgumentError("document holds a lone surrogate or NUL")
    return document


def check_record(record: object) -> VectorRecord:
    """A :class:`VectorRecord` (or a mapping with its fields), validated and copied.

    The vector may be missing when a document is there to embed; the caller checks that.
    """
    fields: Mapping[str, Any]
    if isinstance(record, VectorRecord):
        fields = {
            "id": record.id,
            "vector": record.vector,
            "metadata": record.metadata,
            "document": record.document,
        }
    elif isinstance(record, Mapping):
        unknown = set(record) - {"id", "vector", "metadata", "document"}
        if unknown:
            # Shown by repr, sorted as text: the names may be of any (mixed) type.
            names = sorted(map(short_repr, unknown))
            raise InvalidArgumentError(f"unknown record field(s): {', '.join(names)}")
        if "id" not in record:
            raise InvalidArgumentError("a record needs an 'id'")
        fields = record
    else:
        raise InvalidArgumentError(
            f"a record is a VectorRecord or a mapping, not {type(record).__name__}"
        )
    record_id = check_id(fields["id"])
    raw_vector = fields.get("vector")
    vector = None if raw_vector is None else check_vector(raw_vector, f"vector of {record_id!r}")
    return VectorRecord(
        id=record_id,
        vector=vector,
        metadata=check_metadata(fields.get("metadata")),
        document=check_document(fields.get("document")),
    )


def check_records(records: object) -> list[VectorRecord]:
    """Every record of an upsert, validated and copied (see :func:`check_record`)."""
    if isinstance(records, (VectorRecord, Mapping, *_TEXT)):
        raise InvalidArgumentError(f"upsert takes a list of records, not {type(records).__name__}")
    return [check_record(record) for record in iterate(records, "records", "a list")]


def check_k(k: object) -> int:
    if type(k) is not int or not 1 <= k <= MAX_K:
        raise InvalidArgumentError(f"k must be an int from 1 to {MAX_K}, got {short_repr(k)}")
    return k


def check_batch(records: Sequence[VectorRecord]) -> None:
    """No duplicate ids and one dimension per batch."""
    seen: set[str] = set()
    dimension: int | None = None
    for record in records:
        if record.id in seen:
            raise InvalidArgumentError(f"record id {record.id!r} appears twice in one upsert")
        seen.add(record.id)
        if record.vector is not None:
            if dimension is None:
                dimension = len(record.vector)
            elif len(record.vector) != dimension:
                raise InvalidArgumentError(
                    f"vectors of one upsert must share a dimension: {record.id!r} has "
                    f"{len(record.vector)}, earlier ones {dimension}"
                )


def check_where(where: Mapping[str, Any] | None) -> None:
    """Field names and operands of a canonical filter follow the metadata rules.

    ``normalize_where`` checks the filter's shape; this checks what the backend would
    otherwise be first to see: field names follow the key rules, a str operand holds no
    lone surrogate or NUL, an int operand fits in 64 bits (no metadata value can equal
    anything else, and Chroma fails on some such filters instead of matching nothing).
    """
    if where is None:
        return
    ((name, condition),) = where.items()
    if name in ("$and", "$or"):
        for child in condition:
            check_where(child)
        return
    try:
        check_key(name)
    except InvalidKeyError as exc:
        raise InvalidArgumentError(
            str(exc).replace("invalid key", "invalid where field name")
        ) from None
    ((op, operand),) = condition.items()
    for value in operand if isinstance(operand, list) else (operand,):
        if type(value) is str:
            if value and _text_problem(value):
                raise InvalidArgumentError(f"{op} on {name!r} holds a lone surrogate or NUL")
        elif type(value) is int and not _INT64[0] <= value <= _INT64[1]:
            raise InvalidArgumentError(f"{op} on {name!r}: int out of the signed 64-bit range")
