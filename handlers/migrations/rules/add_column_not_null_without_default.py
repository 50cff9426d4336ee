"""add-column-not-null-without-default: fails on any table that already has rows."""
from ..nodes import column_constraints, column_label, existing_table_cmds
from ..rule import WARNING, Rule

BAD = [
    'ALTER TABLE "Notes" ADD COLUMN "Slug" text NOT NULL;',
    'ALTER TABLE "Notes" ADD COLUMN "Key" bigint PRIMARY KEY;',
]
GOOD = [
    'ALTER TABLE "Notes" ADD COLUMN "Slug" text NOT NULL DEFAULT \'\';',
    'ALTER TABLE "Notes" ADD COLUMN "Slug" text;',
    'CREATE TABLE t (id bigint);\nALTER TABLE t ADD COLUMN name text NOT NULL;',
    'ALTER TABLE "Notes" ADD COLUMN "Seq" bigint NOT NULL GENERATED ALWAYS AS IDENTITY;',
]

# Constraints that give every existing row a value, so NOT NULL holds at once.
_FILLS_ROWS = {"CONSTR_DEFAULT", "CONSTR_IDENTITY", "CONSTR_GENERATED"}


def check(stmt, ctx):
    for table, cmd in existing_table_cmds(stmt, ctx):
        if cmd.get("subtype") != "AT_AddColumn":
            continue
        coldef = cmd["def"]["ColumnDef"]
        contypes = {c.get("contype") for c in column_constraints(coldef)}
        not_null = coldef.get("is_not_null") or contypes & {"CONSTR_NOTNULL", "CONSTR_PRIMARY"}
        if not_null and not contypes & _FILLS_ROWS:
            yield (f"adds {column_label(table, coldef['colname'])} NOT NULL without a DEFAULT: "
                   f"it fails if {table} has any row")


RULE = Rule(
    code="add-column-not-null-without-default",
    severity=WARNING,
    summary="A new NOT NULL column without a default cannot be added to a table that has rows.",
    hint="Add it with a constant DEFAULT (no rewrite since PostgreSQL 11), or add it nullable, backfill "
         "it in batches, then add CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, and SET NOT NULL.",
    check=check, on=("AlterTableStmt",), bad=tuple(BAD), good=tuple(GOOD),
    cmds=("AT_AddColumn",),
)
