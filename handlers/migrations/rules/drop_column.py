"""drop-column: dropping a column that holds data loses that data."""
from ..nodes import alter_table_cmds, column_label, is_alter_table, table_of
from ..rule import FORBIDDEN, WARNING, Hit, Rule

BAD = [
    'ALTER TABLE "Users" DROP COLUMN "DisplayName";',
    'ALTER TABLE "Notes" DROP COLUMN IF EXISTS "IsPinned" CASCADE;',
    # added earlier in this file and still all NULL: reported as a warning only
    'ALTER TABLE "Users" ADD COLUMN "Nickname" text;\nALTER TABLE "Users" DROP COLUMN "Nickname";',
]
GOOD = [
    'ALTER TABLE "Users" ADD COLUMN "Nickname" text;',
    'ALTER TABLE "Users" DROP CONSTRAINT "CK_Users_Email";',
]


def check(stmt, ctx):
    if not is_alter_table(stmt.node):
        return
    table = table_of(stmt.node["relation"])
    for pos, cmd in alter_table_cmds(stmt.node):
        if cmd.get("subtype") != "AT_DropColumn":
            continue
        label = column_label(table, cmd["name"])
        dropped = ctx.dropped_column(stmt, pos)
        if ctx.created_before(table, stmt):
            yield Hit(f"drops {label} of a table this file created: no existing data is lost", WARNING)
        elif dropped.site.empty:
            yield Hit(f"drops {label}, which this file added earlier and which holds only NULLs: no existing "
                      "data is lost", WARNING)
        elif dropped.site.added_by_up:
            yield Hit(f"drops {label}, which UP added: only what was written to it since UP is lost", WARNING)
        elif dropped.has_data is False:
            yield Hit(f"drops {label}, which is empty (every row is NULL) in the target database", WARNING,
                      "Make sure no deployed code still reads or writes the column before dropping it.")
        elif dropped.has_data:
            yield f"drops {label}, which holds data in the target database"
        elif ctx.has_database and table in ctx.catalog_tables:
            yield f"drops {label}, which is not in the target database to check: assumed to hold data"
        else:
            yield f"drops {label}: assumed to hold data (no database given to check)"


RULE = Rule(
    code="drop-column",
    severity=FORBIDDEN,
    summary="Dropping a column deletes its data and breaks clients that still use it.",
    hint="Expand/contract: deploy code that stops using the column, copy its data elsewhere if it is "
         "still needed, then drop it in a later release with approval.",
    check=check, on=("AlterTableStmt",), bad=tuple(BAD), good=tuple(GOOD),
    cmds=("AT_DropColumn",),
)
