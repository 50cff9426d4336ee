"""rename-enum-value: renaming an enum value breaks every deployed client that reads or writes the old one."""
from ..nodes import quote_ident, strings
from ..rule import WARNING, Rule

BAD = [
    "ALTER TYPE note_status RENAME VALUE 'done' TO 'completed';",
]
GOOD = [
    "ALTER TYPE note_status ADD VALUE 'completed' AFTER 'done';",
    "CREATE TYPE mood AS ENUM ('ok', 'meh');\nALTER TYPE mood RENAME VALUE 'meh' TO 'so-so';",
]


def check(stmt, ctx):
    node = stmt.node
    if not node.get("oldVal"):
        return
    names = strings(node.get("typeName"))
    created = {".".join(strings(s.node.get("typeName"))) for s in ctx.statements[:stmt.index]
               if s.kind == "CreateEnumStmt"}
    if ".".join(names) not in created:
        enum = ".".join(quote_ident(n) for n in names)
        yield (f"renames value '{node['oldVal']}' of enum {enum} to '{node['newVal']}': deployed code writing or "
               f"comparing '{node['oldVal']}' breaks")


RULE = Rule(
    code="rename-enum-value",
    severity=WARNING,
    summary="Renaming an enum value is a breaking change for code that is already deployed.",
    hint="Expand/contract: 1) ADD VALUE the new name (BEFORE or AFTER the old one), 2) deploy code that accepts "
         "both and writes the new one, 3) backfill rows from the old value to the new one in batches; the old "
         "value cannot be removed without recreating the type.",
    check=check, on=("AlterEnumStmt",), bad=tuple(BAD), good=tuple(GOOD),
)
