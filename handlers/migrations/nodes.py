"""Small readers over libpg_query's JSON parse tree (see parsing.py for why dicts)."""
from __future__ import annotations

import re
from typing import Any, Iterator, NamedTuple

from pglast.keywords import COL_NAME_KEYWORDS, RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS

Node = dict[str, Any]

_BARE = re.compile(r"[a-z_][a-z0-9_$]*\Z")  # identifier display only, not SQL analysis
_NEEDS_QUOTES = RESERVED_KEYWORDS | TYPE_FUNC_NAME_KEYWORDS | COL_NAME_KEYWORDS


def quote_ident(name: str) -> str:
    if _BARE.match(name) and name not in _NEEDS_QUOTES:
        return name
    return '"' + name.replace('"', '""') + '"'


class TableName(NamedTuple):
    """A table as the migration names it. "public" counts as unqualified (the default search_path)."""

    schema: str | None
    name: str

    def __str__(self) -> str:
        if self.schema:
            return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"
        return quote_ident(self.name)


def table_of(range_var: Node) -> TableName:
    schema = range_var.get("schemaname")
    return TableName(None if schema in (None, "public") else schema, range_var["relname"])


def table_of_names(names: list[Node]) -> TableName:
    """DROP TABLE's objects are name lists: [schema,] table."""
    parts = strings(names)
    if len(parts) == 1:
        return TableName(None, parts[0])
    schema = parts[-2]
    return TableName(None if schema == "public" else schema, parts[-1])


def column_label(table: TableName, column: str) -> str:
    return f"{table}.{quote_ident(column)}"


def strings(items: list[Node] | None) -> list[str]:
    return [item["String"]["sval"] for item in items or () if "String" in item]


def const_value(node: Node | None) -> Any:
    """The Python value of an A_Const (defaults are omitted in the JSON: `"ival": {}` is 0)."""
    if not node or "A_Const" not in node:
        return None
    const = node["A_Const"]
    if "ival" in const:
        return const["ival"].get("ival", 0)
    if "sval" in const:
        return const["sval"].get("sval", "")
    if "fval" in const:
        return const["fval"].get("fval", "0")
    if "boolval" in const:
        return const["boolval"].get("boolval", False)
    return None


def alter_table_cmds(node: Node) -> Iterator[tuple[int, Node]]:
    """(position, AlterTableCmd) pairs of an AlterTableStmt."""
    for i, cmd in enumerate(node.get("cmds", ())):
        if "AlterTableCmd" in cmd:
            yield i, cmd["AlterTableCmd"]


def column_constraints(column_def: Node) -> list[Node]:
    return [c["Constraint"] for c in column_def.get("constraints", ()) if "Constraint" in c]


def is_column_ref(node: Node | None, column: str) -> bool:
    if not node or "ColumnRef" not in node:
        return False
    fields = strings(node["ColumnRef"].get("fields"))
    return bool(fields) and fields[-1] == column


def not_null_columns(expr: Node | None) -> frozenset[str]:
    """Columns a CHECK expression proves NOT NULL: `col IS NOT NULL`, alone or ANDed with other
    conditions. (PostgreSQL 12+ skips SET NOT NULL's scan when a valid check proves it; a check
    such as `col > 0` does not, since a NULL passes it.)"""
    if not expr:
        return frozenset()
    if "NullTest" in expr:
        test = expr["NullTest"]
        arg = test.get("arg") or {}
        fields = strings(arg.get("ColumnRef", {}).get("fields")) if "ColumnRef" in arg else []
        return frozenset(fields[-1:]) if test.get("nulltesttype") == "IS_NOT_NULL" else frozenset()
    if "BoolExpr" in expr and expr["BoolExpr"].get("boolop") == "AND_EXPR":
        return frozenset().union(*(not_null_columns(arg) for arg in expr["BoolExpr"].get("args", ())))
    return frozenset()


def is_alter_table(node: Node) -> bool:
    """An ALTER TABLE on a table (not ALTER INDEX / VIEW / SEQUENCE, which share the node kind)."""
    return node.get("objtype", "OBJECT_TABLE") == "OBJECT_TABLE" and "relation" in node


def existing_table_cmds(stmt, ctx) -> Iterator[tuple[TableName, dict]]:
    """(table, command) for each ALTER TABLE command on a table that existed before this file:
    a table the file creates itself has no rows and no readers to lock out."""
    if not is_alter_table(stmt.node):
        return
    table = table_of(stmt.node["relation"])
    if ctx.created_before(table, stmt):
        return
    for _, cmd in alter_table_cmds(stmt.node):
        yield table, cmd


def added_constraints(stmt, ctx) -> Iterator[tuple[TableName, dict]]:
    """(table, Constraint node) for each constraint an ALTER TABLE adds to an existing table
    (ADD CONSTRAINT, or inline on ADD COLUMN)."""
    for table, cmd in existing_table_cmds(stmt, ctx):
        subtype = cmd.get("subtype")
        if subtype == "AT_AddConstraint":
            constraints = [cmd["def"]["Constraint"]] if "Constraint" in cmd.get("def", {}) else []
        elif subtype == "AT_AddColumn":
            constraints = column_constraints(cmd["def"]["ColumnDef"])
        else:
            continue
        for constraint in constraints:
            yield table, constraint


def find_nodes(tree: Any, kinds: frozenset[str]) -> list[tuple[str, Node]]:
    """Every (kind, fields) node of the given kinds anywhere under `tree`, however deeply nested
    (in CTEs, subqueries, EXPLAIN, rule actions, defaults, ...). Node kinds are the CamelCase keys
    of the JSON tree; field names are lower case."""
    found: list[tuple[str, Node]] = []
    stack = [tree]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        item = pop()
        if type(item) is dict:
            for key, value in item.items():
                kind = type(value)
                if kind is dict:
                    if key in kinds:
                        found.append((key, value))
                    push(value)
                elif kind is list:
                    extend(value)
        elif type(item) is list:
            extend(item)
    return found


DATA_CHANGES = frozenset({"DeleteStmt", "UpdateStmt", "InsertStmt", "MergeStmt"})
# Statement kinds that are, or can hold, a row-changing statement: in a WITH clause, as
# EXPLAIN ANALYZE's or PREPARE's query, as a rule's action, or as COPY's (... RETURNING) query.
MAY_CHANGE_ROWS = ("DeleteStmt", "UpdateStmt", "InsertStmt", "MergeStmt", "SelectStmt", "ExplainStmt",
                   "PrepareStmt", "RuleStmt", "CreateTableAsStmt", "DeclareCursorStmt", "CopyStmt")


def data_changes(kind: str, node: Node) -> list[tuple[str, Node]]:
    """The statement itself if it changes rows, and every row-changing statement nested in it
    (WITH clauses, EXPLAIN ANALYZE, PREPARE, rule actions): what the rehearsal must judge by
    the rows it touches, too."""
    return find_nodes({kind: node}, DATA_CHANGES)


def function_name(call: Node) -> tuple[str | None, str]:
    """(schema, name) a FuncCall names; schema None when unqualified. pg_catalog counts as
    unqualified: it is searched first anyway."""
    names = strings(call.get("funcname"))
    schema = names[-2] if len(names) > 1 else None
    return (None if schema == "pg_catalog" else schema), (names[-1] if names else "")


def same_expression(a: Any, b: Any) -> bool:
    """Do two expression trees spell the same thing (source positions aside)?"""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = {k for k in a if k != "location"}
        return keys == {k for k in b if k != "location"} and all(same_expression(a[k], b[k]) for k in keys)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_expression(x, y) for x, y in zip(a, b))
    return a == b
