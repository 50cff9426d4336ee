"""Proof by trying: on a session that is the role (its own login, or the bot's session after
SET ROLE), every kind of write is attempted and must be refused by privileges (SQLSTATE 42501),
including after each way a session can undo `default_transaction_read_only`. Every attempt runs
in a transaction that is rolled back, so even a write that wrongly succeeds leaves nothing."""
from __future__ import annotations

from typing import Iterable

import psycopg
from psycopg import sql

from . import system_catalog
from .result import Check
from .settings import ReadonlySettings

REFUSED = "42501"  # insufficient_privilege


def _attempt(conn: psycopg.Connection, statements: Iterable[sql.Composable | str], begin: str = "BEGIN READ WRITE",
             fetch: bool = False, before: Iterable[str] = ()) -> tuple[str | None, list]:
    """(None, rows) when the last statement succeeded, else (its SQLSTATE, []). `before` runs at session
    level first (and is undone after). Always rolled back."""
    rows: list = []
    try:
        for statement in before:
            conn.execute(statement)
        conn.execute(begin)
        conn.execute("SET LOCAL lock_timeout = '2s'")  # a write that wrongly passes never waits behind the app
        conn.execute("SET LOCAL statement_timeout = '10s'")
        cur = None
        for statement in statements:
            cur = conn.execute(statement)
        if fetch and cur is not None and cur.description is not None:
            rows = cur.fetchall()
        return None, rows
    except psycopg.Error as exc:
        return exc.sqlstate or "?", []
    finally:
        conn.execute("ROLLBACK")
        conn.execute("RESET ALL")  # undoes the session-level `before` (SET SESSION CHARACTERISTICS too)


def _refused(name: str, state: str | None, what: str = "") -> Check:
    if state == REFUSED:
        return Check(name, True, "refused by privileges (42501)" + (f"; {what}" if what else ""))
    if state is None:
        return Check(name, False, "it WORKED (rolled back): the role can do this",
                     "`readonly repair`, then see the audit")
    return Check(name, False, f"refused with SQLSTATE {state}, not by privileges: not proven",
                 "`readonly repair`, then see the audit")


def _row_write(what: str, table: system_catalog.Relation, settings: ReadonlySettings) -> sql.Composed:
    name = sql.Identifier(table.schema, table.name)
    if what == "INSERT":
        return sql.SQL("INSERT INTO {} DEFAULT VALUES").format(name)
    if what == "UPDATE":
        withheld = settings.withheld_in(table.schema, table.name)
        col = sql.Identifier(next((c for c in table.columns if c not in withheld), table.columns[0]))
        return sql.SQL("UPDATE {} SET {} = {} WHERE false").format(name, col, col)
    if what == "DELETE":
        return sql.SQL("DELETE FROM {} WHERE false").format(name)
    return sql.SQL("TRUNCATE {}").format(name)


def prove(conn: psycopg.Connection, role: str, schemas: list[str], settings: ReadonlySettings,
          probe_tables: list[str] = ()) -> list[Check]:
    """`conn` is a session as `role` in autocommit mode; `probe_tables` are tables ("schema.name") that
    a creator made after the grants, each holding one row."""
    rels = [r for r in system_catalog.relations(conn, schemas) if r.label not in probe_tables]
    seqs = system_catalog.relations(conn, schemas, ("S",))
    checks: list[Check] = []

    unreadable = []
    views = system_catalog.views_reading(conn, settings.withheld)
    for rel in [r for r in rels if (r.schema, r.name) not in views]:
        withheld = settings.withheld_in(rel.schema, rel.name)
        cols = [c for c in rel.columns if c not in withheld] or None
        target = sql.SQL(", ").join(map(sql.Identifier, cols)) if cols else sql.SQL("1")
        state, _ = _attempt(conn, [sql.SQL("SELECT {} FROM {} LIMIT 1").format(
            target, sql.Identifier(rel.schema, rel.name))], begin="BEGIN READ ONLY")
        if state is not None:
            unreadable.append(f"{rel.label} ({state})")
    checks.append(Check(f"reads the {len(rels)} tables and views of {', '.join(schemas)}",
                        not unreadable and bool(rels),
                        ("cannot read " + ", ".join(unreadable[:10])) if unreadable else
                        ("every one, each column it is given" if rels else "there are none to read"),
                        "" if not unreadable else "`readonly repair`"))
    for seq in seqs:
        state, _ = _attempt(conn, [sql.SQL("SELECT last_value FROM {}").format(sql.Identifier(seq.schema, seq.name))],
                            begin="BEGIN READ ONLY")
        if state is not None:
            checks.append(Check(f"reads sequence {seq.label}", False, f"refused ({state})", "`readonly repair`"))
    for probe in probe_tables:
        schema, name = probe.split(".", 1)
        state, rows = _attempt(conn, [sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))],
                               begin="BEGIN READ ONLY", fetch=True)
        ok = state is None and rows == [(1,)]
        checks.append(Check("reads a table the migration owner created after the grants", ok,
                            f"{probe}: " + ("read its row (default privileges work)" if ok else f"refused ({state})"),
                            "" if ok else "`readonly repair` (default privileges for its creator)"))

    plain = [r for r in rels if r.kind in ("r", "p")]
    if not plain:
        checks.append(Check("write attempts", False, "no table in the schemas to try writing to: not proven"))
        return checks
    # Every table, each kind of row write: one that wrongly passes is rolled back (and touches no row:
    # WHERE false, DEFAULT VALUES).
    for what in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"):
        failures = []
        for table in plain:
            state, _ = _attempt(conn, [_row_write(what, table, settings)])
            if state != REFUSED:
                failures.append(f"{table.label} ({'it worked' if state is None else state})")
        checks.append(Check(f"{what} on every table ({len(plain)})", not failures,
                            "refused by privileges (42501) on each" if not failures else
                            "NOT refused by privileges: " + ", ".join(failures[:8]),
                            "" if not failures else "see the audit for the grant that allows it"))
    table = plain[0]
    name = sql.Identifier(table.schema, table.name)
    insert = _row_write("INSERT", table, settings)
    ddl = [
        ("DDL: ALTER TABLE", sql.SQL("ALTER TABLE {} ADD COLUMN dbops_readonly_probe integer").format(name)),
        ("DDL: CREATE SCHEMA", sql.SQL("CREATE SCHEMA dbops_readonly_probe")),
    ]
    for schema in schemas:
        ddl.append((f"DDL: CREATE TABLE in {schema}", sql.SQL("CREATE TABLE {} (id integer)").format(
            sql.Identifier(schema, "dbops_readonly_probe"))))
    for what, statement in ddl:
        state, _ = _attempt(conn, [statement])
        checks.append(_refused(f"{what} ({table.label})" if what == "DDL: ALTER TABLE" else what, state))

    # nextval moves a sequence outside any transaction: tried only where the catalog says it is refused.
    tried = False
    for seq in seqs:
        label = sql.Literal(f'"{seq.schema}"."{seq.name}"')
        if conn.execute(sql.SQL("SELECT has_sequence_privilege({}, 'USAGE, UPDATE')").format(label)).fetchone()[0]:
            checks.append(Check(f"nextval({seq.label})", False, "not tried: the role holds USAGE or UPDATE on it",
                                "see the audit"))
        elif not tried:
            tried = True
            state, _ = _attempt(conn, [sql.SQL("SELECT nextval({})").format(label)])
            checks.append(_refused(f"nextval({seq.label})", state))

    for wc in settings.withheld:
        rel = next((r for r in rels if (r.schema, r.name) == (wc.schema, wc.table)), None)
        if rel is None or wc.column not in rel.columns:
            continue
        state, _ = _attempt(conn, [sql.SQL("SELECT {} FROM {} LIMIT 1").format(
            sql.Identifier(wc.column), sql.Identifier(wc.schema, wc.table))], begin="BEGIN READ ONLY")
        checks.append(_refused(f"reading withheld column {wc}", state))
    for rel in [r for r in rels if (r.schema, r.name) in views]:
        state, _ = _attempt(conn, [sql.SQL("SELECT * FROM {} LIMIT 1").format(
            sql.Identifier(rel.schema, rel.name))], begin="BEGIN READ ONLY")
        checks.append(_refused(f"reading {rel.label}, a view of {', '.join(views[(rel.schema, rel.name)])}", state))
    for rel in rels:
        if settings.withheld_in(rel.schema, rel.name) & set(rel.columns):
            state, _ = _attempt(conn, [sql.SQL("SELECT * FROM {} LIMIT 1").format(
                sql.Identifier(rel.schema, rel.name))], begin="BEGIN READ ONLY")
            checks.append(_refused(f"SELECT * FROM {rel.label}", state, "by design: name the columns"))

    # Each way a session undoes default_transaction_read_only, then a write: privileges still refuse it.
    escapes = [
        ("write after SET default_transaction_read_only = off", ["SET default_transaction_read_only = off"],
         "BEGIN", [insert]),
        ("write after BEGIN READ WRITE", [], "BEGIN READ WRITE", [insert]),
        ("write after SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
         ["SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"], "BEGIN", [insert]),
        ("write after SET transaction_read_only = off", [], "BEGIN", ["SET transaction_read_only = off", insert]),
    ]
    for what, before, begin, statements in escapes:
        state, _ = _attempt(conn, statements, begin=begin, before=before)
        checks.append(_refused(what, state))
    state, _ = _attempt(conn, [sql.SQL("ALTER ROLE CURRENT_USER SET default_transaction_read_only = off")])
    if state is None:
        checks.append(Check("ALTER ROLE on itself (SET default_transaction_read_only = off)", True,
                            "allowed (rolled back): PostgreSQL lets a role change its own defaults, which is why "
                            "read-only defaults are a convenience and the privileges above are the boundary"))
    else:
        checks.append(Check("ALTER ROLE on itself (SET default_transaction_read_only = off)", True,
                            f"refused ({state}); the privileges above are the boundary either way"))
    return checks
