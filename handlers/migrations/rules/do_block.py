"""do-block: a DO block's statements are opaque to this check."""
from ..rule import FORBIDDEN, Rule

BAD = [
    "DO $$ BEGIN EXECUTE 'DROP TABLE \"Notes\"'; END $$;",
    "do LANGUAGE plpgsql $body$ BEGIN PERFORM 1; END $body$;",
]
GOOD = [
    'CREATE INDEX CONCURRENTLY "IX_Notes_Title" ON "Notes" ("Title");',
]


def check(stmt, ctx):
    yield "a DO block runs procedural code (including dynamic SQL) that this check cannot analyse"


RULE = Rule(
    code="do-block",
    severity=FORBIDDEN,
    summary="Statements inside DO blocks (and the dynamic SQL they EXECUTE) are not checked, so they need approval.",
    hint="Write the statements as plain SQL in the migration so they are checked; keep DO blocks for "
         "logic that really needs PL/pgSQL, and have them approved.",
    check=check, on=("DoStmt",), bad=tuple(BAD), good=tuple(GOOD),
)
