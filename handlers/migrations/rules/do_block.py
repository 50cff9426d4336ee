"""do-block: a DO block's statements are opaque to this check."""
from ..rule import WARNING, Rule

BAD = [
    "DO $$ BEGIN EXECUTE 'DROP TABLE \"Notes\"'; END $$;",
]
GOOD = [
    'CREATE INDEX CONCURRENTLY "IX_Notes_Title" ON "Notes" ("Title");',
]


def check(stmt, ctx):
    yield "a DO block runs procedural code that this check cannot analyse: a person must review it"


RULE = Rule(
    code="do-block",
    severity=WARNING,
    summary="Statements inside DO blocks (and dynamic SQL) are not checked.",
    hint="Write the statements as plain SQL in the migration so they are checked; keep DO blocks for "
         "logic that really needs PL/pgSQL, and have them reviewed.",
    check=check, on=("DoStmt",), bad=tuple(BAD), good=tuple(GOOD),
)
