"""update-without-where: UPDATE without a WHERE clause rewrites every row."""
from ..nodes import matches_every_row, table_of, with_queries
from ..rule import FORBIDDEN, Rule

BAD = [
    'UPDATE "Users" SET "EmailConfirmed" = true;',
    'UPDATE "Users" SET "DisplayName" = NULL WHERE true;',
    'WITH u AS (UPDATE "Notes" SET "IsPinned" = false RETURNING 1) SELECT count(*) FROM u;',
]
GOOD = [
    'UPDATE "Users" SET "EmailConfirmed" = true WHERE "Id" = 7;',
    'UPDATE "Notes" SET "IsPinned" = false WHERE "Id" BETWEEN 1 AND 10000;',
]


def check(stmt, ctx):
    found = [(stmt.kind, stmt.node)] + list(with_queries(stmt.node))
    for kind, node in found:
        if kind == "UpdateStmt" and matches_every_row(node.get("whereClause")):
            yield f"updates every row of {table_of(node['relation'])} (no WHERE clause)"


RULE = Rule(
    code="update-without-where",
    severity=FORBIDDEN,
    summary="An UPDATE without WHERE overwrites a column in every row, and the old values are gone.",
    hint="Add a WHERE clause, and backfill large tables in batches of a few thousand rows per "
         "transaction; keep the old values (a new column or a copy) until the change is verified.",
    check=check, on=("UpdateStmt", "SelectStmt", "InsertStmt", "DeleteStmt"), bad=tuple(BAD), good=tuple(GOOD),
)
