"""Every SQLite statement of the provider, built with SQLAlchemy Core and compiled once.

Parameters are positional (``?``); the comment after each statement gives the
order, which :func:`compile_stmt` verifies.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    LargeBinary,
    Text,
    and_,
    bindparam,
    column,
    delete,
    func,
    null,
    or_,
    select,
    true,
    update,
    values,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite import insert

from ._compile import Stmt, compile_stmt
from ._schema import Tables, build_tables, ddl

__all__ = ["BATCH_ROWS", "SQLiteStatements", "chunk_sizes"]

BATCH_ROWS = 250
"""Rows per multi-row upsert (2 parameters a row: under SQLite's old 999-variable limit)."""


class SQLiteStatements:
    """The compiled statements for one table name."""

    def __init__(self, table: str) -> None:
        dialect = sqlite.dialect()
        t = build_tables(table, "sqlite")
        self.tables: Tables = t
        self.ddl: list[str] = ddl(t, dialect)
        kv, tags, meta = t.kv.c, t.tags.c, t.meta.c
        ns = bindparam("ns", type_=Text)
        key = bindparam("key", type_=Text)
        now = bindparam("now", type_=BigInteger)
        live = or_(kv.expires_at.is_(None), kv.expires_at > now)
        this = and_(kv.namespace == ns, kv.key == key)

        def c(statement: object, expect: tuple[str, ...] | None = None) -> Stmt:
            return compile_stmt(statement, dialect, expect)  # type: ignore[arg-type]

        key3 = ("ns", "key", "now")
        # --- contract v1.1 (incr, compare_and_*): the row as it is, expired or not, then
        # only its value rewritten (expiry and tags stay) ---
        # (ns, key)
        self.current = c(select(kv.value, kv.expires_at).where(this), ("ns", "key"))
        # (value, ns, key)
        self.set_value = c(
            update(t.kv).where(this).values(value=bindparam("value", type_=LargeBinary)),
            ("value", "ns", "key"),
        )
        # (ns, key, now)
        self.get = c(select(kv.value, kv.expires_at).where(this, live), key3)
        self.exists = c(select(kv.expires_at).where(this, live), key3)
        row = insert(t.kv).values(
            namespace=ns,
            key=key,
            value=bindparam("value"),
            expires_at=bindparam("exp"),
            tags=bindparam("tags"),
        )
        replace = {
            "value": row.excluded.value,
            "expires_at": row.excluded.expires_at,
            "tags": row.excluded.tags,
        }
        pk = [kv.namespace, kv.key]
        # (ns, key, value, exp, tags): plain write, replaces whatever is there.
        self.upsert = c(
            row.on_conflict_do_update(index_elements=pk, set_=replace),
            ("ns", "key", "value", "exp", "tags"),
        )
        # (ns, key, value, exp, tags, now): if_not_exists; an expired row counts as absent,
        # and the database decides inside the statement, never read-then-write.
        expired = and_(kv.expires_at.is_not(None), kv.expires_at <= now)
        self.insert_nx = c(
            row.on_conflict_do_update(index_elements=pk, set_=replace, where=expired),
            ("ns", "key", "value", "exp", "tags", "now"),
        )
        self._dialect = dialect
        self._batch: dict[int, Stmt] = {}
        # (ns, key, now)
        self.delete = c(delete(t.kv).where(this, live), key3)
        # (exp, ns, key, now)
        self.expire = c(
            update(t.kv).where(this, live).values(expires_at=bindparam("exp")),
            ("exp", "ns", "key", "now"),
        )
        self.persist = c(update(t.kv).where(this, live).values(expires_at=null()), key3)

        # --- tags ---
        on_row = and_(tags.namespace == kv.namespace, tags.key == kv.key)
        # (ns): does this namespace use tags at all? If not, writes skip tag cleanup.
        self.tags_any = c(select(tags.key).where(tags.namespace == ns).limit(1))
        self.tags_delete = c(
            delete(t.tags).where(tags.namespace == ns, tags.key == key), ("ns", "key")
        )
        self.tags_insert = c(
            insert(t.tags).values(
                namespace=ns, key=key, name=bindparam("name"), value=bindparam("value")
            ),
            ("ns", "key", "name", "value"),
        )
        # (ns, key, now)
        self.get_tags = c(select(kv.tags).where(this, live), key3)
        # (ns, name, value, now): candidates, checked against each row's own tags.
        self.find_by_tag = c(
            select(tags.key, kv.tags)
            .select_from(t.tags.join(t.kv, on_row))
            .where(
                tags.namespace == ns,
                tags.name == bindparam("name"),
                tags.value == bindparam("value"),
                live,
            ),
            ("ns", "name", "value", "now"),
        )

        # --- ranges: keys/count/scan over prefix <= key < upper ---
        def in_range(first: bool, upper: bool) -> ColumnElement[bool]:
            low = kv.key >= bindparam("lo") if first else kv.key > bindparam("lo")
            parts = [kv.namespace == ns, low]
            if upper:
                parts.append(kv.key < bindparam("hi"))
            parts.append(live)
            return and_(*parts)

        self.keys = {
            upper: c(select(kv.key).where(in_range(True, upper))) for upper in (False, True)
        }
        self.count = {
            upper: c(select(func.count()).select_from(t.kv).where(in_range(True, upper)))
            for upper in (False, True)
        }
        limit = bindparam("limit", type_=Integer)
        self.scan_page = {
            (first, upper): c(
                select(kv.key, kv.value).where(in_range(first, upper)).order_by(kv.key).limit(limit)
            )
            for first in (False, True)
            for upper in (False, True)
        }

        # --- namespace-wide ---
        self.count_live = c(
            select(func.count()).select_from(t.kv).where(kv.namespace == ns, live), ("ns", "now")
        )
        self.clear_tags = c(delete(t.tags).where(tags.namespace == ns), ("ns",))
        self.clear_kv = c(delete(t.kv).where(kv.namespace == ns), ("ns",))

        # (ns): the rows this namespace holds, expired ones not purged yet and tag rows
        # included: the provider's footprint()
        self.footprint = c(
            select(
                select(func.count()).select_from(t.kv).where(kv.namespace == ns).scalar_subquery()
                + select(func.count())
                .select_from(t.tags)
                .where(tags.namespace == ns)
                .scalar_subquery()
            ),
            ("ns", "ns"),
        )

        # --- purge of expired rows (all namespaces of the table) ---
        self.purge_select = c(select(kv.namespace, kv.key).where(kv.expires_at <= now).limit(limit))
        self.purge_kv = c(delete(t.kv).where(this, kv.expires_at <= now), ("ns", "key", "now"))

        # --- schema metadata ---
        self.meta_get = c(select(meta.value).where(meta.name == bindparam("name")), ("name",))
        self.meta_init = c(
            insert(t.meta)
            .values(name=bindparam("name"), value=bindparam("value"))
            .on_conflict_do_nothing(),
            ("name", "value"),
        )

    def upsert_rows(self, rows: int) -> Stmt:
        """``WITH rows(k, v) AS (VALUES (?, ?), ...) INSERT ... SELECT`` for ``rows`` rows.

        One statement per chunk instead of one ``executemany`` step per row: about twice
        as fast in SQLite. Parameters: k0, v0, k1, v1, ..., then ns, exp, tags.
        """
        stmt = self._batch.get(rows)
        if stmt is None:
            kv = self.tables.kv
            data = values(column("k", Text), column("v", LargeBinary), name="rows").data(
                [(bindparam(f"k{i}"), bindparam(f"v{i}")) for i in range(rows)]
            )
            source = data.cte("rows")
            # WHERE true: SQLite needs it to parse "SELECT ... ON CONFLICT" unambiguously.
            picked = select(
                bindparam("ns"), source.c.k, source.c.v, bindparam("exp"), bindparam("tags")
            ).where(true())
            insert_rows = insert(kv).from_select(
                ["namespace", "key", "value", "expires_at", "tags"], picked
            )
            upsert = insert_rows.on_conflict_do_update(
                index_elements=[kv.c.namespace, kv.c.key],
                set_={
                    "value": insert_rows.excluded.value,
                    "expires_at": insert_rows.excluded.expires_at,
                    "tags": insert_rows.excluded.tags,
                },
            )
            expect = tuple(f"{kind}{i}" for i in range(rows) for kind in "kv")
            expect += ("ns", "exp", "tags")
            stmt = self._batch[rows] = compile_stmt(upsert, self._dialect, expect)
        return stmt


def chunk_sizes(total: int) -> list[int]:
    """Split ``total`` rows into full BATCH_ROWS chunks and then powers of two, so at most
    nine distinct statements are ever compiled for any batch size."""
    sizes = [BATCH_ROWS] * (total // BATCH_ROWS)
    rest = total % BATCH_ROWS
    bit = 128
    while rest:
        if rest >= bit:
            sizes.append(bit)
            rest -= bit
        bit //= 2
    return sizes
