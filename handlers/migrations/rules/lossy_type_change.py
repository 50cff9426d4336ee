"""lossy-type-change: ALTER COLUMN TYPE that changes or loses values (see type_table.py)."""
from ..rule import FORBIDDEN, Rule
from .type_table import Change

# Examples declare the old type in the same file (no database is given to the examples).
BAD = [
    'CREATE TABLE p (budget numeric(12,2));\nALTER TABLE p ALTER COLUMN budget TYPE numeric(12,1);',
    'CREATE TABLE a (ip inet);\nALTER TABLE a ALTER COLUMN ip TYPE cidr;',
    'CREATE TABLE a (details json);\nALTER TABLE a ALTER COLUMN details TYPE jsonb;',
    'CREATE TABLE e (at timestamptz);\nALTER TABLE e ALTER COLUMN at TYPE date;',
    'CREATE TABLE e (at timestamp(6));\nALTER TABLE e ALTER COLUMN at TYPE timestamp(0);',
    'CREATE TABLE e (took interval);\nALTER TABLE e ALTER COLUMN took TYPE interval(3);',
    'CREATE TABLE e (took interval);\nALTER TABLE e ALTER COLUMN took TYPE interval day;',
    'CREATE TABLE u (name text);\nALTER TABLE u ALTER COLUMN name TYPE char(20);',
    'CREATE TABLE u (n bigint);\nALTER TABLE u ALTER COLUMN n TYPE double precision;',
    'CREATE TABLE u (email varchar(256));\nALTER TABLE u ALTER COLUMN email TYPE varchar(256) USING lower(email);',
    'ALTER TABLE "Users" ALTER COLUMN "Email" TYPE text;  -- old type unknown without a database',
    # added in this file, but rows hold values by the time of the change: a default, an UPDATE
    'ALTER TABLE "Projects" ADD COLUMN "Rate" numeric(12,2) DEFAULT 1.25;\n'
    'ALTER TABLE "Projects" ALTER COLUMN "Rate" TYPE numeric(12,1);',
    'ALTER TABLE "Projects" ADD COLUMN "Rate" numeric(12,2);\n'
    'UPDATE "Projects" SET "Rate" = "Budget" / 100 WHERE "Id" > 0;\n'
    'ALTER TABLE "Projects" ALTER COLUMN "Rate" TYPE numeric(12,1);',
]
GOOD = [
    'CREATE TABLE u (email varchar(64));\nALTER TABLE u ALTER COLUMN email TYPE varchar(256);',
    'CREATE TABLE u (n integer);\nALTER TABLE u ALTER COLUMN n TYPE bigint USING n::bigint;',
    'CREATE TABLE a (ip cidr);\nALTER TABLE a ALTER COLUMN ip TYPE inet;',
    'CREATE TABLE p (budget numeric(12,2));\nALTER TABLE p ALTER COLUMN budget TYPE numeric(16,2);',
    # a column this file added is still all NULL: nothing to lose (table-rewrite warns about the rewrite)
    'ALTER TABLE "Projects" ADD COLUMN "Rate" numeric(12,2);\n'
    'ALTER TABLE "Projects" ALTER COLUMN "Rate" TYPE numeric(12,1);',
    'ALTER TABLE "Users" ADD COLUMN "Seen" timestamptz;\nALTER TABLE "Users" ALTER COLUMN "Seen" TYPE date;',
]


def check(stmt, ctx):
    for change in ctx.type_changes_of(stmt):
        if change.change in (Change.LOSSY, Change.UNKNOWN):
            yield change.describe()


RULE = Rule(
    code="lossy-type-change",
    severity=FORBIDDEN,
    summary="Changing a column's type so that values are rounded, truncated or otherwise altered loses data.",
    hint="Expand/contract: add a new column of the new type, backfill it in batches (checking every "
         "value converts as intended), switch the code to it, then drop the old column with approval.",
    check=check, on=("AlterTableStmt",), bad=tuple(BAD), good=tuple(GOOD),
    cmds=("AT_AlterColumnType",),
)
