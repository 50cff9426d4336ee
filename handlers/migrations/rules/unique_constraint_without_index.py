"""unique-constraint-without-index: ADD UNIQUE / PRIMARY KEY builds its index under an ACCESS EXCLUSIVE lock."""
from ..nodes import added_constraints
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
    for table, constraint in added_constraints(stmt, ctx):
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
