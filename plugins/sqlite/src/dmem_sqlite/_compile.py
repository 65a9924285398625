"""Compile a SQLAlchemy Core statement once into a SQL string plus its parameter order.

The providers never run SQLAlchemy at call time: each statement is built with
Core when the provider initializes, compiled for its dialect, and from then on
only the string is handed to the driver (stdlib ``sqlite3`` or ``asyncpg``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

__all__ = ["Stmt", "compile_stmt"]


@dataclass(frozen=True)
class Stmt:
    """A compiled statement: ``sql`` with positional parameters named ``names``."""

    sql: str
    names: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)

    def args(self, **values: Any) -> tuple[Any, ...]:
        """Positional parameters from keyword values (literals SQLAlchemy added included)."""
        return tuple(values[n] if n in values else self.defaults[n] for n in self.names)


def compile_stmt(
    statement: ClauseElement, dialect: Dialect, expect: tuple[str, ...] | None = None
) -> Stmt:
    """Compile ``statement``; when ``expect`` is given, the parameter order must be exactly it.

    Hot paths build their parameter tuples by hand in ``expect`` order; checking it
    here turns any change in SQLAlchemy's rendering into an error at startup instead
    of values silently landing in the wrong columns.
    """
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
    names = tuple(compiled.positiontup or ())
    if expect is not None and names != expect:
        raise RuntimeError(
            f"dmem-sqlite: unexpected parameter order {names} (expected {expect}) for "
            f"{compiled.string!r}"
        )
    defaults = {n: v for n, v in compiled.params.items() if v is not None}
    return Stmt(compiled.string, names, defaults)
