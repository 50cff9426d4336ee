"""rename-table: renaming a table (or moving it to another schema) breaks every deployed client that
uses the old name."""
from ..nodes import quote_ident, table_of
from ..rule import WARNING, Rule

BAD = [
    'ALTER TABLE "Notes" RENAME TO "Memos";',
    'ALTER TABLE IF EXISTS "IndexCards" RENAME TO "Flashcards";',
    'ALTER TABLE "Notes" SET SCHEMA archive;',
]
GOOD = [
    'ALTER TABLE "Notes" RENAME COLUMN "Title" TO "Heading";',
    'CREATE TABLE tmp_import (id bigint);\nALTER TABLE tmp_import RENAME TO import_2024;',
    'ALTER INDEX "IX_Notes_UserId" RENAME TO "IX_Notes_Owner";',
]


def check(stmt, ctx):
    node = stmt.node
    if "relation" not in node:
        return
    table = table_of(node["relation"])
    if ctx.created_before(table, stmt):
        return
    if stmt.kind == "AlterObjectSchemaStmt":
        if node.get("objectType") == "OBJECT_TABLE":
            yield f"moves {table} to schema {quote_ident(node['newschema'])}: clients using the old name break"
    elif node.get("renameType") == "OBJECT_TABLE":
        yield f"renames {table} to {quote_ident(node['newname'])}: clients using the old name break"


RULE = Rule(
    code="rename-table",
    severity=WARNING,
    summary="Renaming a table, or moving it to another schema, is a breaking change for code that is already deployed.",
    hint="Expand/contract: 1) rename the table and in the same transaction CREATE VIEW <old name> AS "
         "SELECT * FROM <new name> (a simple view stays writable), 2) deploy code using the new name, "
         "3) drop the view in a later release once nothing uses the old name.",
    check=check, on=("RenameStmt", "AlterObjectSchemaStmt"), bad=tuple(BAD), good=tuple(GOOD),
)
