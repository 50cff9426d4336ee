"""rename-column: renaming a column breaks every deployed client that uses the old name."""
from ..nodes import column_label, quote_ident, table_of
from ..rule import WARNING, Rule

BAD = [
    'ALTER TABLE "Users" RENAME COLUMN "DisplayName" TO "FullName";',
    'ALTER TABLE "Users" RENAME "Username" TO "Handle";',
]
GOOD = [
    'ALTER TABLE "Users" RENAME TO "Accounts";',
    'CREATE TABLE t (a int);\nALTER TABLE t RENAME COLUMN a TO b;',
]


def check(stmt, ctx):
    node = stmt.node
    if node.get("renameType") != "OBJECT_COLUMN" or node.get("relationType") != "OBJECT_TABLE":
        return
    table = table_of(node["relation"])
    if not ctx.created_before(table, stmt):
        yield (f"renames {column_label(table, node['subname'])} to {quote_ident(node['newname'])}: "
               "clients using the old name break")


RULE = Rule(
    code="rename-column",
    severity=WARNING,
    summary="Renaming a column is a breaking change for code that is already deployed.",
    hint="Expand/contract: 1) add the new column, 2) write to both (trigger or app) and backfill the new one "
         "in batches, 3) switch reads to the new column, 4) stop writing the old one, 5) drop it in a later release.",
    check=check, on=("RenameStmt",), bad=tuple(BAD), good=tuple(GOOD),
)
