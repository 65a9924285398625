"""The tables, as SQLAlchemy Core objects, and their DDL compiled for one dialect.

Three tables per ``table`` option (default ``dmem_kv``):

* ``<table>``: ``(namespace, key)`` primary key, ``value`` bytes, ``expires_at``
  (wall-clock ms, NULL for no expiry), ``tags`` (JSON object text, NULL for none).
  Keys compare bytewise: SQLite ``BINARY``, PostgreSQL ``COLLATE "C"``, so a
  prefix is a contiguous primary-key range.
* ``<table>_tags``: ``(namespace, key, name)`` primary key and ``value``, indexed
  by ``(namespace, name, value)``: the index ``find_by_tag`` searches. It is
  written in the same transaction as the row; every hit is still checked against
  the row's own ``tags``, so an index row left behind by a race between two
  PostgreSQL writers of one key can never show up in a result.
* ``<table>_meta``: ``name -> value``; holds ``schema_version``.

SQLite tables are ``WITHOUT ROWID``: the primary key is the table, so a write
updates one b-tree instead of two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    LargeBinary,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from ._config import valid_table

__all__ = ["Tables", "build_tables", "ddl"]


@dataclass(frozen=True)
class Tables:
    kv: Table
    tags: Table
    meta: Table


def build_tables(table: str, dialect_name: str) -> Tables:
    """The three tables for ``table`` (validated again: it ends up in DDL)."""
    valid_table(table)
    collation = "C" if dialect_name == "postgresql" else "BINARY"
    extra: dict[str, Any] = {"sqlite_with_rowid": False} if dialect_name == "sqlite" else {}
    metadata = MetaData()
    kv = Table(
        table,
        metadata,
        Column("namespace", Text(collation=collation), primary_key=True),
        Column("key", Text(collation=collation), primary_key=True),
        Column("value", LargeBinary, nullable=False),
        Column("expires_at", BigInteger, nullable=True),
        # The key's tags as a JSON object (NULL: none). The source of truth for
        # get_tags; the tags table is the index find_by_tag searches, checked against it.
        Column("tags", Text, nullable=True),
        **extra,
    )
    # Partial index: only rows with an expiry are in it, which is all the purge looks for.
    Index(
        f"{table}_expiry",
        kv.c.expires_at,
        sqlite_where=kv.c.expires_at.is_not(None),
        postgresql_where=kv.c.expires_at.is_not(None),
    )
    tags = Table(
        f"{table}_tags",
        metadata,
        Column("namespace", Text(collation=collation), primary_key=True),
        Column("key", Text(collation=collation), primary_key=True),
        Column("name", Text(collation=collation), primary_key=True),
        Column("value", Text(collation=collation), nullable=False),
        **extra,
    )
    Index(f"{table}_tags_by_value", tags.c.namespace, tags.c.name, tags.c.value)
    meta = Table(
        f"{table}_meta",
        metadata,
        Column("name", Text, primary_key=True),
        Column("value", Text, nullable=False),
    )
    return Tables(kv, tags, meta)


def ddl(tables: Tables, dialect: Dialect) -> list[str]:
    """``CREATE TABLE/INDEX IF NOT EXISTS`` statements, in dependency order."""
    statements: list[str] = []
    for table in (tables.kv, tables.tags, tables.meta):
        statements.append(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
        for index in sorted(table.indexes, key=lambda ix: str(ix.name)):
            statements.append(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)))
    return statements
