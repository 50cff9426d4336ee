"""set-not-null: SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock.

Not when the column is NOT NULL already, nor (PostgreSQL 12+) when a valid CHECK (col IS NOT NULL)
proves it: validated earlier in this file, or valid in the target database's catalog."""
from ..nodes import alter_table_cmds, column_label, is_alter_table, quote_ident, table_of
from ..rule import WARNING, Rule

BAD = [
    'ALTER TABLE "Users" ALTER COLUMN "DisplayName" SET NOT NULL;',
    # the check is still NOT VALID when SET NOT NULL runs: it proves nothing yet
    'ALTER TABLE "Users" ADD CONSTRAINT "CK_Users_DisplayName_NotNull" CHECK ("DisplayName" IS NOT NULL) NOT VALID;\n'
    'ALTER TABLE "Users" ALTER COLUMN "DisplayName" SET NOT NULL;',
    # a check on another column proves nothing about this one
    'ALTER TABLE "Users" VALIDATE CONSTRAINT "CK_Users_Email_NotNull";\n'
    'ALTER TABLE "Users" ALTER COLUMN "DisplayName" SET NOT NULL;',
]
GOOD = [
    'ALTER TABLE "Users" ADD CONSTRAINT "CK_Users_DisplayName_NotNull" CHECK ("DisplayName" IS NOT NULL) NOT VALID;',
    'ALTER TABLE "Users" ALTER COLUMN "DisplayName" DROP NOT NULL;',
    'CREATE TABLE t (a int);\nALTER TABLE t ALTER COLUMN a SET NOT NULL;',
    # validated before SET NOT NULL: no scan (validate-constraint-under-lock still warns that, in one
    # file, the VALIDATE runs under the ADD's lock)
    'ALTER TABLE "Users" ADD CONSTRAINT "CK_Users_DisplayName_NotNull" CHECK ("DisplayName" IS NOT NULL) NOT VALID;\n'
    'ALTER TABLE "Users" VALIDATE CONSTRAINT "CK_Users_DisplayName_NotNull";\n'
    'ALTER TABLE "Users" ALTER COLUMN "DisplayName" SET NOT NULL;\n'
    'ALTER TABLE "Users" DROP CONSTRAINT "CK_Users_DisplayName_NotNull";',
    'ALTER TABLE "Notes" ADD CONSTRAINT "CK_Notes_Title" CHECK ("Title" IS NOT NULL AND length("Title") > 0);\n'
    'ALTER TABLE "Notes" ALTER COLUMN "Title" SET NOT NULL;',
]

_PG12 = 120000  # the first major whose SET NOT NULL uses a valid CHECK instead of scanning


def check(stmt, ctx):
    if not is_alter_table(stmt.node) or ctx.created_before(table_of(stmt.node["relation"]), stmt):
        return
    for pos, cmd in alter_table_cmds(stmt.node):
        site = ctx.timeline.set_not_null.get((stmt.index, pos))
        if site is None or site.state == "not null":
            continue
        label = column_label(site.table, site.column)
        if site.state == "proven":
            if ctx.server_version is not None and ctx.server_version < _PG12:
                yield (f"sets {label} NOT NULL: the valid CHECK {quote_ident(site.check)} proves it, but PostgreSQL "
                       f"{ctx.server_version // 10000} still scans every row under an ACCESS EXCLUSIVE lock "
                       "(12 and later skip the scan)")
            continue
        why = (f"; CHECK {quote_ident(site.check)} would prove it, but it is not validated before this statement"
               if site.check else "")
        yield (f"sets {label} NOT NULL: scans every row under an ACCESS EXCLUSIVE lock (reads and writes wait), "
               f"and fails if any row is NULL{why}")


RULE = Rule(
    code="set-not-null",
    severity=WARNING,
    summary="SET NOT NULL checks every row while holding an ACCESS EXCLUSIVE lock, unless a valid CHECK proves it.",
    hint="1) ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID, 2) in a later migration VALIDATE CONSTRAINT c "
         "(no write lock), then SET NOT NULL (PostgreSQL 12+ uses the valid check and skips the scan) and "
         "DROP CONSTRAINT c.",
    check=check, on=("AlterTableStmt",), bad=tuple(BAD), good=tuple(GOOD),
    cmds=("AT_SetNotNull",),
)
