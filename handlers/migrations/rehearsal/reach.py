"""DELETE and UPDATE the copy cannot judge: a predicate that selects rows by a key or a timestamp range
reaching past the largest value the copy holds.

The copy is the latest backup: rows production wrote since have larger ids and later timestamps.
`DELETE FROM "Notes" WHERE "Id" > 40100` deletes nothing on a copy whose largest id is 40100 and
every newer note in production; `"CreatedAt" > '<just after the backup>'` likewise. So for each
key column (primary key, unique, foreign key, identity or sequence default) and each date or time
column a DELETE or UPDATE compares with constants, the copy is asked whether the constants lie
above its largest value, and the predicate is evaluated for a value above all of them: one that
can be true there selects rows the copy does not have. Comparisons with anything but constants
(now(): the volatile-predicate rule; subqueries) are left to the other checks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import psycopg
from psycopg import sql

from ..nodes import Node, TableName, data_changes, strings, table_of
from ..parsing import Statement
from ..predicates import NULL, UNKNOWN, constant

_MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "<>": "<>", "!=": "!="}
_TIME_TYPES = ("date", "timestamp without time zone", "timestamp with time zone")


@dataclass(frozen=True)
class Target:
    """A top-level or nested DELETE/UPDATE, and the constants each column of its table is compared with."""

    line: int
    kind: str  # DELETE | UPDATE
    table: TableName  # as the statement names it
    names: tuple[str, ...]  # its own name and alias, as column qualifiers
    where: Node
    constants: dict[str, list[str]]


def targets(statements: list[Statement]) -> list[Target]:
    found = []
    for stmt in statements:
        if not stmt.may_hold(frozenset({"DeleteStmt", "UpdateStmt"})):
            continue
        for kind, node in data_changes(stmt.kind, stmt.node):
            if kind not in ("DeleteStmt", "UpdateStmt") or not node.get("relation") or not node.get("whereClause"):
                continue
            rel = node["relation"]
            names = (rel["relname"], *([rel["alias"]["aliasname"]] if rel.get("alias") else []))
            constants: dict[str, list[str]] = {}
            _collect(node["whereClause"], names, constants)
            if constants:
                found.append(Target(stmt.line, "DELETE" if kind == "DeleteStmt" else "UPDATE",
                                    table_of(rel), names, node["whereClause"], constants))
    return found


def _column(node: Node | None, names: tuple[str, ...]) -> str | None:
    """The column a ColumnRef names when it is one of the target table's (unqualified or qualified by it)."""
    if not node or "ColumnRef" not in node:
        return None
    fields = strings(node["ColumnRef"].get("fields"))
    if len(fields) == 1 or (len(fields) == 2 and fields[0] in names):
        return fields[-1]
    return None


def _literal(node: Node | None) -> str | None:
    """A constant as text for a cast to the column's type: 40100, '2026-05-01 10:00', '...'::timestamptz."""
    if not node:
        return None
    if "TypeCast" in node:
        return _literal(node["TypeCast"].get("arg"))
    value = constant(node)
    if value is UNKNOWN or value is NULL or isinstance(value, bool):
        return None
    return str(value)


def _comparisons(expr: Node, names: tuple[str, ...]) -> list[tuple[str, str, list[str]]]:
    """(column, operator, constants) when `expr` compares a column of the table with constants."""
    a = expr.get("A_Expr")
    if not a:
        return []
    kind, op = a.get("kind"), (strings(a.get("name")) or [""])[-1]
    left, right = a.get("lexpr"), a.get("rexpr")
    if kind == "AEXPR_OP" and op in _MIRROR:
        column, value = _column(left, names), _literal(right)
        if column is None:
            column, value, op = _column(right, names), _literal(left), _MIRROR[op]
        return [(column, op, [value])] if column and value is not None else []
    items = right.get("List", {}).get("items", ()) if isinstance(right, dict) else ()
    values = [_literal(i) for i in items]
    column = _column(left, names)
    if column is None or not values or None in values:
        return []
    if kind == "AEXPR_IN":
        return [(column, "in" if op == "=" else "not in", values)]
    if kind in ("AEXPR_BETWEEN", "AEXPR_BETWEEN_SYM", "AEXPR_NOT_BETWEEN", "AEXPR_NOT_BETWEEN_SYM"):
        return [(column, kind, values)]
    return []


def _collect(expr: Node, names: tuple[str, ...], into: dict[str, list[str]]) -> None:
    if "BoolExpr" in expr:
        for arg in expr["BoolExpr"].get("args", ()):
            _collect(arg, names, into)
        return
    for column, _, values in _comparisons(expr, names):
        into.setdefault(column, []).extend(v for v in values if v not in into.get(column, []))


def reaches_above(expr: Node, column: str, names: tuple[str, ...], above: Callable[[str], bool]) -> bool:
    """Can `expr` be true for a row whose `column` is above every value the copy holds (others unknown)?
    `above(constant)` says whether the constant itself lies above the copy's largest value."""
    if "BoolExpr" in expr:
        b = expr["BoolExpr"]
        results = [reaches_above(arg, column, names, above) for arg in b.get("args", ())]
        if b.get("boolop") == "AND_EXPR":
            return all(results)
        return True if b.get("boolop") == "NOT_EXPR" else any(results)  # NOT: assume it can
    if "NullTest" in expr and _column(expr["NullTest"].get("arg"), names) == column:
        return expr["NullTest"].get("nulltesttype") != "IS_NULL"
    for col, op, values in _comparisons(expr, names):
        if col != column:
            continue
        if op in ("<", "<=", "=", "in"):
            return any(above(v) for v in values)
        if op == "AEXPR_BETWEEN":
            return above(values[-1])
        if op == "AEXPR_BETWEEN_SYM":
            return any(above(v) for v in values)
        return True  # >, >=, <>, NOT IN, NOT BETWEEN: true for large enough values
    return True  # does not constrain the column


_KEY_OR_TIME = """
    SELECT a.attname, format_type(a.atttypid, a.atttypmod)
    FROM pg_attribute a
    WHERE a.attrelid = to_regclass(%s) AND a.attname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
      AND (format_type(a.atttypid, NULL) = ANY(%s) OR a.attidentity <> ''
           OR EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = a.attrelid AND k.contype IN ('p', 'u', 'f')
                      AND a.attnum = ANY(k.conkey))
           OR EXISTS (SELECT 1 FROM pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum
                      AND pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%%'))"""


def beyond_copy(conn: psycopg.Connection, statements: list[Statement]) -> list[dict]:
    """[{line, kind, relation, column}] for each DELETE/UPDATE reaching past the copy's largest value of a
    key or time column (see the module docstring). Two queries per such statement; none for the others."""
    found = []
    for t in targets(statements):
        try:
            with conn.transaction():  # a name or constant the copy cannot read changes nothing: UP fails on it
                columns = conn.execute(_KEY_OR_TIME, (str(t.table), list(t.constants), list(_TIME_TYPES))).fetchall()
                above = _above(conn, t, columns)
        except psycopg.Error:
            continue
        for column, _ in columns:
            if reaches_above(t.where, column, t.names, lambda v, c=column: above[(c, v)]):
                found.append({"line": t.line, "kind": t.kind, "relation": str(t.table), "column": column})
    return found


def _above(conn: psycopg.Connection, t: Target, columns: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
    """(column, constant) -> is the constant above the copy's largest value (true when the copy has none)."""
    pairs = [(column, type_, value) for column, type_ in columns for value in t.constants[column]]
    if not pairs:
        return {}
    tests = sql.SQL(", ").join(
        sql.SQL("coalesce(max({c}) < CAST({v} AS {t}), true)").format(
            c=sql.Identifier(column), v=sql.Literal(value), t=sql.SQL(type_)) for column, type_, value in pairs)
    table = sql.Identifier(*[part for part in t.table if part])
    row = conn.execute(sql.SQL("SELECT {} FROM {}").format(tests, table)).fetchone()
    return {(column, value): bool(answer) for (column, _, value), answer in zip(pairs, row)}
