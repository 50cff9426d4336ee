"""drop-schema: DROP SCHEMA takes the schema's tables and their rows with it."""
from ..nodes import quote_ident, strings
from ..rule import FORBIDDEN, Rule

BAD = [
    "DROP SCHEMA reports;",
    "DROP SCHEMA IF EXISTS public CASCADE;",
]
GOOD = [
    "CREATE SCHEMA staging;\nDROP SCHEMA staging;",  # made by this file, and without CASCADE it must be empty
    'DROP VIEW "ActiveUsers";',
]


def check(stmt, ctx):
    if stmt.node.get("removeType") != "OBJECT_SCHEMA":
        return
    created = {s.node.get("schemaname") for s in ctx.statements[:stmt.index]
               if s.kind == "CreateSchemaStmt" and not s.node.get("if_not_exists")}
    for name in strings(stmt.node.get("objects")):
        if name not in created or stmt.node.get("behavior") == "DROP_CASCADE":
            yield f"drops schema {quote_ident(name)}: with CASCADE every table in it and their rows go too"


RULE = Rule(
    code="drop-schema",
    severity=FORBIDDEN,
    summary="DROP SCHEMA removes a namespace that can hold tables; with CASCADE it deletes them and their data.",
    hint="Drop the schema's objects one by one (each drop is checked), then the empty schema, with approval.",
    check=check, on=("DropStmt",), bad=tuple(BAD), good=tuple(GOOD),
)
