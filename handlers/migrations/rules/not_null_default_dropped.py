"""not-null-default-dropped: a new NOT NULL column loses its default in the same migration.

ORMs that keep defaults in code (Django's `default=`) add the column NOT NULL DEFAULT x to fill the
existing rows, then drop the default at once. The deployed code does not know the column yet: from
the moment the migration commits, each of its INSERTs that does not name the column fails.
"""
from ..nodes import TableName, alter_table_cmds, column_constraints, column_label, is_alter_table, table_of
from ..rule import WARNING, Rule

BAD = [
    'ALTER TABLE "Notes" ADD COLUMN "Priority" integer NOT NULL DEFAULT 0;\n'
    'ALTER TABLE "Notes" ALTER COLUMN "Priority" DROP DEFAULT;',
    'ALTER TABLE "Notes" ADD COLUMN "Priority" integer DEFAULT 0 NOT NULL, ALTER COLUMN "Priority" DROP DEFAULT;',
    'ALTER TABLE "Notes" ADD COLUMN "Priority" integer NOT NULL DEFAULT 0;\n'
    'ALTER TABLE "Notes" ALTER COLUMN "Priority" SET DEFAULT NULL;',
]
GOOD = [
    'ALTER TABLE "Notes" ADD COLUMN "Priority" integer NOT NULL DEFAULT 0;',
    'ALTER TABLE "Notes" ADD COLUMN "Priority" integer DEFAULT 0;\n'
    'ALTER TABLE "Notes" ALTER COLUMN "Priority" DROP DEFAULT;',
    'ALTER TABLE "Notes" ALTER COLUMN "Priority" DROP DEFAULT;',
    'CREATE TABLE t (id bigint);\nALTER TABLE t ADD COLUMN n int NOT NULL DEFAULT 0;\n'
    'ALTER TABLE t ALTER COLUMN n DROP DEFAULT;',
]


def check(ctx):
    added: dict[tuple[TableName, str], int] = {}  # NOT NULL DEFAULT columns this file added: line
    for stmt in ctx.statements:
        if stmt.kind != "AlterTableStmt" or not is_alter_table(stmt.node) or not stmt.node.get("cmds"):
            continue
        table = table_of(stmt.node["relation"])
        if ctx.created_before(table, stmt):
            continue
        for _, cmd in alter_table_cmds(stmt.node):
            subtype, key = cmd.get("subtype"), (table, cmd.get("name"))
            if subtype == "AT_AddColumn" and _not_null_with_default(cmd["def"]["ColumnDef"]):
                added[(table, cmd["def"]["ColumnDef"]["colname"])] = stmt.line
            elif subtype == "AT_ColumnDefault" and key in added and _no_default(cmd.get("def")):
                yield stmt, (f"drops the default of {column_label(*key)}, which line {added.pop(key)} added "
                             "NOT NULL with a default: from the moment this migration commits, every INSERT of "
                             "the deployed code that does not name the column fails")
            elif subtype in ("AT_DropNotNull", "AT_DropColumn", "AT_AlterColumnType"):
                added.pop(key, None)


def _not_null_with_default(coldef) -> bool:
    constraints = column_constraints(coldef)
    defaults = [c for c in constraints if c.get("contype") == "CONSTR_DEFAULT"]
    not_null = coldef.get("is_not_null") or any(c.get("contype") == "CONSTR_NOTNULL" for c in constraints)
    return bool(not_null and defaults and not _no_default(defaults[0].get("raw_expr")))


def _no_default(expr) -> bool:
    """DROP DEFAULT (no expression) or SET DEFAULT NULL."""
    return expr is None or bool(expr.get("A_Const", {}).get("isnull"))


RULE = Rule(
    code="not-null-default-dropped",
    severity=WARNING,
    summary="Dropping the default of a NOT NULL column the same migration adds breaks the deployed code's inserts.",
    hint="Keep the database default (Django 5+: db_default; django-pg-zero-downtime-migrations: "
         "ZERO_DOWNTIME_MIGRATIONS_KEEP_DEFAULT) until every deployed version writes the column; drop it, if at all, "
         "in a later migration.",
    check=check, on=(), bad=tuple(BAD), good=tuple(GOOD),
)
