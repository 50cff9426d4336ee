"""constraint-not-valid-missing: FOREIGN KEY / CHECK added and validated in one locking step."""
from ..nodes import added_constraints
from ..rule import WARNING, Rule

BAD = [
    'ALTER TABLE "Notes" ADD CONSTRAINT "FK_Notes_Projects_ProjectId" FOREIGN KEY ("ProjectId")'
    ' REFERENCES "Projects" ("Id");',
    'ALTER TABLE "Projects" ADD CONSTRAINT "CK_Projects_Budget" CHECK ("Budget" >= 0);',
    'ALTER TABLE "Notes" ADD COLUMN "ProjectId" bigint REFERENCES "Projects" ("Id");',
]
GOOD = [
    'ALTER TABLE "Notes" ADD CONSTRAINT "FK_Notes_Projects_ProjectId" FOREIGN KEY ("ProjectId")'
    ' REFERENCES "Projects" ("Id") NOT VALID;',
    'ALTER TABLE "Notes" VALIDATE CONSTRAINT "FK_Notes_Projects_ProjectId";',
    'CREATE TABLE t (id bigint, n int);\nALTER TABLE t ADD CONSTRAINT t_n CHECK (n > 0);',
]

_KINDS = {"CONSTR_FOREIGN": "FOREIGN KEY", "CONSTR_CHECK": "CHECK"}


def check(stmt, ctx):
    for table, constraint in added_constraints(stmt, ctx):
        kind = _KINDS.get(constraint.get("contype"))
        if kind and not constraint.get("skip_validation"):
            name = constraint.get("conname") or "a constraint"
            yield (f"adds {kind} {name} on {table} without NOT VALID: every row is checked while "
                   f"writes{' to both tables' if kind == 'FOREIGN KEY' else ''} are blocked")


RULE = Rule(
    code="constraint-not-valid-missing",
    severity=WARNING,
    summary="Adding a FOREIGN KEY or CHECK constraint validates all rows while holding a lock that blocks writes.",
    hint="Add it with NOT VALID (instant; new rows are checked), then run ALTER TABLE ... VALIDATE CONSTRAINT "
         "in a later migration: on its own it does not block writes (dbops applies a migration as one "
         "transaction, so in the same file it would scan under the ADD's lock).",
    check=check, on=("AlterTableStmt",), bad=tuple(BAD), good=tuple(GOOD),
    cmds=("AT_AddConstraint", "AT_AddColumn"),
)
