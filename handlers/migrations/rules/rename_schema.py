"""rename-schema: renaming a schema breaks every deployed client that names its tables."""
from ..nodes import quote_ident
from ..rule import WARNING, Rule

BAD = [
    "ALTER SCHEMA billing RENAME TO invoicing;",
]
GOOD = [
    "CREATE SCHEMA staging;\nALTER SCHEMA staging RENAME TO import_2024;",
    'ALTER TABLE "Notes" RENAME TO "Memos";  -- rename-table, not this rule',
]


def check(stmt, ctx):
    node = stmt.node
    if node.get("renameType") != "OBJECT_SCHEMA":
        return
    created = {s.node.get("schemaname") for s in ctx.statements[:stmt.index]
               if s.kind == "CreateSchemaStmt" and not s.node.get("if_not_exists")}
    if node["subname"] not in created:
        yield (f"renames schema {quote_ident(node['subname'])} to {quote_ident(node['newname'])}: clients naming "
               "its tables (or relying on it in search_path) break")


RULE = Rule(
    code="rename-schema",
    severity=WARNING,
    summary="Renaming a schema is a breaking change for code that is already deployed.",
    hint="Expand/contract: create the new schema, move or mirror the objects (views in the old schema can stand "
         "in for moved tables), switch the code over, then drop the old schema in a later release.",
    check=check, on=("RenameStmt",), bad=tuple(BAD), good=tuple(GOOD),
)
