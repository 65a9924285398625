"""Every PostgreSQL statement of the provider, built with SQLAlchemy Core, compiled once.

Each operation is ONE statement (one round trip, its own implicit transaction):
writes and deletes touch the tags table in data-modifying CTEs of the same
statement, so they are atomic without ``BEGIN``/``COMMIT`` round trips.
Parameters are ``$1, $2 ...`` (asyncpg); the expected order is verified.
"""

from __future__ import annotations

import itertools

from sqlalchemy import (
    BigInteger,
    Boolean,
    Integer,
    LargeBinary,
    Text,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    not_,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.sql.elements import ColumnElement

from ._compile import Stmt, compile_stmt
from ._schema import Tables, build_tables, ddl

__all__ = ["PostgresStatements"]


class PostgresStatements:
    """The compiled statements for one table name."""

    def __init__(self, table: str) -> None:
        dialect = asyncpg_dialect()  # type: ignore[no-untyped-call]
        t = build_tables(table, "postgresql")
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
        self.current = c(
            select(kv.value, kv.expires_at).where(this).with_for_update(), ("ns", "key")
        )
        # (value, ns, key)
        self.set_value = c(
            update(t.kv).where(this).values(value=bindparam("value", type_=LargeBinary)),
            ("value", "ns", "key"),
        )
        self.get = c(select(kv.value, kv.expires_at).where(this, live), key3)
        self.exists = c(select(kv.expires_at).where(this, live), key3)
        self.get_many = c(
            select(kv.key, kv.value).where(
                kv.namespace == ns, kv.key == any_(bindparam("keys", type_=ARRAY(Text))), live
            ),
            ("ns", "keys", "now"),
        )
        # The reads of many callers at once (automatic pipelining, ``_pgbatch``): one row per
        # live (namespace, key, want) asked for, the value only where ``want`` (get and
        # get_entry; exists asks for none). Each asked-for row is found through the primary
        # key (a nested loop over the unnest), as get's own statement finds it.
        asked = (
            func.unnest(
                bindparam("nss", type_=ARRAY(Text)),
                bindparam("keys", type_=ARRAY(Text)),
                bindparam("wants", type_=ARRAY(Boolean)),
            )
            .table_valued("ns", "k", "want")
            .render_derived(name="asked")
        )
        self.read_batch = c(
            select(
                asked.c.ns,
                asked.c.k,
                asked.c.want,
                case((asked.c.want, kv.value)),
                kv.expires_at,
            )
            .select_from(asked.join(t.kv, and_(kv.namespace == asked.c.ns, kv.key == asked.c.k)))
            .where(live),
            ("nss", "keys", "wants", "now"),
        )

        # --- writes: tags rewritten in the same statement ---
        names = bindparam("names", type_=ARRAY(Text))

        def write(if_not_exists: bool, single: bool, tagged: bool) -> Stmt:
            """The write statement for one shape of call.

            ``single``: one row from scalar parameters (cheaper to plan and run than
            ``unnest`` of arrays); else rows from ``keys``/``vals`` arrays. ``tagged``:
            the new tags are inserted; untagged, the statement only drops old tag rows
            (``names``/``tvals`` are not parameters then).

            A plain write (neither ``if_not_exists`` nor tags) writes every row it is
            given, so it returns nothing (the caller knows the count): the upsert is a
            CTE of a bare ``DELETE`` of the keys' old tag rows, which is ~10 µs a call
            cheaper (measured) than joining on ``RETURNING`` and counting.
            """
            exp = bindparam("exp", type_=BigInteger)
            tag_json = bindparam("tags", type_=Text)
            columns = ["namespace", "key", "value", "expires_at", "tags"]
            keys = bindparam("keys", type_=ARRAY(Text))
            if single:
                value = bindparam("value", type_=LargeBinary)
                row = (ns, key, value, exp, tag_json)
                ins = insert(t.kv).values(dict(zip(columns, row, strict=True)))
            else:
                rows = (
                    func.unnest(keys, bindparam("vals", type_=ARRAY(LargeBinary)))
                    .table_valued("k", "v")
                    .render_derived(name="rows")
                )
                picked = select(ns, rows.c.k, rows.c.v, exp, tag_json).select_from(rows)
                ins = insert(t.kv).from_select(columns, picked)
            # if_not_exists: an expired row counts as absent; the database decides inside
            # the statement (row lock on conflict), never read-then-write.
            upsert = ins.on_conflict_do_update(
                index_elements=[kv.namespace, kv.key],
                set_={
                    "value": ins.excluded.value,
                    "expires_at": ins.excluded.expires_at,
                    "tags": ins.excluded.tags,
                },
                where=and_(kv.expires_at.is_not(None), kv.expires_at <= now)
                if if_not_exists
                else None,
            )
            expect: tuple[str, ...] = (
                ("ns", "key", "value", "exp", "tags")
                if single
                else ("ns", "exp", "tags", "keys", "vals")
            )
            if not if_not_exists and not tagged:
                mine = tags.key == key if single else tags.key == any_(keys)
                plain = delete(t.tags).where(tags.namespace == ns, mine)
                return c(plain.add_cte(upsert.cte("written")), expect)
            written = upsert.returning(t.kv.c.key).cte("written")
            stale = [tags.namespace == ns, tags.key == written.c.key]
            if tagged:  # names being rewritten below need no delete
                stale.append(not_(tags.name == any_(names)))
            drop_old = delete(t.tags).where(*stale).cte("drop_old")
            ctes = [drop_old]
            if tagged:
                new = (
                    func.unnest(names, bindparam("tvals", type_=ARRAY(Text)))
                    .table_valued("name", "value")
                    .render_derived(name="new")
                )
                add = insert(t.tags).from_select(
                    ["namespace", "key", "name", "value"],
                    select(ns, written.c.key, new.c.name, new.c.value).select_from(
                        written.join(new, true())
                    ),
                )
                ctes.append(
                    add.on_conflict_do_update(
                        index_elements=[tags.namespace, tags.key, tags.name],
                        set_={"value": add.excluded.value},
                    ).cte("add_new")
                )
            final = select(func.count()).select_from(written).add_cte(*ctes)
            expect += ("now",) if if_not_exists else ()
            expect += ("names", "tvals") if tagged else ()
            return c(final, expect)

        # (if_not_exists, single, tagged) -> statement
        self.writes = {shape: write(*shape) for shape in itertools.product((False, True), repeat=3)}

        # Plain sets of many callers at once (automatic pipelining, ``_pgbatch``): rows of
        # any namespace with an expiry each, no tags; like the plain write, a CTE upsert and
        # a bare DELETE of the keys' old tag rows.
        nss, keys = bindparam("nss", type_=ARRAY(Text)), bindparam("keys", type_=ARRAY(Text))
        batch_rows = (
            func.unnest(
                nss,
                keys,
                bindparam("vals", type_=ARRAY(LargeBinary)),
                bindparam("exps", type_=ARRAY(BigInteger)),
            )
            .table_valued("ns", "k", "v", "e")
            .render_derived(name="rows")
        )
        batch_ins = insert(t.kv).from_select(
            ["namespace", "key", "value", "expires_at", "tags"],
            select(
                batch_rows.c.ns, batch_rows.c.k, batch_rows.c.v, batch_rows.c.e, null()
            ).select_from(batch_rows),
        )
        batch_upsert = batch_ins.on_conflict_do_update(
            index_elements=[kv.namespace, kv.key],
            set_={
                "value": batch_ins.excluded.value,
                "expires_at": batch_ins.excluded.expires_at,
                "tags": batch_ins.excluded.tags,
            },
        )
        retagged = func.unnest(nss, keys).table_valued("ns", "k").render_derived(name="gone")
        self.write_batch = c(
            delete(t.tags)
            .where(tags.namespace == retagged.c.ns, tags.key == retagged.c.k)
            .add_cte(batch_upsert.cte("written")),
            ("nss", "keys", "vals", "exps"),
        )

        # --- deletes ---
        gone = (
            delete(t.kv)
            .where(kv.namespace == ns, kv.key == any_(bindparam("keys", type_=ARRAY(Text))))
            .returning(t.kv.c.key, t.kv.c.expires_at)
            .cte("gone")
        )
        gone_tags = (
            delete(t.tags).where(tags.namespace == ns, tags.key == gone.c.key).cte("gone_tags")
        )
        # Expired rows among the keys are removed too, but only live ones are counted.
        self.delete_many = c(
            select(func.count())
            .select_from(gone)
            .where(or_(gone.c.expires_at.is_(None), gone.c.expires_at > now))
            .add_cte(gone_tags),
            ("ns", "keys", "now"),
        )
        cleared = delete(t.kv).where(kv.namespace == ns).returning(t.kv.c.expires_at).cte("cleared")
        cleared_tags = delete(t.tags).where(tags.namespace == ns).cte("cleared_tags")
        self.clear = c(
            select(func.count())
            .select_from(cleared)
            .where(or_(cleared.c.expires_at.is_(None), cleared.c.expires_at > now))
            .add_cte(cleared_tags),
            ("ns", "now"),
        )
        # (exp, ns, key, now) / (ns, key, now)
        self.expire = c(
            update(t.kv).where(this, live).values(expires_at=bindparam("exp", type_=BigInteger)),
            ("exp", "ns", "key", "now"),
        )
        self.persist = c(update(t.kv).where(this, live).values(expires_at=null()), key3)

        # --- tags ---
        self.get_tags = c(select(kv.tags).where(this, live), key3)
        self.find_by_tag = c(
            select(tags.key, kv.tags)
            .select_from(
                t.tags.join(t.kv, and_(tags.namespace == kv.namespace, tags.key == kv.key))
            )
            .where(
                tags.namespace == ns,
                tags.name == bindparam("name", type_=Text),
                tags.value == bindparam("value", type_=Text),
                live,
            ),
            ("ns", "name", "value", "now"),
        )
        # The same, locking the rows it finds (delete_by_tag).
        self.find_by_tag_locked = c(
            select(tags.key, kv.tags)
            .select_from(
                t.tags.join(t.kv, and_(tags.namespace == kv.namespace, tags.key == kv.key))
            )
            .where(
                tags.namespace == ns,
                tags.name == bindparam("name", type_=Text),
                tags.value == bindparam("value", type_=Text),
                live,
            )
            .with_for_update(of=t.kv),
            ("ns", "name", "value", "now"),
        )

        # --- ranges ---
        limit = bindparam("limit", type_=Integer)

        def in_range(first: bool, upper: bool) -> ColumnElement[bool]:
            lo = bindparam("lo", type_=Text)
            parts = [kv.namespace == ns, kv.key >= lo if first else kv.key > lo]
            if upper:
                parts.append(kv.key < bindparam("hi", type_=Text))
            parts.append(live)
            return and_(*parts)

        self.keys = {
            upper: c(select(kv.key).where(in_range(True, upper))) for upper in (False, True)
        }
        self.count = {
            upper: c(select(func.count()).select_from(t.kv).where(in_range(True, upper)))
            for upper in (False, True)
        }
        self.scan_page = {
            (first, upper): c(
                select(kv.key, kv.value).where(in_range(first, upper)).order_by(kv.key).limit(limit)
            )
            for first in (False, True)
            for upper in (False, True)
        }
        # Keys only, for patterns the range cannot answer alone (paged like scan).
        self.key_page = {
            (first, upper): c(
                select(kv.key).where(in_range(first, upper)).order_by(kv.key).limit(limit)
            )
            for first in (False, True)
            for upper in (False, True)
        }

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
            ("ns",),
        )

        # --- purge of expired rows (every namespace) ---
        victims = (
            select(kv.namespace, kv.key)
            .where(kv.expires_at <= now)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("victims")
        )
        purged = (
            delete(t.kv)
            .where(
                kv.namespace == victims.c.namespace,
                kv.key == victims.c.key,
                kv.expires_at <= now,
            )
            .returning(t.kv.c.namespace, t.kv.c.key)
            .cte("purged")
        )
        purged_tags = (
            delete(t.tags)
            .where(tags.namespace == purged.c.namespace, tags.key == purged.c.key)
            .cte("purged_tags")
        )
        self.purge = c(
            select(func.count()).select_from(purged).add_cte(purged_tags), ("now", "limit")
        )

        # --- schema metadata ---
        name = bindparam("name", type_=Text)
        self.meta_get = c(select(meta.value).where(meta.name == name), ("name",))
        self.meta_init = c(
            insert(t.meta)
            .values(name=name, value=bindparam("value", type_=Text))
            .on_conflict_do_nothing(),
            ("name", "value"),
        )
