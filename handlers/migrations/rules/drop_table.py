"""drop-table: DROP TABLE deletes the table and every row in it."""
from ..nodes import table_of_names
from ..rule import FORBIDDEN, WARNING, Hit, Rule

BAD = [
    'DROP TABLE "Notes";',
    'DROP TABLE IF EXISTS "Boards", "IndexCards" CASCADE;',
]
GOOD = [
    'DROP INDEX CONCURRENTLY IF EXISTS "IX_Notes_UserId";',
    'DROP VIEW "ActiveUsers";',
]


def check(stmt, ctx):
    if stmt.node.get("removeType") != "OBJECT_TABLE":
        return
    for names in stmt.node.get("objects", ()):
        table = table_of_names(names["List"]["items"])
        if ctx.created_before(table, stmt):
            yield Hit(f"drops {table}, which this file created earlier: no existing data is lost", WARNING)
        else:
            yield f"drops {table} with all its rows; clients still using it break"


RULE = Rule(
    code="drop-table",
    severity=FORBIDDEN,
    summary="DROP TABLE deletes a table and its data; it cannot be undone by a DOWN migration.",
    hint="Contract step only: first deploy code that no longer reads or writes the table, keep a "
         "backup (`/db backup`), rename it (e.g. to <name>_deprecated) for a release, then drop it with approval.",
    check=check, on=("DropStmt",), bad=tuple(BAD), good=tuple(GOOD),
)
