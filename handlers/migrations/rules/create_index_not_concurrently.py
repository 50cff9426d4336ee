"""create-index-not-concurrently: CREATE INDEX blocks writes to the table while it builds."""
from ..nodes import table_of
from ..rule import WARNING, Rule

BAD = [
    'CREATE INDEX "IX_Notes_Title" ON "Notes" ("Title");',
    'CREATE UNIQUE INDEX IF NOT EXISTS "IX_Users_DisplayName" ON "Users" ("DisplayName");',
]
GOOD = [
    'CREATE INDEX CONCURRENTLY "IX_Notes_Title" ON "Notes" ("Title");',
    'CREATE TABLE t (id bigint, name text);\nCREATE INDEX t_name ON t (name);',
]


def check(stmt, ctx):
    node = stmt.node
    table = table_of(node["relation"])
    if node.get("concurrent") or ctx.created_before(table, stmt):
        return
    name = node.get("idxname") or "an index"
    yield f"builds {name} on {table} without CONCURRENTLY: writes to {table} wait until the build ends (SHARE lock)"


RULE = Rule(
    code="create-index-not-concurrently",
    severity=WARNING,
    summary="A plain CREATE INDEX holds a SHARE lock for the whole build: inserts, updates and deletes wait.",
    hint="Use CREATE INDEX CONCURRENTLY (outside a transaction block); if it fails, DROP INDEX CONCURRENTLY "
         "the invalid index and retry.",
    check=check, on=("IndexStmt",), bad=tuple(BAD), good=tuple(GOOD),
)
