"""unique-constraint-without-index: ADD UNIQUE / PRIMARY KEY builds its index under an ACCESS EXCLUSIVE lock."""
from ..nodes import alter_table_cmds, column_constraints, is_alter_table, table_of
from ..rule import WARNING, Rule

BAD = [
    'ALTER TABLE "Users" ADD CONSTRAINT "UQ_Users_DisplayName" UNIQUE ("DisplayName");',
    'ALTER TABLE "ExternalLogins" ADD PRIMARY KEY ("Id");',
    'ALTER TABLE "Notes" ADD COLUMN "Slug" text UNIQUE;',
]
GOOD = [
    'CREATE UNIQUE INDEX CONCURRENTLY "IX_Users_DisplayName" ON "Users" ("DisplayName");\n'
    'ALTER TABLE "Users" ADD CONSTRAINT "UQ_Users_DisplayName" UNIQUE USING INDEX "IX_Users_DisplayName";',
    'CREATE TABLE t (id bigint);\nALTER TABLE t ADD PRIMARY KEY (id);',
]

_KINDS = {"CONSTR_UNIQUE": "UNIQUE", "CONSTR_PRIMARY": "PRIMARY KEY"}


def check(stmt, ctx):
    if not is_alter_table(stmt.node):
        return
    table = table_of(stmt.node["relation"])
    if ctx.created_before(table, stmt):
        return
    for _, cmd in alter_table_cmds(stmt.node):
        subtype = cmd.get("subtype")
        if subtype == "AT_AddConstraint":
            constraints = [cmd["def"]["Constraint"]] if "Constraint" in cmd.get("def", {}) else []
        elif subtype == "AT_AddColumn":
            constraints = column_constraints(cmd["def"]["ColumnDef"])
        else:
            continue
        for constraint in constraints:
            kind = _KINDS.get(constraint.get("contype"))
            if kind and not constraint.get("indexname"):
                name = constraint.get("conname") or "a constraint"
                yield (f"adds {kind} {name} on {table}, building its index under an ACCESS EXCLUSIVE lock "
                       "(reads and writes wait)")


RULE = Rule(
    code="unique-constraint-without-index",
    severity=WARNING,
    summary="ADD UNIQUE / PRIMARY KEY without USING INDEX builds the index while reads and writes wait.",
    hint="CREATE UNIQUE INDEX CONCURRENTLY first, then ALTER TABLE ... ADD CONSTRAINT name "
         "UNIQUE (or PRIMARY KEY) USING INDEX index_name, which is instant.",
    check=check, on=("AlterTableStmt",), bad=tuple(BAD), good=tuple(GOOD),
    cmds=("AT_AddConstraint", "AT_AddColumn"),
)
