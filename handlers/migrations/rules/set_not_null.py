"""set-not-null: SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock."""
from ..nodes import column_label, existing_table_cmds
from ..rule import WARNING, Rule

BAD = [
    'ALTER TABLE "Users" ALTER COLUMN "DisplayName" SET NOT NULL;',
]
GOOD = [
    'ALTER TABLE "Users" ADD CONSTRAINT "CK_Users_DisplayName_NotNull" CHECK ("DisplayName" IS NOT NULL) NOT VALID;',
    'ALTER TABLE "Users" ALTER COLUMN "DisplayName" DROP NOT NULL;',
    'CREATE TABLE t (a int);\nALTER TABLE t ALTER COLUMN a SET NOT NULL;',
]


def check(stmt, ctx):
    for table, cmd in existing_table_cmds(stmt, ctx):
        if cmd.get("subtype") == "AT_SetNotNull":
            yield (f"sets {column_label(table, cmd['name'])} NOT NULL: scans every row under an ACCESS EXCLUSIVE "
                   "lock (reads and writes wait), and fails if any row is NULL")


RULE = Rule(
    code="set-not-null",
    severity=WARNING,
    summary="SET NOT NULL checks every row while holding an ACCESS EXCLUSIVE lock.",
    hint="1) ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID, 2) VALIDATE CONSTRAINT c (no write lock), "
         "3) SET NOT NULL (PostgreSQL 12+ uses the valid check and skips the scan), 4) DROP CONSTRAINT c.",
    check=check, on=("AlterTableStmt",), bad=tuple(BAD), good=tuple(GOOD),
    cmds=("AT_SetNotNull",),
)
