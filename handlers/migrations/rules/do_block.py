"""do-block: a DO block's statements are opaque to this check, unless it is exactly EF Core's
migration guard (efcore.py), which is analysed as the statements it guards."""
from ..efcore import guarded
from ..rule import FORBIDDEN, Rule

BAD = [
    "DO $$ BEGIN EXECUTE 'DROP TABLE \"Notes\"'; END $$;",
    "do LANGUAGE plpgsql $body$ BEGIN PERFORM 1; END $body$;",
    # almost EF Core's guard: dynamic SQL inside it
    "DO $EF$\nBEGIN\n    IF NOT EXISTS(SELECT 1 FROM \"__EFMigrationsHistory\" WHERE \"MigrationId\" = "
    "'20261202120000_AddNoteColor') THEN\n    EXECUTE 'ALTER TABLE \"Notes\" DROP COLUMN \"Content\"';\n"
    "    END IF;\nEND $EF$;",
]
GOOD = [
    'CREATE INDEX CONCURRENTLY "IX_Notes_Title" ON "Notes" ("Title");',
    # EF Core's idempotent script: the guarded statement is what the rules look at
    "DO $EF$\nBEGIN\n    IF NOT EXISTS(SELECT 1 FROM \"__EFMigrationsHistory\" WHERE \"MigrationId\" = "
    "'20261202120000_AddNoteColor') THEN\n    ALTER TABLE \"Notes\" ADD \"Color\" text;\n    END IF;\nEND $EF$;",
]


def check(stmt, ctx):
    why = guarded(stmt)  # EF Core's guard blocks reach the rules as the statements they guard
    detail = f" (it is not EF Core's migration guard: {why})" if isinstance(why, str) else ""
    yield "a DO block runs procedural code (including dynamic SQL) that this check cannot analyse" + detail


RULE = Rule(
    code="do-block",
    severity=FORBIDDEN,
    summary="Statements inside DO blocks (and the dynamic SQL they EXECUTE) are not checked, so they need approval "
            "(EF Core's migration guard blocks are checked as the statements they guard).",
    hint="Write the statements as plain SQL in the migration so they are checked; keep DO blocks for "
         "logic that really needs PL/pgSQL, and have them approved.",
    check=check, on=("DoStmt",), bad=tuple(BAD), good=tuple(GOOD),
)
