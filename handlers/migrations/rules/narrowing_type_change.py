"""narrowing-type-change: ALTER COLUMN TYPE to a narrower type fails on values that don't fit."""
from ... import fmt
from ..rule import FORBIDDEN, WARNING, Hit, Rule
from .type_table import Change

BAD = [
    'CREATE TABLE u (email varchar(256));\nALTER TABLE u ALTER COLUMN email TYPE varchar(64);',
    'CREATE TABLE n (id bigint);\nALTER TABLE n ALTER COLUMN id TYPE integer;',
    'CREATE TABLE p (budget numeric(12,2));\nALTER TABLE p ALTER COLUMN budget TYPE numeric(8,2);',
    'CREATE TABLE t (token text);\nALTER TABLE t ALTER COLUMN token TYPE varchar(64);',
]
GOOD = [
    'CREATE TABLE u (email varchar(64));\nALTER TABLE u ALTER COLUMN email TYPE varchar(256);',
    'CREATE TABLE n (id integer);\nALTER TABLE n ALTER COLUMN id TYPE bigint;',
    'CREATE TABLE p (budget numeric(12,2));\nALTER TABLE p ALTER COLUMN budget TYPE numeric(14,2);',
]


def check(stmt, ctx):
    for change in ctx.type_changes_of(stmt):
        if change.change is not Change.NARROWING:
            continue
        rows = change.misfit_rows
        if rows is None and not ctx.has_database:
            yield f"{change.describe()}; rows were not counted (no database given)"
        elif rows is None:
            yield (f"{change.describe()}; rows were not counted: the column is not in the target database "
                   "as it is, or an earlier statement of this file changes it")
        elif rows:
            yield (f"{change.describe()}; {fmt.plural(rows, 'row')} in the target database "
                   f"{'does' if rows == 1 else 'do'} not fit")
        else:
            yield Hit(f"{change.describe()}; every row in the target database fits (0 rows do not fit), "
                      "but it scans the table under an ACCESS EXCLUSIVE lock", WARNING)


RULE = Rule(
    code="narrowing-type-change",
    severity=FORBIDDEN,
    summary="Narrowing a column's type fails the migration (or, elsewhere, rejects writes) when values don't fit.",
    hint="Fix or remove the values that do not fit first; better, add a CHECK constraint NOT VALID "
         "enforcing the new limit, VALIDATE it, and only then change the type.",
    check=check, on=("AlterTableStmt",), bad=tuple(BAD), good=tuple(GOOD),
    cmds=("AT_AlterColumnType",),
)
