"""add-json-column: a json column added to a table that running queries read whole rows of.

json has no equality operator, so once the column exists, deployed queries that compare whole rows
(SELECT DISTINCT *, UNION, GROUP BY every column, as some ORMs emit) fail with "could not identify an
equality operator for type json". jsonb has one (and is what json is usually meant to be).
"""
from ..nodes import column_label, existing_table_cmds, strings
from ..rule import WARNING, Rule

BAD = [
    'ALTER TABLE "Notes" ADD COLUMN "Properties" json;',
    'ALTER TABLE "Notes" ADD COLUMN "History" json[] DEFAULT \'{}\';',
]
GOOD = [
    'ALTER TABLE "Notes" ADD COLUMN "Properties" jsonb;',
    'CREATE TABLE events (id bigint, payload json);\nALTER TABLE events ADD COLUMN extra json;',
]


def check(stmt, ctx):
    for table, cmd in existing_table_cmds(stmt, ctx):
        if cmd.get("subtype") == "AT_AddColumn":
            coldef = cmd["def"]["ColumnDef"]
            if strings(coldef["typeName"].get("names"))[-1:] == ["json"]:
                yield (f"adds {column_label(table, coldef['colname'])} as json, which has no equality operator: "
                       f"deployed queries comparing whole rows of {table} (SELECT DISTINCT *, UNION) start failing")


RULE = Rule(
    code="add-json-column",
    severity=WARNING,
    summary="A json column breaks running queries that compare whole rows: json has no equality operator.",
    hint="Use jsonb: it has equality and indexing (unlike json it does not keep key order, duplicate keys or "
         "whitespace, which applications rarely rely on).",
    check=check, on=("AlterTableStmt",), bad=tuple(BAD), good=tuple(GOOD),
    cmds=("AT_AddColumn",),
)
