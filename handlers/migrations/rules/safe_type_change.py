"""safe-type-change: a lossless ALTER COLUMN TYPE that needs no table rewrite, or does not change
the type at all (information only)."""
from ..rule import INFO, Rule
from .type_table import Change

BAD = [
    'CREATE TABLE u (email varchar(64));\nALTER TABLE u ALTER COLUMN email TYPE varchar(256);',
    'CREATE TABLE u (email varchar(64));\nALTER TABLE u ALTER COLUMN email TYPE text;',
    'CREATE TABLE p (budget numeric(12,2));\nALTER TABLE p ALTER COLUMN budget TYPE numeric(16,2);',
    'CREATE TABLE e (at timestamp(0));\nALTER TABLE e ALTER COLUMN at TYPE timestamp(3);',
    'CREATE TABLE a (ip cidr);\nALTER TABLE a ALTER COLUMN ip TYPE inet;',
    'CREATE TABLE u (email varchar(256));\nALTER TABLE u ALTER COLUMN email TYPE varchar(256);',  # no change
]
GOOD = [
    'CREATE TABLE n (id integer);\nALTER TABLE n ALTER COLUMN id TYPE bigint;',
    'CREATE TABLE u (email varchar(256));\nALTER TABLE u ALTER COLUMN email TYPE varchar(64);',
]


def check(stmt, ctx):
    for change in ctx.type_changes_of(stmt):
        if change.change in (Change.SAFE, Change.SAME):
            yield change.describe()


RULE = Rule(
    code="safe-type-change",
    severity=INFO,
    summary="A lossless type change that only updates the catalog.",
    hint="Nothing to fix; it still takes a brief ACCESS EXCLUSIVE lock, so set lock_timeout first.",
    check=check, on=("AlterTableStmt",), bad=tuple(BAD), good=tuple(GOOD),
    cmds=("AT_AlterColumnType",),
)
