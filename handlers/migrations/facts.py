"""Facts from the target database, each one query however many tables or columns the file
touches (PgHero style: one named function around one SQL statement)."""
from __future__ import annotations

import json
from collections import defaultdict

import psycopg
from psycopg import sql

from .harmless import SAFE_FUNCTIONS
from .nodes import TableName, function_name, not_null_columns, table_of
from .rules.type_table import Misfit
from .session import execute, pin_session
from .sqltypes import type_from_catalog
from .timeline import CatalogColumns, CatalogConstraints

ColumnKey = tuple[TableName, str]


def _relation(table: TableName) -> sql.Identifier:
    return sql.Identifier(table.schema, table.name) if table.schema else sql.Identifier(table.name)


def fetch_column_types(conn: psycopg.Connection, tables: set[TableName]) -> CatalogColumns:
    """Column types of every table in `tables` that exists (names resolved by search_path)."""
    if not tables:
        return {}
    ordered = sorted(tables, key=lambda t: (t.schema or "", t.name))
    rows = conn.execute(
        """
        SELECT req.i, a.attname, coalesce(elem.typname, t.typname), a.atttypmod, elem.oid IS NOT NULL
        FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS req(sch, rel, i)
        JOIN pg_attribute a ON a.attrelid = to_regclass(
            CASE WHEN req.sch IS NULL THEN quote_ident(req.rel)
                 ELSE quote_ident(req.sch) || '.' || quote_ident(req.rel) END)
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_type elem ON t.typcategory = 'A' AND elem.oid = t.typelem
        WHERE a.attnum > 0 AND NOT a.attisdropped
        """,
        ([t.schema for t in ordered], [t.name for t in ordered]),
    ).fetchall()
    result: CatalogColumns = defaultdict(dict)
    for i, column, typname, typmod, is_array in rows:
        result[ordered[i - 1]][column] = type_from_catalog(typname, typmod, is_array)
    return dict(result)


def fetch_constraints(conn: psycopg.Connection, tables: set[TableName]) -> dict[TableName, CatalogConstraints]:
    """For each table in `tables` that exists: its NOT NULL columns, the CHECK constraints that prove
    columns NOT NULL (and whether each is valid), and its indexes' columns, in one query."""
    if not tables:
        return {}
    ordered = sorted(tables, key=lambda t: (t.schema or "", t.name))
    rows = conn.execute(
        """
        WITH req AS (
            SELECT i, to_regclass(CASE WHEN sch IS NULL THEN quote_ident(rel)
                                       ELSE quote_ident(sch) || '.' || quote_ident(rel) END) AS oid
            FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS r(sch, rel, i))
        SELECT req.i, 'table', NULL::name, NULL::text, NULL::bool, NULL::name[] FROM req WHERE req.oid IS NOT NULL
        UNION ALL
        SELECT req.i, 'not null', a.attname, NULL, NULL, NULL FROM req
          JOIN pg_attribute a ON a.attrelid = req.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull
        UNION ALL
        SELECT req.i, 'check', c.conname, pg_get_expr(c.conbin, c.conrelid), c.convalidated, NULL FROM req
          JOIN pg_constraint c ON c.conrelid = req.oid AND c.contype = 'c'
        UNION ALL
        SELECT req.i, 'index', ic.relname, NULL, NULL,
               array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)
                     LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.n)
        FROM req JOIN pg_index x ON x.indrelid = req.oid JOIN pg_class ic ON ic.oid = x.indexrelid
        """,
        ([t.schema for t in ordered], [t.name for t in ordered]),
    ).fetchall()
    not_null: dict[TableName, set[str]] = defaultdict(set)
    result = {}
    for i, kind, name, expr, valid, columns in rows:
        table = ordered[i - 1]
        facts = result.setdefault(table, CatalogConstraints())
        if kind == "not null":
            not_null[table].add(name)
        elif kind == "check":
            proves = _proves_not_null(expr)
            if proves:
                facts.checks[name] = (proves, valid)
        elif kind == "index":
            facts.indexes[name] = tuple(columns)  # an expression's attnum is 0: no attname, None
        # (a 'table' row only makes sure the table is in the result)
    for table, columns in not_null.items():
        result[table].not_null = frozenset(columns)
    return result


def _proves_not_null(expr: str) -> frozenset[str]:
    """The columns a CHECK's expression (as pg_get_expr prints it) proves NOT NULL, read with the
    same parser as the migration."""
    from pglast.parser import ParseError, parse_sql_json

    try:
        tree = json.loads(parse_sql_json(f"SELECT {expr}"))
        target = tree["stmts"][0]["stmt"]["SelectStmt"]["targetList"][0]["ResTarget"]["val"]
    except (ParseError, KeyError, IndexError):
        return frozenset()
    return not_null_columns(target)


def fetch_columns_with_data(conn: psycopg.Connection, columns: list[ColumnKey]) -> dict[ColumnKey, bool]:
    """For each column: does any row hold a non-null value? (EXISTS stops at the first one.)"""
    columns = list(dict.fromkeys(columns))
    if not columns:
        return {}
    probes = [
        sql.SQL("EXISTS (SELECT 1 FROM {} WHERE {} IS NOT NULL)").format(_relation(t), sql.Identifier(c))
        for t, c in columns
    ]
    row = conn.execute(sql.SQL("SELECT ") + sql.SQL(", ").join(probes)).fetchone()
    return dict(zip(columns, row))


def fetch_misfit_counts(conn: psycopg.Connection, checks: list[tuple[TableName, str, Misfit]]) -> list[int]:
    """For each (table, column, misfit): how many rows hold a value the new type cannot take.
    One scan per table: each table's counts are FILTERed aggregates in one sub-select."""
    if not checks:
        return []
    by_table: dict[TableName, list[int]] = defaultdict(list)
    for i, (table, _, _) in enumerate(checks):
        by_table[table].append(i)
    selects, order = [], []
    for n, (table, indexes) in enumerate(by_table.items()):
        counts = [
            sql.SQL("count(*) FILTER (WHERE {})").format(_misfit_predicate(checks[i][1], checks[i][2]))
            for i in indexes
        ]
        selects.append(sql.SQL("(SELECT {} FROM {}) AS {}").format(
            sql.SQL(", ").join(counts), _relation(table), sql.Identifier(f"t{n}")))
        order.extend(indexes)
    row = conn.execute(sql.SQL("SELECT * FROM ") + sql.SQL(" CROSS JOIN ").join(selects)).fetchone()
    result = [0] * len(checks)
    for i, count in zip(order, row):
        result[i] = count
    return result


def _misfit_predicate(column: str, misfit: Misfit) -> sql.Composable:
    col = sql.Identifier(column)
    if misfit.kind == "longer_than":
        return sql.SQL("char_length({}) > {}").format(col, sql.Literal(misfit.limit))
    if misfit.kind == "outside_range":
        return sql.SQL("{0}::numeric NOT BETWEEN {1} AND {2}").format(
            col, sql.Literal(misfit.limit), sql.Literal(misfit.high))
    if misfit.kind == "digits_over":
        return sql.SQL("abs({}::numeric) >= power(10::numeric, {})").format(col, sql.Literal(misfit.limit))
    raise ValueError(f"unknown misfit kind {misfit.kind!r}")


def estimate_rows(conn: psycopg.Connection, ctx) -> list[dict]:
    """[{line, kind, relation, rows}]: the planner's estimate of the rows each top-level DELETE and UPDATE
    would touch in this database, from EXPLAIN, never executed. A statement calling a function that is
    not known harmless is not planned (planning can evaluate stable functions); one on a table an
    earlier statement creates cannot be, and gets rows None. Each plan runs in a savepoint."""
    kinds = {"DeleteStmt": "DELETE", "UpdateStmt": "UPDATE"}
    planned = [s for s in ctx.statements if s.kind in kinds and s.node.get("relation")
               and not any(schema or name not in SAFE_FUNCTIONS or name in ctx.defined_functions
                           for schema, name in map(function_name, ctx.nested(s).get("FuncCall", ())))]
    if planned:
        pin_session(conn)
    estimates = []
    for stmt in planned:
        rows = None
        try:
            with conn.transaction():
                (plan,) = execute(conn, "EXPLAIN (FORMAT JSON) " + stmt.text).fetchone()[0]
            rows = int(plan["Plan"]["Plans"][0]["Plan Rows"])
        except (psycopg.Error, KeyError, IndexError, TypeError, ValueError):
            pass
        estimates.append({"line": stmt.line, "kind": kinds[stmt.kind], "relation": str(table_of(stmt.node["relation"])),
                          "rows": rows})
    return estimates
